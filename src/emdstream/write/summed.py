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
Events without weights (no counts: the common case) are counted instead, with the bincount loop of
scipy's ``csr_column_index1`` (also private, also without the GIL; no weights array to read:
+9 % ``put_csr`` medians, 279 -> 304 M events/s, six runs alternating), used only where a
self-test (when scipy is loaded, ``load``) shows it counts as ``np.bincount`` does.
Thread safety: ``add`` from any number of threads at once, ``total`` once they are done;
``load`` (each pattern's constructor calls it) from any thread, once or many times.
"""
from __future__ import annotations

import threading
from typing import Optional

import numpy as np

# scipy's sparse tools, imported by the first SummedPattern (``load``), not by ``import emdstream``
# (scipy.sparse costs ~90 ms to import: every command-line call and every process of the crash
# tests paid it)
csc_matvec = None
_sparsetools = None
_COUNT = False
_loaded = False


INT32_MAX = 2 ** 31 - 1


class _Part:
    """One thread's part: integer events are added into ``small`` (int32: half the memory to
    scatter into, ~12 % faster beside the encoder, measured with two threads encoding and
    summing), folded into ``big`` (int64) before it could overflow; float ones into ``big``."""

    def __init__(self, size: int, dtype: np.dtype):
        self.big = np.zeros(size, dtype)
        self.small = np.zeros(size, np.int32) if dtype.kind == "i" else None
        self.bound = 0  # the most any pixel of ``small`` can hold in magnitude

    def fold(self) -> None:
        if self.small is not None and self.bound:
            self.big += self.small
            self.small.fill(0)
            self.bound = 0


class SummedPattern:
    """Events added into a flat pattern of ``size`` pixels."""

    def __init__(self, size: int, counts_dtype: np.dtype):
        load()
        self.size = size
        self.dtype = np.dtype(np.float64 if np.dtype(counts_dtype).kind == "f" else np.int64)
        self._parts: dict[int, _Part] = {}  # thread id -> that thread's part
        self._ones: dict[np.dtype, np.ndarray] = {}  # weights of events without counts, by dtype

    def add(self, indices: np.ndarray, weights: Optional[np.ndarray] = None) -> None:
        """Add events (flat pixel indices, weights or 1 each); ValueError for an index outside
        the pattern."""
        if not indices.size:
            return
        part = self._parts.get(threading.get_ident())
        if part is None:
            part = self._parts[threading.get_ident()] = _Part(self.size, self.dtype)
        if weights is not None and weights.shape != indices.shape:
            raise ValueError(f"{weights.shape} weights for {indices.shape} events")
        top = int(indices.max())
        if top >= self.size or (indices.dtype.kind == "i" and int(indices.min()) < 0):
            raise ValueError(f"event index outside the {self.size}-pixel pattern")
        if csc_matvec is None:
            np.add.at(part.big, indices, 1 if weights is None else weights.astype(self.dtype))
            return
        into = part.big
        if part.small is not None:  # integer events: into int32 while they cannot overflow it
            most = 1 if weights is None else max(abs(int(weights.max())), abs(int(weights.min())))
            if indices.size * most <= INT32_MAX:
                if part.bound + indices.size * most > INT32_MAX:
                    part.fold()
                part.bound += indices.size * most
                into = part.small
        index = _as_index(indices, top)
        if weights is None and into is part.small and index.dtype == np.int32 and _COUNT:
            _count(index, into)
            return
        if weights is None:
            data = self._ones_of(into.dtype, index.size)
        else:
            data = np.ascontiguousarray(weights, into.dtype)
        ends = np.array([0, index.size], index.dtype)
        one = self._ones_of(into.dtype, 1)
        csc_matvec(self.size, 1, ends, index, data, one, into)  # into += column sums

    def _ones_of(self, dtype: np.dtype, n: int) -> np.ndarray:
        ones = self._ones.get(dtype)  # read once: another thread may replace it
        if ones is None or ones.size < n:
            ones = self._ones[dtype] = np.ones(max(n, 1), dtype)  # replaced, never changed
        return ones[:n]

    def total(self) -> np.ndarray:
        """Every event added so far (call once the adding threads are done)."""
        total = np.zeros(self.size, self.dtype)
        for part in list(self._parts.values()):
            total += part.big
            if part.small is not None:
                total += part.small
        return total


def _count(index: np.ndarray, into: np.ndarray) -> None:
    """``into[i] += 1`` for each of ``index`` (int32, checked; ``into`` int32): the first loop of
    scipy's ``csr_column_index1``, a bincount into ``col_offsets``; with no rows (``n_row`` 0) and
    one column its other loops run zero times (arrays of two entries where it could write)."""
    no_rows = np.zeros(2, np.int32)
    _sparsetools.csr_column_index1(index.size, index, 0, 1, no_rows, no_rows, into,
                                   np.zeros(2, np.int32))


def _counts_right() -> bool:
    """Whether this scipy's ``csr_column_index1`` counts as ``_count`` relies on."""
    try:
        index = np.array([0, 3, 3, 9, 0, 3], np.int32)
        into = np.full(12, 5, np.int32)
        _count(index, into)
        return bool(np.array_equal(into, 5 + np.bincount(index, minlength=12)))
    except Exception:  # noqa: BLE001 - another signature or none: weights of 1 instead
        return False


def _as_index(indices: np.ndarray, top: int) -> np.ndarray:
    """The (checked, non-negative) indices, largest ``top``, as a contiguous native int32 or
    int64 array: native uint32 ones below 2**31 viewed as int32, without a copy."""
    indices = np.ascontiguousarray(indices)
    if indices.dtype in (np.int32, np.int64):
        return indices
    if indices.dtype == np.uint32 and top < 2 ** 31:  # native byte order only
        return indices.view(np.int32)
    return indices.astype(np.int64)


def load() -> None:
    """Import scipy's sparse tools once (module globals, set before ``_loaded``)."""
    global csc_matvec, _sparsetools, _COUNT, _loaded
    if _loaded:
        return
    try:
        from scipy.sparse import _sparsetools as tools
    except ImportError:  # pragma: no cover - no scipy: np.add.at
        tools = None
    _sparsetools = tools  # before the self-test, which calls through it
    csc_matvec = getattr(tools, "csc_matvec", None)
    _COUNT = tools is not None and _counts_right()
    _loaded = True
