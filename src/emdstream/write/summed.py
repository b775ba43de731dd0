"""The summed pattern of a counted stream, added up chunk by chunk as the events are encoded.

Each encoder thread adds into its own array (no lock, no histogram allocated per chunk) and
``total`` adds those few arrays once, at the end; exact (int64, or float64 for float counts). The
adding runs without the GIL: ``np.add.at`` holds it for the whole chunk (~0.7 ms a 2 MiB chunk
here), which stalled the producer's and the writer thread's Python while an encoder thread summed.
The sum is scipy's sparse matrix-vector product (the chunk as one column of a CSC matrix,
``scipy.sparse._sparsetools.csc_matvec``; scipy is optional: ``csr()`` needs it, but it has no
wheel for macOS 11 arm64, ``tools/check_wheels.py``; and the function is private: without either,
``np.add.at``), which releases the GIL and does not check indices, so each chunk's range is checked
first (a chunk changed by its caller after its put was checked must not write outside the pattern).
Thread safety: ``add`` from any number of threads at once, ``total`` once they are done.
"""
from __future__ import annotations

import threading
from typing import Optional

import numpy as np

try:
    from scipy.sparse._sparsetools import csc_matvec
except ImportError:  # pragma: no cover - a scipy without it: np.add.at
    csc_matvec = None


class SummedPattern:
    """Events added into a flat pattern of ``size`` pixels."""

    def __init__(self, size: int, counts_dtype: np.dtype):
        self.size = size
        self.dtype = np.dtype(np.float64 if np.dtype(counts_dtype).kind == "f" else np.int64)
        self._parts: dict[int, np.ndarray] = {}  # thread id -> that thread's part
        self._ones = np.ones(0, self.dtype)  # weights of events without counts (grown as needed)
        self._one = np.ones(1, self.dtype)

    def add(self, indices: np.ndarray, weights: Optional[np.ndarray] = None) -> None:
        """Add events (flat pixel indices, weights or 1 each); ValueError for an index outside
        the pattern."""
        if not indices.size:
            return
        part = self._parts.get(threading.get_ident())
        if part is None:
            part = self._parts[threading.get_ident()] = np.zeros(self.size, self.dtype)
        if weights is not None and weights.shape != indices.shape:
            raise ValueError(f"{weights.shape} weights for {indices.shape} events")
        top = int(indices.max())
        if top >= self.size or (indices.dtype.kind == "i" and int(indices.min()) < 0):
            raise ValueError(f"event index outside the {self.size}-pixel pattern")
        if csc_matvec is None:
            np.add.at(part, indices, 1 if weights is None else weights.astype(self.dtype))
            return
        index = _as_index(indices, top)
        if weights is None:
            ones = self._ones  # read once: another thread may replace it
            if ones.size < index.size:
                ones = self._ones = np.ones(index.size, self.dtype)  # replaced, never changed
            data = ones[:index.size]
        else:
            data = np.ascontiguousarray(weights, self.dtype)
        ends = np.array([0, index.size], index.dtype)
        csc_matvec(self.size, 1, ends, index, data, self._one, part)  # part += column sums

    def total(self) -> np.ndarray:
        """Every event added so far (call once the adding threads are done)."""
        total = np.zeros(self.size, self.dtype)
        for part in list(self._parts.values()):
            total += part
        return total


def _as_index(indices: np.ndarray, top: int) -> np.ndarray:
    """The (checked, non-negative) indices, largest ``top``, as a contiguous native int32 or
    int64 array: native uint32 ones below 2**31 viewed as int32, without a copy."""
    indices = np.ascontiguousarray(indices)
    if indices.dtype in (np.int32, np.int64):
        return indices
    if indices.dtype == np.uint32 and top < 2 ** 31:  # native byte order only
        return indices.view(np.int32)
    return indices.astype(np.int64)
