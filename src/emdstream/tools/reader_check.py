"""Loading a file with the readers people use (ncempy, RosettaSciIO, plain h5py): for ``verify``."""
from __future__ import annotations

import contextlib
import gc
import io
import warnings
from collections.abc import Callable

import h5py
import numpy as np

from emdstream.errors import install_hint, one_line
from emdstream.format.blocks import iter_blocks
from emdstream.format.dims import DIM_KEY


def _read_ncempy(path: str, shapes: dict[str, tuple]) -> list[str]:
    import ncempy.io

    problems = []
    for number, (name, shape) in enumerate(shapes.items()):
        got = ncempy.io.read(path, dsetNum=number)["data"].shape
        if tuple(got) != shape:
            problems.append(f"ncempy.io.read: dataset {number} ({name}) has shape {got}, "
                            f"the file {shape}")
    return problems


def _read_rsciio(path: str, shapes: dict[str, tuple]) -> list[str]:
    from rsciio.emd import file_reader

    signals = file_reader(path)
    got = sorted(tuple(np.shape(s["data"]))[::-1] for s in signals)  # axes reversed
    want = sorted(shapes.values())
    problems = [] if got == want else [f"rsciio.emd.file_reader: signals of shapes {got} "
                                       f"(axes reversed back), the file {want}"]
    for s in signals:  # (N, 1) dims give NaN scales with older NumPy instead of an error
        bad = [a.get("name", "?") for a in s.get("axes", ())
               if not np.isfinite(a.get("scale", 1.0)) or not np.isfinite(a.get("offset", 0.0))]
        if bad:
            problems.append(f"rsciio.emd.file_reader: axes {bad} of a {np.shape(s['data'])} signal "
                            f"have no finite scale/offset")
    return problems


def _read_h5py(path: str, shapes: dict[str, tuple]) -> list[str]:
    with h5py.File(path, "r") as f:  # no SWMR: what a script doing h5py.File(path) gets
        for name in shapes:
            group = f[f"data/{name}"]
            for key in filter(DIM_KEY.match, group):
                group[key][()]
            for selection in iter_blocks(group["data"]):
                group["data"][selection]
    return []


READERS: dict[str, Callable[[str, dict[str, tuple]], list[str]]] = {
    "ncempy.io.read": _read_ncempy, "rsciio.emd.file_reader": _read_rsciio, "h5py": _read_h5py}
PACKAGES = {"ncempy.io.read": "ncempy", "rsciio.emd.file_reader": "rosettasciio", "h5py": "h5py"}


def check_readers(path: str, shapes: dict[str, tuple]) -> tuple[list[str], list[str]]:
    """Load the file with each reader in ``READERS``: (one problem line per reader that failed on
    the file, one note per reader that could not be tried because it is not installed)."""
    problems, notes = [], []
    for label, read in READERS.items():
        # the reader's prints, warnings, log lines and __del__ complaints (the failed reader's
        # objects die with the exception, hence the gc) stay out of the report
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            try:
                problems += read(path, shapes)
            except ImportError as exc:  # this environment's, not the file's
                notes.append(f"{label}: not tried, not installed ({one_line(exc)}): "
                             f"{install_hint(PACKAGES[label])}")
            except Exception as exc:  # whatever a reader raises is the finding
                problems.append(f"{label}: failed: {type(exc).__name__}: {one_line(exc)}")
            gc.collect()
    return problems, notes


