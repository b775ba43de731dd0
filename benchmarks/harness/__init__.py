"""The benchmark harness, apart from the benchmark cases (``bench_*.py``).

``frames``: banks of frames per workload, chunks, the read-back check; ``measure``: each
measurement in a fresh child process, CPU/RSS/page-fault accounting, repeats and medians
(``Bench``); ``report``: tables and the machine header. Importing it puts this checkout's
``src/`` first on ``sys.path`` (``_paths``), so the checkout's emdstream is measured.
"""
from . import _paths  # noqa: F401  (first: the checkout's src/)
from .frames import BANK_FRAMES, GiB, MiB, check_written, chunk_frames_for, distinct_chunks, make_bank
from .measure import (
           LAT_RING,
           Bench,
           child_main,
           cpu_seconds,
           measure,
           median_run,
           peak_since_start,
           quick_or_full,
           run_child,
           run_suite,
           start_timing,
)
from .report import fmt, fmt_table, machine_info, ratio_text

__all__ = ["BANK_FRAMES", "Bench", "GiB", "LAT_RING", "MiB", "check_written", "child_main",
           "chunk_frames_for", "cpu_seconds", "distinct_chunks", "fmt", "fmt_table",
           "machine_info", "make_bank", "measure", "median_run", "peak_since_start", "quick_or_full",
           "ratio_text", "run_child", "run_suite", "start_timing"]
