"""Simulated power cuts (``support/crashsim.py``): one run of the workload recorded with strace,
the file rebuilt as a disk could hold it after a cut at any operation boundary (unsynced writes all
dropped, all kept, an in-order prefix, each single one dropped, random subsets, the last ones torn
at 4 KiB pages), under an ext4 model (a file's fsync commits earlier renames) and a posix model (a
rename is durable once its directory is fsynced).

With ``fsync=True`` no crash state may lose a frame the writer had reported durable, hang, crash
or leave no file after frames were durable. Without it a cut may cost durable frames (README:
"power cut"), but recover still gives a valid file whose every counted frame is right.
"""
import itertools
import os

import pytest
from support import crashcampaign as cc
from support import crashsim

NO_STRACE = crashsim.strace_available()
pytestmark = pytest.mark.skipif(NO_STRACE is not None, reason=f"{NO_STRACE}")
CAMPAIGN = pytest.mark.skipif(not os.environ.get("EMDSTREAM_CRASH_SECONDS"),
                              reason="the full crash campaign: EMDSTREAM_CRASH_SECONDS=240 "
                                     "pytest -m campaign tests/safety")
KINDS = ("all-kept", "all-dropped", "prefix", "dropped", "subset", "torn")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Recorded runs (operation logs) by workload, made on first use."""
    root, logs = tmp_path_factory.mktemp("recorded"), {}

    def get(workload: cc.Workload) -> crashsim.OpLog:
        if workload not in logs:
            logs[workload] = cc.record_run(workload, str(root))
        return logs[workload]
    return get


def kind_of(state: crashsim.CrashState) -> str:
    return next(k for k in KINDS if state.kind.startswith(k))


def interleaved_by_kind(states: list, seed: str) -> list:
    """Every kind and model in turn, each in a deterministic shuffle: a budget cut short still
    checks as many torn or reordered states as dropped ones."""
    pools = [cc.spread([s for s in states if kind_of(s) == kind and s.model == model], seed)
             for kind in KINDS for model in crashsim.MODELS]
    return [s for group in itertools.zip_longest(*pools) for s in group if s is not None]


def check_states(log, states, workload, tmp_path) -> cc.Tally:
    tally = cc.Tally()
    for state in states:
        tally.add(cc.check_power_cut(log, state, workload, str(tmp_path / "w"), str(tmp_path)),
                  f"{state.model}/{kind_of(state)}")
    return tally


def test_replaying_every_operation_gives_the_real_file_byte_for_byte(recorded):
    log = recorded(cc.Workload("writer", True))
    assert crashsim.self_check(log) == []
    kinds = {op.kind for op in log.ops}
    assert {"create", "write", "fsync", "dirsync", "rename", "truncate", "unlink",
            "mark"} <= kinds, kinds
    # a crash before the rename's directory fsync: posix loses the name, ext4 keeps it after
    # a later file fsync
    rename = next(i for i, op in enumerate(log.ops) if op.kind == "rename")
    assert rename in crashsim.unsynced(log, rename + 1, "posix")


def test_models_differ_on_renames_only_after_a_file_fsync():
    ops = [crashsim.Op("create", 1, path="/d/a"), crashsim.Op("write", 1, data=b"x" * 10),
           crashsim.Op("rename", 1, path="/d/a", dest="/d/b"), crashsim.Op("fsync", 1),
           crashsim.Op("write", 1, offset=10, data=b"y"), crashsim.Op("dirsync", path="/d")]
    log = crashsim.OpLog("/d", ops)
    def durable_only(model):
        lost = set(crashsim.unsynced(log, 5, model))
        return lambda i: i not in lost

    assert crashsim.replay(log, 5, durable_only("ext4")) == {"/d/b": b"x" * 10}
    assert crashsim.replay(log, 5, durable_only("posix")) == {}  # create not durable yet
    assert crashsim.unsynced(log, 6, "posix") == [4]  # the directory fsync made the names durable
    torn = crashsim.replay(log, 5, lambda i: True, tear=(1, set()))
    assert torn == {"/d/b": bytes(10) + b"y"}


def test_power_cuts_with_fsync_lose_no_durable_frame_sample(recorded, tmp_path):
    workload = cc.Workload("writer", True)
    log = recorded(workload)
    states = [s for s in interleaved_by_kind(list(crashsim.crash_states(log)), "sample")
              if kind_of(s) in ("dropped", "subset", "torn")][:6]
    tally = check_states(log, states, workload, tmp_path)
    # (states that equal an earlier one are checked once: "all-dropped" is the state at the
    # last fsync, already checked as "all-kept" there)
    assert {"dropped", "subset", "torn"} <= {k.split("/")[1] for k in tally.kinds}, tally.kinds
    assert not tally.failures, f"{tally.summary(len(states))}\n\n{tally.failure_report()}"


def test_power_cut_without_fsync_may_cost_durable_frames_but_never_a_wrong_one(recorded,
                                                                               tmp_path):
    """What the README promises without fsync=True: recover gives a valid file, every frame it
    counts is right, but frames the OS had not written back are lost (the simulation shows it:
    every unsynced write dropped when streaming ended, before close() finalized the file)."""
    workload = cc.Workload("writer", False)
    log = recorded(workload)
    end = next(i for i, op in enumerate(log.ops)
               if op.kind == "create" and op.path.endswith(".emdstream-journal"))
    lost = set(crashsim.unsynced(log, end, "ext4"))
    everything_dropped = crashsim.CrashState(
        end, "ext4", "all-dropped", crashsim.replay(log, end, lambda i: i not in lost),
        log.durable_at(end))
    outcome = cc.check_power_cut(log, everything_dropped, workload, str(tmp_path / "w"),
                                 str(tmp_path))
    assert outcome.ok, outcome.report()
    assert everything_dropped.durable["dataset_1"] > 0
    assert outcome.verdict["lost"], "a cut losing every unsynced write kept every frame?"


@pytest.mark.campaign
@CAMPAIGN
@pytest.mark.parametrize("fsync", [True, False], ids=["fsync", "no-fsync"])
def test_power_cuts_at_every_operation_boundary(recorded, tmp_path, fsync):
    """Every workload, both models, every kind, until the budget is spent (half of it for the
    fsync runs, a quarter for the runs without fsync, where losses are counted, not failures)."""
    seconds = cc.budget(240) * (0.3 if fsync else 0.2)
    tally, lost, total = cc.Tally(), 0, 0
    for kind in ("writer", "acq", "detector"):
        workload = cc.Workload(kind, fsync)
        log = recorded(workload)
        assert crashsim.self_check(log) == []
        states = interleaved_by_kind(list(crashsim.crash_states(log)), f"campaign-{kind}")
        total += len(states)
        for state in cc.within(seconds / 3, states):
            outcome = cc.check_power_cut(log, state, workload, str(tmp_path / "w"), str(tmp_path))
            tally.add(outcome, f"{state.model}/{kind_of(state)}")
            lost += bool(outcome.verdict.get("lost"))
    print(f"{'fsync' if fsync else 'no fsync'}: {tally.summary(total)}; "
          f"{lost} states lost durable frames")
    assert not tally.failures, f"{tally.summary(total)}\n\n{tally.failure_report()}"
