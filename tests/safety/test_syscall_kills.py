"""kill -9 at syscall boundaries (strace fault injection): every crash state recovers.

A deterministic workload (``support/crash_workload.py``: count-based flushes, several streams,
per-frame values, comments, ``close()``) is killed as it enters its N-th ``pwrite64``, ``fsync``,
``rename``, ``ftruncate`` or ``unlink``; so is ``recover`` on a crashed file (then recover runs
again). Each crash state passes ``support/crash_check.py`` in a fresh process: recover succeeds,
keeps every frame and value the writer had reported durable, every frame is right, the file
verifies and reads in plain h5py.

The normal suite kills at a fixed sample of points; the full campaign (``-m campaign``, sized by
``EMDSTREAM_CRASH_SECONDS``, CI: 240) at every boundary the budget reaches.
"""
import itertools
import os

import pytest
from support import crashcampaign as cc
from support.crashsim import strace_available

NO_STRACE = strace_available()
pytestmark = pytest.mark.skipif(NO_STRACE is not None, reason=f"{NO_STRACE}")
CAMPAIGN = pytest.mark.skipif(not os.environ.get("EMDSTREAM_CRASH_SECONDS"),
                              reason="the full crash campaign: EMDSTREAM_CRASH_SECONDS=240 "
                                     "pytest -m campaign tests/safety")
WORKLOADS = [cc.Workload(kind, fsync) for kind in ("writer", "acq", "detector")
             for fsync in (False, True)]


def assert_all_recovered(tally: cc.Tally, total: int) -> None:
    print(tally.summary(total))
    assert not tally.failures, f"{tally.summary(total)}\n\n{tally.failure_report()}"


# (syscall, N): the first flush's metadata past the recorded end of file (the "addr overflow"
# class), a later flush, the rename that publishes the file, inside close(): the journal's
# truncate and its removal
SAMPLE = [("pwrite64", 22), ("pwrite64", 61), ("rename", 1), ("ftruncate", 1), ("unlink", 1)]


def test_kill_9_at_sampled_syscall_boundaries_recovers_every_durable_frame(tmp_path):
    workload, tally = cc.Workload("writer", False), cc.Tally()
    for syscall, n in SAMPLE:
        outcome = cc.kill_and_check(workload, syscall, n, str(tmp_path / "w"), str(tmp_path))
        assert outcome.killed, f"no kill at {syscall} #{n}: the sample tests nothing there"
        tally.add(outcome, syscall)
    assert_all_recovered(tally, len(SAMPLE))


def test_kill_9_while_the_producer_writes_compressed_frames_itself_recovers_them(tmp_path):
    """``put_compressed`` writes a ready chunk from the producer's thread while the writer
    thread idles (gathered chunks of 8, and a chunk per frame): kills among those writes."""
    workload, tally = cc.Workload("detector", False), cc.Tally()
    for syscall, n in (("pwrite64", 40), ("pwrite64", 90)):
        outcome = cc.kill_and_check(workload, syscall, n, str(tmp_path / "w"), str(tmp_path))
        assert outcome.killed, f"no kill at {syscall} #{n}: the sample tests nothing there"
        tally.add(outcome, syscall)
    assert_all_recovered(tally, 2)


def test_recover_killed_around_replacing_the_file_then_recover_again(tmp_path):
    """recover rebuilds a file from its chunk log and renames it over the crashed one, then removes
    the log: killed before the rename (the crashed file and the log stay: rebuilt again) and
    after it (the new file and a log naming it: the log is removed, nothing rebuilt)."""
    scratch = str(tmp_path / "w")
    crashed, durable = cc.crashed_file(cc.Workload("writer", False), scratch)
    assert durable["dataset_1"] > 0
    tally = cc.Tally()
    for syscall, n in (("rename", 1), ("unlink", 2)):
        outcome = cc.kill_recover_and_check(crashed, "writer", durable, syscall, n, scratch,
                                            str(tmp_path))
        assert outcome.killed, outcome.where
        tally.add(outcome, f"recover-{syscall}")
    assert_all_recovered(tally, 2)


@pytest.mark.campaign
@CAMPAIGN
def test_kill_9_at_every_syscall_boundary(tmp_path):
    """Every workload (one stream / three streams / compressed frames the producer writes, with
    and without fsync) at every kill point,
    and recover killed at every one of its points, interleaved so a budget cut short still
    covers all; runs until the budget is spent."""
    scratch, keep = str(tmp_path / "w"), str(tmp_path)
    queues = []
    for w in WORKLOADS:
        points = cc.spread(cc.kill_points(w, os.path.join(scratch, str(w))), str(w))
        queues.append([(lambda w=w, s=s, n=n: cc.kill_and_check(w, s, n, scratch, keep), s)
                       for s, n in points])
    crashed, durable = cc.crashed_file(cc.Workload("acq", False), scratch)
    points = cc.spread(cc.recover_kill_points(crashed, scratch), "recover")
    queues.append([(lambda s=s, n=n: cc.kill_recover_and_check(crashed, "acq", durable, s, n,
                                                                scratch, keep), f"recover-{s}")
                   for s, n in points])
    total = sum(len(q) for q in queues)
    interleaved = [job for jobs in itertools.zip_longest(*queues) for job in jobs if job]
    tally = cc.Tally()
    for run, kind in cc.within(cc.budget(240) / 2, interleaved):
        tally.add(run(), kind)
    assert_all_recovered(tally, total)


def test_a_file_without_chunk_log_killed_mid_flush_recovers_through_hdf5(tmp_path):
    """Files of an emdstream without the chunk log: HDF5's metadata ran past the superblock's
    recorded end ("addr overflow"); recover records the real end (as ``h5clear -i``)."""
    tally = cc.Tally()
    tally.add(cc.kill_and_check(cc.Workload("writer", False), "pwrite64", 22, str(tmp_path / "w"),
                                str(tmp_path), without_log=True), "legacy")
    assert_all_recovered(tally, 1)
