"""Measurement in fresh child processes: CPU, RSS and page-fault accounting around a timed part,
the child's entry point, and ``Bench``, which runs each method of a case in its own interpreter,
repeat by repeat (methods interleaved), and keeps the median run.

A benchmark script calls ``child_main(job, runners)`` when started with ``--child JOB`` and
``Bench(args, script, runners).run_case(...)`` otherwise; a runner is
``runner(job, bank, path) -> dict`` with at least ``seconds``, ``cpu``, ``rss0``, ``peak_timed``
and ``stored`` (use ``start_timing`` / ``cpu_seconds`` / ``peak_since_start`` around the timed part).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Optional

import numpy as np

from .frames import MiB, make_bank

LAT_RING = 1 << 16  # call latencies kept (the last 65536): bounded memory at any frame count


def _rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


_PEAK_BEFORE = 0


def start_timing() -> tuple[int, float]:
    """Just before a timed part: (RSS now, CPU seconds so far); resets the kernel's peak-RSS mark."""
    global _PEAK_BEFORE
    gc.collect()
    _PEAK_BEFORE = peak_since_start()  # imports, bank, setup
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # Linux >= 4.0: reset VmHWM (peak RSS) to the current RSS
    except OSError:
        pass
    return _rss_now(), cpu_seconds()


def peak_since_start() -> int:
    """Peak RSS of this process image since exec or since ``_start`` reset it (VmHWM).

    Not ``ru_maxrss``: after fork+exec it also counts the parent's peak (the pre-exec image).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    _FAULTS.append(r.ru_minflt + r.ru_majflt)
    return r.ru_utime + r.ru_stime


_FAULTS: list[int] = []  # page-fault counts at each cpu_seconds() call: the last two bracket the timed part


def child_main(job: dict, runners: dict) -> None:
    """One measurement: ``runners[job["method"]](job, bank, path)``; prints ``RESULT {json}``."""
    bank = np.load(job["bank"]) if job.get("bank") else make_bank(job["workload"], job["shape"])
    path = os.path.join(job["tmpdir"], f"{job['method']}-{os.getpid()}.h5")
    if job.get("breakdown"):
        import _breakdown
        _breakdown.install()
    if job.get("thread_cpu"):
        import _breakdown
        _breakdown.install_thread_cpu()
    try:
        result = runners[job["method"]](job, bank, path)
    finally:
        for p in (path, path + ".emdstream-partial"):
            if os.path.exists(p):
                os.remove(p)
    result["faults"] = _FAULTS[-1] - _FAULTS[-2]
    result["peak_rss"] = max(_PEAK_BEFORE, result["peak_timed"])
    result["bank_bytes"] = bank.nbytes
    print("RESULT " + json.dumps(result), flush=True)


def measure(job: dict, script: str, runners: dict, in_process: bool = False) -> dict:
    """Run one measurement in a fresh interpreter (``script --child JOB``); returns its result."""
    if in_process:
        import contextlib
        import io
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            child_main(job, runners)
        text = out.getvalue()
    else:
        proc = subprocess.run([sys.executable, os.path.abspath(script), "--child", json.dumps(job)],
                              capture_output=True, text=True)
        text = proc.stdout
        if proc.returncode != 0:
            raise RuntimeError(f"measurement {job['method']} of {job['name']} failed "
                               f"(exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    for line in text.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"no result from {job}:\n{text}")


class Bench:
    """A benchmark run: its temporary directory, frame banks, measurements and results. ``args``
    needs ``repeats``, ``dir``, ``in_process``, ``verbose``; ``script`` is started with
    ``--child JOB`` for each measurement, and calls ``child_main(job, runners)``."""

    def __init__(self, args: argparse.Namespace, script: str, runners: dict):
        self.args = args
        self.script, self.runners = script, runners
        self.tmpdir = tempfile.mkdtemp(prefix="emdstream-bench-", dir=args.dir)
        self._banks: dict[tuple, str] = {}
        self.results: list[dict] = []

    def close(self) -> None:
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def bank(self, workload: str, shape: tuple[int, int]) -> str:
        key = (workload, shape)
        if key not in self._banks:
            for old in self._banks.values():  # one bank on disk at a time
                os.remove(old)
            self._banks.clear()
            path = os.path.join(self.tmpdir, f"bank-{workload}-{shape[0]}x{shape[1]}.npy")
            np.save(path, make_bank(workload, shape))
            self._banks[key] = path
        return self._banks[key]

    def run_case(self, name: str, base: dict, methods: list[str],
                 variants: Optional[dict[str, dict]] = None) -> dict[str, dict]:
        """Median over repeats of each method; methods interleaved within each repeat.
        ``variants``: job keys per method label (its runner is ``variants[m]["method"]``)."""
        runs: dict[str, list[dict]] = {m: [] for m in methods}
        for _ in range(self.args.repeats):
            for m in methods:
                job = {**base, "method": m, "name": name, "tmpdir": self.tmpdir,
                       **(variants or {}).get(m, {})}
                runs[m].append(measure(job, self.script, self.runners, self.args.in_process))
                self.progress(f"  {name}/{m}: {runs[m][-1]['seconds']:.3f} s")
        out = {}
        for m, rs in runs.items():
            med = median_run(rs)
            med["all_seconds"] = [r["seconds"] for r in rs]
            med["peak_rss"] = max(r["peak_rss"] for r in rs)
            med["drss"] = max(r["peak_timed"] - r["rss0"] for r in rs)
            for key in ("put_p50_us", "put_p99_us", "put_max_us", "queue_high_water", "cpu",
                        "faults"):
                if key in med:
                    med[key] = statistics.median(r[key] for r in rs)
            raw = base["frames"] * base["frame_bytes"]
            med.update(name=name, method=m, raw_bytes=raw, frames=base["frames"],
                       frame_bytes=base["frame_bytes"],
                       gbps=raw / med["seconds"] / 1e9, fps=base["frames"] / med["seconds"],
                       ratio=raw / med["stored"] if med["stored"] else float("inf"),
                       cores=med["cpu"] / med["seconds"], faults_per_mib=med["faults"] / (raw / MiB),
                       spread=(max(med["all_seconds"]) - min(med["all_seconds"])) / med["seconds"])
            self.results.append(dict(med, **{k: v for k, v in base.items() if k != "bank"}))
            out[m] = med
        return out

    def progress(self, text: str) -> None:
        if self.args.verbose:
            print(text, file=sys.stderr, flush=True)


def median_run(runs: list[dict]) -> dict:
    ordered = sorted(runs, key=lambda r: r["seconds"])
    return dict(ordered[(len(ordered) - 1) // 2])  # lower median: an actual run's numbers


def run_child(args, runners: dict) -> bool:
    """A script started by ``Bench`` as a child interpreter (``--child JOB``) makes its one
    measurement (``child_main``); True if it was one."""
    if not args.child:
        return False
    child_main(json.loads(args.child), runners)
    return True


def quick_or_full(args, divide: bool = True) -> None:
    """Defaults: ``--quick`` is 1 repeat (and 1/8 of the sizes), else 3 repeats at full size."""
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if divide and args.divide is None:
        args.divide = 8 if args.quick else 1


def run_suite(args, script: str, runners: dict, header: str, run_all, print_all) -> int:
    """A benchmark script's main run: the machine header, ``run_all(bench)`` -> rows,
    ``print_all(rows, markdown)``, the total time, and the rows saved to ``args.json``."""
    from .report import machine_info

    bench = Bench(args, script, runners)
    try:
        fence = "```\n" if args.markdown else ""
        print(fence + machine_info(bench.tmpdir))
        print(f"{header}\n{fence}", flush=True)
        t0 = time.perf_counter()
        rows = run_all(bench)
        print_all(rows, args.markdown)
        print(f"\ntotal benchmark time {time.perf_counter() - t0:.0f} s")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(dict(info=machine_info(bench.tmpdir), results=rows), f, indent=1,
                          default=str)
    finally:
        bench.close()
    return 0

