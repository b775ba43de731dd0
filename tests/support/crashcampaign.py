"""The crash campaigns' driver: workloads, crash points, fresh-process checks, failure reports.

Two campaigns share it (tests/safety/test_syscall_kills.py, test_power_cuts.py):

* real kills: ``crashkill`` kills the workload (or ``recover``) as it enters its N-th call of a
  syscall; the crashed file is checked as it is;
* power cuts: one run is recorded (``crashsim.record``) and replayed as a disk could hold it.

Each crash state is checked by ``crash_check.py`` in a new interpreter (recover, plain h5py,
verify). A failure keeps a pristine copy of the state and says how to reproduce it.
"""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Optional

from support import crashkill, crashsim

HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOAD = os.path.join(HERE, "crash_workload.py")
CHECKER = os.path.join(HERE, "crash_check.py")
NAME = "run.emd"
LOG_SUFFIX = ".emdstream-chunks"


def budget(default: float) -> float:
    """Seconds a campaign may take: ``EMDSTREAM_CRASH_SECONDS`` (CI: 240) or ``default``."""
    return float(os.environ.get("EMDSTREAM_CRASH_SECONDS", default))


@dataclass(frozen=True)
class Workload:
    kind: str   # "writer" | "acq" (crash_workload.STREAMS)
    fsync: bool
    end: str = "close"  # or "kill": the workload kills itself after streaming (for recover)

    def argv(self, path: str) -> list[str]:
        return [sys.executable, WORKLOAD, path, self.kind, "1" if self.fsync else "0", self.end]

    def __str__(self) -> str:
        return f"{self.kind}{'+fsync' if self.fsync else ''}"


@dataclass
class Outcome:
    """One crash state checked."""

    where: str
    durable: dict[str, int]
    verdict: dict
    kept: Optional[str] = None
    context: str = ""
    killed: Optional[bool] = None  # kills: whether the kill landed (the run may end first)

    @property
    def ok(self) -> bool:
        return bool(self.verdict.get("ok"))

    def report(self) -> str:
        lines = [f"crash point: {self.where}", f"durable before the crash: {self.durable}",
                 *(f"  {p}" for p in self.verdict.get("problems", [])),
                 f"recover said: {self.verdict.get('recover', '')[-300:]}"]
        if self.context:
            lines.append(f"last operations: {self.context}")
        if self.kept:
            lines.append(f"state kept: {self.kept} -- reproduce: cp -r {self.kept} /tmp/x && "
                         f"emdstream recover /tmp/x/{NAME}")
        return "\n".join(lines)


@dataclass
class Tally:
    checked: int = 0
    failures: list[Outcome] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)

    def add(self, outcome: Outcome, kind: str) -> None:
        self.checked += 1
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        if not outcome.ok:
            self.failures.append(outcome)

    def summary(self, total: int) -> str:
        return (f"{self.checked} of {total} crash states checked, {len(self.failures)} failed; "
                f"by kind: {dict(sorted(self.kinds.items()))}")

    def failure_report(self, limit: int = 3) -> str:
        return "\n\n".join(o.report() for o in self.failures[:limit])


def check(folder: str, kind: str, durable: dict[str, int], allow_loss: bool = False) -> dict:
    return crashkill.check_in_fresh_process(CHECKER, os.path.join(folder, NAME), kind, durable,
                                            allow_loss)


def _keep(src: str, keep_root: str, label: str) -> str:
    dest = os.path.join(keep_root, label)
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(src, dest)
    return dest


def within(seconds: float, items: Iterable) -> Iterator:
    """``items`` until ``seconds`` have passed (at least one)."""
    end = time.monotonic() + seconds
    for i, item in enumerate(items):
        if i and time.monotonic() > end:
            return
        yield item


def spread(items: list, seed: str) -> list:
    """A deterministic shuffle: a campaign cut short by its budget still covers the whole run."""
    rng = random.Random(seed)
    order = list(items)
    rng.shuffle(order)
    return order


# --- real kills --------------------------------------------------------------------------------
def kill_points(workload: Workload, scratch: str) -> list[tuple[str, int]]:
    """Every (syscall, N) a kill can land on in a run of ``workload``."""
    os.makedirs(scratch, exist_ok=True)
    counts, _ = crashkill.count_calls(workload.argv(os.path.join(scratch, NAME)),
                                      os.path.join(scratch, "calls.log"))
    return [(s, n) for s in crashkill.KILL_SYSCALLS for n in range(1, counts[s] + 1)]


def kill_and_check(workload: Workload, syscall: str, n: int, scratch: str,
                   keep_root: str, without_log: bool = False) -> Outcome:
    """Kill ``workload`` entering its ``n``-th ``syscall``, check the file; ``without_log``:
    remove its chunk log first (a file from an emdstream without one: HDF5's own recovery)."""
    folder = os.path.join(scratch, f"{workload}-{syscall}{n}")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    killed, out = crashkill.kill_at(workload.argv(os.path.join(folder, NAME)), syscall, n)
    durable = crashkill.durable_from(out)
    if without_log and os.path.exists(os.path.join(folder, NAME + LOG_SUFFIX)):
        os.remove(os.path.join(folder, NAME + LOG_SUFFIX))
    pristine = _keep(folder, scratch, os.path.basename(folder) + "-pristine")
    outcome = Outcome(f"{workload}: kill -9 entering {syscall} #{n}", durable,
                      check(folder, workload.kind, durable), killed=killed)
    if not outcome.ok:
        outcome.kept = _keep(pristine, keep_root, os.path.basename(folder))
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(pristine, ignore_errors=True)
    return outcome


def crashed_file(workload: Workload, scratch: str) -> tuple[str, dict[str, int]]:
    """A file whose writer was killed after streaming (for killing ``recover``)."""
    folder = os.path.join(scratch, "crashed")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    run = subprocess.run(Workload(workload.kind, workload.fsync, "kill").argv(
        os.path.join(folder, NAME)), capture_output=True, text=True, timeout=120)
    return folder, crashkill.durable_from(run.stdout)


def recover_argv(path: str) -> list[str]:
    return [sys.executable, "-m", "emdstream", "recover", path]


def recover_kill_points(crashed: str, scratch: str) -> list[tuple[str, int]]:
    trial = _keep(crashed, scratch, "recover-count")
    counts, _ = crashkill.count_calls(recover_argv(os.path.join(trial, NAME)),
                                      os.path.join(scratch, "recover-calls.log"))
    return [(s, n) for s in crashkill.KILL_SYSCALLS for n in range(1, counts[s] + 1)]


def kill_recover_and_check(crashed: str, kind: str, durable: dict[str, int], syscall: str,
                           n: int, scratch: str, keep_root: str) -> Outcome:
    label = f"recover-{syscall}{n}"
    folder = _keep(crashed, scratch, label)
    killed, _ = crashkill.kill_at(recover_argv(os.path.join(folder, NAME)), syscall, n)
    pristine = _keep(folder, scratch, label + "-pristine")
    outcome = Outcome(f"recover {'killed' if killed else 'not killed (it ended first)'} entering "
                      f"{syscall} #{n}, then recover again", durable, check(folder, kind, durable))
    outcome.killed = killed
    if not outcome.ok:
        outcome.kept = _keep(pristine, keep_root, label)
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(pristine, ignore_errors=True)
    return outcome


# --- power cuts --------------------------------------------------------------------------------
def record_run(workload: Workload, scratch: str) -> crashsim.OpLog:
    """One run of ``workload`` under strace, as an operation log (checked by ``self_check``)."""
    folder = os.path.join(scratch, f"recorded-{workload}")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    trace = os.path.join(scratch, f"trace-{workload}")
    done = crashsim.record(workload.argv(os.path.join(folder, NAME)), trace)
    if done.returncode != 0:
        raise RuntimeError(f"the recorded run failed: {done.stderr.decode()[-500:]}")
    return crashsim.parse(trace, folder)


def check_power_cut(log: crashsim.OpLog, state: crashsim.CrashState, workload: Workload,
                    scratch: str, keep_root: str) -> Outcome:
    label = f"{workload}-op{state.boundary}-{state.model}-{state.kind}"
    folder = os.path.join(scratch, "state")
    shutil.rmtree(folder, ignore_errors=True)
    crashsim.materialize(state, folder, log.folder)
    os.makedirs(folder, exist_ok=True)
    verdict = check(folder, workload.kind, state.durable, allow_loss=not workload.fsync)
    outcome = Outcome(f"{workload}: power cut before op #{state.boundary} ({state.model} model, "
                      f"{state.kind})", state.durable, verdict,
                      context=crashsim.last_ops(log, state.boundary))
    if not outcome.ok:
        outcome.kept = os.path.join(keep_root, label)
        crashsim.materialize(state, outcome.kept, log.folder)
    shutil.rmtree(folder, ignore_errors=True)
    return outcome
