"""Tables, number formats and the machine/version header every benchmark prints first."""
from __future__ import annotations

import math
import os
import platform
import shlex
import subprocess
import sys
import time
from typing import Any

import numpy as np

from .frames import GiB

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def fmt_table(headers: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(headers) + " |",
                 "|" + "|".join("---:" if i else ":---" for i in range(len(headers))) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def fmt(x: Any, spec: str = ".2f", none: str = "") -> str:
    if x is None:
        return none
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return format(x, spec)


def ratio_text(x: float) -> str:
    if math.isinf(x):
        return "inf"
    return f"{x:.1f}" if x < 100 else f"{x:.0f}"


def machine_info(tmpdir: str) -> str:
    """The command, date and load, machine, versions (bitshuffle if installed; the bslz4 library
    emdstream calls), emdstream's git revision and the temp directory, one per line."""
    import importlib.metadata

    import h5py
    import hdf5plugin
    import numcodecs

    import emdstream
    from emdstream.encoders import bslz4_lib
    try:
        bitshuffle = importlib.metadata.version("bitshuffle")
    except importlib.metadata.PackageNotFoundError:
        bitshuffle = "not installed"
    lib = bslz4_lib.library()
    openmp = hdf5plugin.get_config().build_config.openmp if hasattr(hdf5plugin, "get_config") else "?"
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GiB
    except (ValueError, OSError):
        mem = float("nan")
    try:
        git = ["git", "--no-optional-locks", "-C", REPO]  # read-only: never touches the index
        rev = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=10).stdout.strip()
        if subprocess.run(git + ["diff", "--quiet", "HEAD", "--", "src"], timeout=30).returncode:
            rev += ", src/ has uncommitted changes"
    except (OSError, subprocess.SubprocessError):
        rev = "?"
    fs = subprocess.run(["df", "-T", tmpdir], capture_output=True, text=True).stdout.splitlines()[-1:]
    return "\n".join([
        f"command: {shlex.join([os.path.basename(sys.executable)] + sys.argv)}",
        f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}   load average: "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"machine: {platform.node()} {platform.machine()}, {cpu}, os.cpu_count()={os.cpu_count()}, "
        f"{mem:.1f} GiB RAM, {platform.platform()}",
        f"python {platform.python_version()}, numpy {np.__version__}, h5py {h5py.__version__}, "
        f"HDF5 {h5py.version.hdf5_version}, hdf5plugin {hdf5plugin.version}, "
        f"bitshuffle {bitshuffle}, numcodecs {numcodecs.__version__}; bslz4 via {lib.name}'s "
        f"library (hdf5plugin built with OpenMP: {openmp})",
        f"emdstream {emdstream.__version__} from {os.path.dirname(emdstream.__file__)} (git {rev})",
        f"temp dir: {tmpdir} ({' '.join(fs[0].split()[:2]) if fs else '?'}); files deleted after "
        f"each measurement; fsync=False (emdstream's close() still fsyncs the finished file; the "
        f"loops never fsync)",
    ])
