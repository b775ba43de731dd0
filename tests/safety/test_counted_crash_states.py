"""Counted streams in the crash campaigns: kill -9 at syscall boundaries (strace fault injection)
and simulated power cuts, with a counted workload (``support/counted_crash_workload.py``: events
put one slot at a time and in CSR blocks, with counts and per-frame values, small event chunks
filled and rewritten between count-based flushes, a dense scalar stream beside it).

Every crash state passes ``support/counted_crash_check.py`` in a fresh process: ``recover``
succeeds, every slot the writer had reported durable keeps exactly its events, counts and value,
the counts image, the event datasets and the summed pattern agree, and the file verifies.

The normal suite checks a small sample; the full campaigns run under ``-m campaign`` with
``EMDSTREAM_CRASH_SECONDS`` (CI: 240), beside the dense ones (test_syscall_kills.py,
test_power_cuts.py).
"""
import itertools
import os
import shutil
import subprocess
import sys

import pytest
from support import crashcampaign as cc
from support import crashkill, crashsim

NO_STRACE = crashsim.strace_available()
pytestmark = pytest.mark.skipif(NO_STRACE is not None, reason=f"{NO_STRACE}")
CAMPAIGN = pytest.mark.skipif(not os.environ.get("EMDSTREAM_CRASH_SECONDS"),
                              reason="the full crash campaign: EMDSTREAM_CRASH_SECONDS=240 "
                                     "pytest -m campaign tests/safety")
HERE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "support")
WORKLOAD = os.path.join(HERE, "counted_crash_workload.py")
CHECKER = os.path.join(HERE, "counted_crash_check.py")
KIND = "counted"  # crash_workload.STREAMS["counted"]: the dense stream beside the events
KINDS = ("all-kept", "all-dropped", "prefix", "dropped", "subset", "torn")  # of crashsim's states


class Counted(cc.Workload):
    """The counted workload, for ``crashcampaign``'s recorder and the driver below."""

    def argv(self, path: str) -> list[str]:
        return [sys.executable, WORKLOAD, path, "1" if self.fsync else "0", self.end]

    def __str__(self) -> str:
        return f"counted{'+fsync' if self.fsync else ''}"


def checked(folder: str, durable: dict, allow_loss: bool = False) -> dict:
    return crashkill.check_in_fresh_process(CHECKER, os.path.join(folder, cc.NAME), KIND, durable,
                                            allow_loss)


def kill_and_check(workload: Counted, syscall: str, n: int, scratch: str) -> cc.Outcome:
    """``workload`` killed entering its ``n``-th ``syscall``; the crashed file checked."""
    folder = os.path.join(scratch, f"{workload}-{syscall}{n}")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    killed, out = crashkill.kill_at(workload.argv(os.path.join(folder, cc.NAME)), syscall, n)
    durable = crashkill.durable_from(out)
    return checked_keeping(folder, cc.Outcome(f"{workload}: kill -9 entering {syscall} #{n}",
                                              durable, {}, killed=killed))


def checked_keeping(folder: str, outcome: cc.Outcome) -> cc.Outcome:
    """``outcome`` with the verdict on the crash state in ``folder``; a failed state is kept as
    it was before the check (which recovers it) in ``folder``-state, else removed."""
    pristine = folder + "-state"
    shutil.rmtree(pristine, ignore_errors=True)
    shutil.copytree(folder, pristine)
    outcome.verdict = checked(folder, outcome.durable)
    shutil.rmtree(folder, ignore_errors=True)
    if outcome.ok:
        shutil.rmtree(pristine, ignore_errors=True)
    else:
        outcome.kept = pristine
    return outcome


def power_cut_and_check(log: crashsim.OpLog, state: crashsim.CrashState, fsync: bool,
                        scratch: str) -> cc.Outcome:
    folder = os.path.join(scratch, f"cut{state.boundary}-{state.model}-{state.kind}")
    shutil.rmtree(folder, ignore_errors=True)
    crashsim.materialize(state, folder, log.folder)
    os.makedirs(folder, exist_ok=True)
    outcome = cc.Outcome(f"counted: power cut before op #{state.boundary} ({state.model}, "
                         f"{state.kind})", state.durable,
                         checked(folder, state.durable, allow_loss=not fsync),
                         context=crashsim.last_ops(log, state.boundary))
    shutil.rmtree(folder, ignore_errors=True)
    if not outcome.ok:  # the state as it was before the check recovered it
        outcome.kept = folder + "-state"
        crashsim.materialize(state, outcome.kept, log.folder)
    return outcome


def kind_of(state: crashsim.CrashState) -> str:
    """The kind of a crash state without its operation (``dropped-op27`` -> ``dropped``)."""
    return next(k for k in KINDS if state.kind.startswith(k))


def by_kind(states: list, seed: str) -> list:
    """Round-robin over (kind, model), each shuffled: a short budget still checks every kind."""
    groups: dict = {}
    for state in cc.spread(states, seed):
        groups.setdefault((kind_of(state), state.model), []).append(state)
    return [s for row in itertools.zip_longest(*groups.values()) for s in row if s is not None]


def assert_all_passed(tally: cc.Tally, total: int) -> None:
    print(tally.summary(total))
    assert not tally.failures, f"{tally.summary(total)}\n\n{tally.failure_report()}"


# (syscall, N) of the writer thread's pwrite64 amid the streaming flushes (event chunks filled
# and partly filled ones rewritten): early and late (the campaign takes every point)
SAMPLE = [("pwrite64", 90), ("pwrite64", 170)]


def test_kill_9_of_a_counted_stream_at_sampled_syscalls_keeps_every_durable_slots_events(tmp_path):
    tally, durable = cc.Tally(), []
    for syscall, n in SAMPLE:
        outcome = kill_and_check(Counted(KIND, False), syscall, n, str(tmp_path))
        assert outcome.killed, f"no kill at {syscall} #{n}: the sample tests nothing there"
        tally.add(outcome, syscall)
        durable.append(outcome.durable.get("electrons", 0))
    assert_all_passed(tally, len(SAMPLE))
    assert 0 < durable[0] < durable[1] < 37, durable  # mid-stream, then later


def test_power_cut_of_a_counted_stream_sample(tmp_path):
    """fsync=True: a torn or reordered state of the streaming flushes loses no durable slot. And the
    checker sees losses: without fsync, every unsynced write dropped just before close() costs
    durable slots, which it reports (allowed there) while every slot it counts is right."""
    root = str(tmp_path)
    log = cc.record_run(Counted(KIND, True), root)
    assert crashsim.self_check(log) == []
    states = [s for s in cc.spread(list(crashsim.crash_states(log)), "counted-sample")
              if kind_of(s) in ("torn", "subset") and s.durable.get("electrons", 0) > 0][:1]
    tally = cc.Tally()
    for state in states:
        tally.add(power_cut_and_check(log, state, True, root), kind_of(state))
    assert_all_passed(tally, len(states))
    log = cc.record_run(Counted(KIND, False), root)
    end = next(i for i, op in enumerate(log.ops)
               if op.kind == "create" and op.path.endswith(".emdstream-journal"))
    lost = set(crashsim.unsynced(log, end, "ext4"))
    state = crashsim.CrashState(end, "ext4", "all-dropped",
                                crashsim.replay(log, end, lambda i: i not in lost),
                                log.durable_at(end))
    outcome = power_cut_and_check(log, state, False, root)
    assert outcome.ok, outcome.report()
    assert state.durable["electrons"] > 0 and outcome.verdict["lost"], outcome.verdict


@pytest.mark.campaign
@CAMPAIGN
def test_kill_9_of_a_counted_stream_at_every_syscall_boundary(tmp_path):
    """With and without fsync, every kill point, and recover killed at every one of its points,
    interleaved; a fifth of the campaign budget."""
    scratch = str(tmp_path)
    queues = []
    for fsync in (False, True):
        w = Counted(KIND, fsync)
        points = cc.spread(cc.kill_points(w, os.path.join(scratch, str(w))), str(w))
        queues.append([(lambda w=w, s=s, n=n: kill_and_check(w, s, n, scratch), s)
                       for s, n in points])
    crashed = os.path.join(scratch, "crashed")  # a file whose writer killed itself after streaming
    os.makedirs(crashed)
    run = subprocess.run(Counted(KIND, False, "kill").argv(os.path.join(crashed, cc.NAME)),
                         capture_output=True, text=True, timeout=120)
    durable = crashkill.durable_from(run.stdout)
    points = cc.spread(cc.recover_kill_points(crashed, scratch), "recover")
    queues.append([(lambda s=s, n=n: recover_killed(crashed, durable, s, n, scratch),
                    f"recover-{s}") for s, n in points])
    total = sum(len(q) for q in queues)
    tally = cc.Tally()
    jobs = [job for group in itertools.zip_longest(*queues) for job in group if job]
    for run, kind in cc.within(cc.budget(240) / 5, jobs):
        tally.add(run(), kind)
    assert_all_passed(tally, total)


def recover_killed(crashed: str, durable: dict, syscall: str, n: int, scratch: str) -> cc.Outcome:
    """recover of a killed counted file, itself killed entering its ``n``-th ``syscall``; then the
    check (which runs recover again)."""
    folder = os.path.join(scratch, f"recover-{syscall}{n}")
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(crashed, folder)
    killed, _ = crashkill.kill_at(cc.recover_argv(os.path.join(folder, cc.NAME)), syscall, n)
    return checked_keeping(folder, cc.Outcome(
        f"counted: recover killed entering {syscall} #{n}, then recover again", durable, {},
        killed=killed))


@pytest.mark.campaign
@CAMPAIGN
@pytest.mark.parametrize("fsync", [True, False], ids=["fsync", "no-fsync"])
def test_power_cuts_of_a_counted_stream_at_every_operation_boundary(tmp_path, fsync):
    """Every crash state of one recorded run, both models, until a tenth of the budget is spent
    (without fsync losses are counted, not failures)."""
    log = cc.record_run(Counted(KIND, fsync), str(tmp_path))
    assert crashsim.self_check(log) == []
    states = by_kind(list(crashsim.crash_states(log)), f"counted-{fsync}")
    tally, lost = cc.Tally(), 0
    for state in cc.within(cc.budget(240) / 10, states):
        outcome = power_cut_and_check(log, state, fsync, str(tmp_path))
        tally.add(outcome, f"{state.model}/{kind_of(state)}")
        lost += bool(outcome.verdict.get("lost"))
    print(f"counted, {'fsync' if fsync else 'no fsync'}: {tally.summary(len(states))}; "
          f"{lost} states lost durable slots")
    assert_all_passed(tally, len(states))


def test_a_lost_first_counts_chunk_is_a_loss_not_a_stream_without_counts(tmp_path):
    """Found by the power-cut campaign: without fsync, a cut that drops the write of the first
    chunk of ``events/counts`` while later ones survive. recover then held no counts from event 0
    on and took the stream for one without counts: it kept the slots with every count 0. Now the
    log saying counts were written makes their loss cut the count (allowed without fsync), and no
    slot is wrong. The state is made by hand: the workload killed after streaming, every logged
    version of that chunk zeroed in the file."""
    from emdstream.safety import chunklog

    folder = str(tmp_path)
    path = os.path.join(folder, cc.NAME)
    run = subprocess.run(Counted(KIND, False, "kill").argv(path), capture_output=True, text=True,
                         timeout=120)
    durable = crashkill.durable_from(run.stdout)
    assert durable["electrons"] == 37, run.stderr
    records = [r for r in chunklog.read(path).chunks
               if r.stream == "electrons" and r.dataset == "events/counts" and r.coord == (0,)]
    assert records
    with open(path, "r+b") as fh:
        for record in records:
            fh.seek(record.offset)
            fh.write(bytes(record.size))
    verdict = checked(folder, durable, allow_loss=True)
    assert verdict["ok"], verdict
    assert verdict["lost"] and verdict["held"]["electrons"] == 0, verdict
