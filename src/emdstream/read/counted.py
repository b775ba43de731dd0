"""Reading a counted stream (``format.counted``): ``emdstream.open(p)["electrons"]``.

    e = emdstream.open("run.emd")["electrons"]
    e.frames_written, e.values["stage_x"]   # as for dense streams
    e.csr(0, 1000)                          # scipy.sparse.csr_matrix (slots, H * W)
    e.frame(i)                              # one slot as a dense (H, W) frame
    e.counts_image                          # events per slot, shaped like the scan
    e.summed_pattern                        # (H, W): every event summed

A live file (``emdstream.open(p, live=True)``, then ``refresh()``) shows the slots committed so
far; their events are in the file before the count that says so.
"""
from __future__ import annotations

from typing import Optional

import h5py
import numpy as np

from emdstream.encoders.registry import describe_filters
from emdstream.format import counted as profile
from emdstream.format.dims import Dim
from emdstream.read.counted_parts import PartEvents, is_master
from emdstream.read.dataset import EMDDataset
from emdstream.safety.live_registry import reopen_lock


class CountedDataset(EMDDataset):
    """A counted stream: ``data`` is the counts image (events per slot); the events are read with
    ``csr``, ``rows`` and ``frame``."""

    counted = True

    @property
    def parts(self) -> Optional[PartEvents]:
        """A master file's stream: its events, read from the part files (``counted_parts``);
        None for a stream that holds its own events."""
        if "_parts" not in self.__dict__:
            self._parts = PartEvents(self.group) if is_master(self.group) else None
        return self._parts

    @property
    def readable_slots(self) -> int:
        """Slots ``rows`` may read: the written ones, or a master's whole scan (a slot its part
        has not committed, or of a missing part, has no events)."""
        return self.parts.total if self.parts is not None else self.frame_slots

    @property
    def frame_shape(self) -> tuple[int, int]:
        """The detector frame (H, W) the flat pixel indices refer to."""
        return profile.frame_shape(self.group)

    @property
    def has_counts(self) -> bool:
        """Whether events carry per-event counts (else each counts 1)."""
        if self.parts is not None:
            return self.parts.has_counts()
        return profile.has_counts(self.group)

    def rows(self, start: int = 0, stop: Optional[int] = None
             ) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
        """(indptr from 0, indices, counts or None) of slots ``start .. stop - 1``, in slot order
        (a scan's C order); a dropped slot has no events."""
        start, stop = self._span(start, stop)
        with reopen_lock:
            if self.parts is not None:
                return self.parts.rows(start, stop)
            return profile.read_rows(self.group, start, stop)

    def csr(self, start: int = 0, stop: Optional[int] = None):
        """Slots ``start .. stop - 1`` (default: every written slot) as a
        ``scipy.sparse.csr_matrix`` of shape ``(slots, H * W)``."""
        from scipy.sparse import csr_matrix

        indptr, indices, counts = self.rows(start, stop)
        values = counts if counts is not None else np.ones(indices.size, np.uint16)
        h, w = self.frame_shape
        return csr_matrix((values, indices, indptr), shape=(indptr.size - 1, h * w))

    def frame(self, i: int) -> np.ndarray:
        """Slot ``i`` (flat slot index) as a dense ``(H, W)`` frame."""
        indptr, indices, counts = self.rows(i, i + 1)
        return densify(indptr, indices, counts, self.frame_shape, self.frame_dtype)[0]

    def frames_dense(self, start: int, stop: int) -> np.ndarray:
        """Slots ``start .. stop - 1`` as dense frames ``(n, H, W)`` (for readers of dense
        data: one chunk at a time)."""
        indptr, indices, counts = self.rows(start, stop)
        return densify(indptr, indices, counts, self.frame_shape, self.frame_dtype)

    @property
    def frame_dtype(self) -> np.dtype:
        """The dtype of a densified frame (``format.counted.dense_dtype``)."""
        if self.parts is not None:
            return profile.dense_dtype(self.parts.counts_dtype())
        ds = self.group[profile.EVENTS].get("counts")
        return profile.dense_dtype(ds.dtype if ds is not None and self.has_counts else None)

    @property
    def counts_image(self) -> np.ndarray:
        """Events per slot, shaped like ``frame_grid`` (0 where nothing was written)."""
        image = np.asarray(self.frames())
        return image.reshape(self.frame_grid) if image.size == int(np.prod(self.frame_grid)) \
            else image

    @property
    def summed_pattern(self) -> np.ndarray:
        """Every written event summed into one ``(H, W)`` pattern (read from the summary group
        of a finished file, summed from the events while it is written)."""
        summed = self.group.parent.get(profile.sum_name(self.name))
        if summed is not None and summed.attrs.get("complete", False):
            return summed["data"][()]
        with reopen_lock:
            if self.parts is not None:
                total = self.parts.summed_pattern()
                return total if total is not None else np.zeros(self.frame_shape, np.int64)
            return profile.summed_pattern(self.group, self.events_written)

    @property
    def events_written(self) -> int:
        """Events of the written slots (``indptr[frame_slots]``)."""
        with reopen_lock:
            if self.parts is not None:
                return self.parts.events()
            return profile.events_before(self.group, self.frame_slots)

    def events_info(self) -> dict:
        """What ``emdstream info`` shows of the events: how many, the frame, the codec of the
        indices and its ratio, whether they have counts."""
        n = self.events_written
        with reopen_lock:
            if self.parts is not None:  # a master: the parts' own events
                sizes = [(_storage(g[profile.EVENTS]), describe_filters(g[profile.EVENTS]["indices"]))
                         for g, _ in self.parts.parts()]
            else:
                events = self.group[profile.EVENTS]
                sizes = [(_storage(events), describe_filters(events["indices"]))]
        stored = sum(size[0][0] for size in sizes)
        raw = sum(size[0][1] for size in sizes)
        return {"events": n, "frame_shape": list(self.frame_shape),
                "compression": sizes[0][1] if sizes else None, "counts": self.has_counts,
                "stored_bytes": int(stored), "ratio": round(raw / stored, 3) if stored else None,
                "bytes_per_event": round(stored / n, 3) if n else None}

    @property
    def dense(self) -> DenseFrames:
        """The stream as a read-only dense array ``frame_grid + frame_shape`` that reads (and
        densifies) only what is indexed: for dask (``to_hyperspy(lazy=True)``), LiberTEM."""
        return DenseFrames(self)

    @property
    def dense_dims(self) -> list[Dim]:
        """``dims`` of the counts image plus the detector's two axes (of ``dense``)."""
        h, w = self.frame_shape
        return self.dims + [Dim("detector_y", "[px]", values=np.arange(h, dtype=float)),
                            Dim("detector_x", "[px]", values=np.arange(w, dtype=float))]

    def _span(self, start: int, stop: Optional[int]) -> tuple[int, int]:
        n = self.readable_slots
        stop = n if stop is None else int(stop)
        start = int(start)
        if start < 0 or stop < start or stop > n:
            raise IndexError(f"slots {start}..{stop} of {self.name!r}: it has {n} written slots")
        return start, stop

    def __repr__(self) -> str:
        h, w = self.frame_shape
        return (f"<CountedDataset {self.name!r} {self.frame_grid} of {h}x{w} event lists, "
                f"{self.frames_written} frames written{'' if self.complete else ' (in progress)'}>")


def _storage(events: h5py.Group) -> tuple[int, int]:
    """(bytes stored, bytes uncompressed) of an events group's datasets."""
    datasets = [ds for ds in events.values() if isinstance(ds, h5py.Dataset) and ds.ndim == 1]
    return (sum(ds.id.get_storage_size() for ds in datasets),
            sum(ds.shape[0] * ds.dtype.itemsize for ds in datasets))


def densify(indptr: np.ndarray, indices: np.ndarray, counts: Optional[np.ndarray],
            frame_shape: tuple[int, int], dtype) -> np.ndarray:
    """CSR rows as dense frames ``(n, H, W)``: events of a pixel summed (weighted by counts)."""
    n, size = indptr.size - 1, frame_shape[0] * frame_shape[1]
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    flat = np.bincount(rows * size + indices, weights=counts, minlength=n * size)
    dtype = np.dtype(dtype)
    if dtype.kind in "iu" and flat.size and (flat.max() > np.iinfo(dtype).max
                                             or flat.min() < np.iinfo(dtype).min):
        raise OverflowError(f"events of one pixel add up to {flat.max():.0f} / {flat.min():.0f}: "
                            f"beyond the dense frames' {dtype}; read them with rows() or csr()")
    return flat.astype(dtype).reshape((n,) + tuple(frame_shape))


class DenseFrames:
    """A counted dataset seen as a dense array (numpy-style basic indexing): each read densifies
    the slots it touches. ``chunks``: one chunk of the counts image's slots (of a master: one
    part's block), whole frames."""

    def __init__(self, ds: CountedDataset):
        self._ds = ds
        self.grid = tuple(ds.frame_grid)
        self.shape = self.grid + tuple(ds.frame_shape)
        self.maxshape = self.shape
        self.ndim = len(self.shape)
        self.dtype = np.dtype(ds.frame_dtype)
        k = ds.data.chunks[len(self.grid) - 1] if ds.data.chunks else \
            ds.parts.block if ds.parts is not None else 1  # a master: a part's block
        self.chunks = (1,) * (len(self.grid) - 1) + (min(k, self.grid[-1]),) + self.shape[-2:]

    def __getitem__(self, selection) -> np.ndarray:
        if not isinstance(selection, tuple):
            selection = (selection,)
        if any(s is Ellipsis for s in selection):
            i = selection.index(Ellipsis)
            selection = selection[:i] + (slice(None),) * (self.ndim - len(selection) + 1) \
                + selection[i + 1:]
        selection = selection + (slice(None),) * (self.ndim - len(selection))
        n_grid = len(self.grid)
        slots = np.arange(int(np.prod(self.grid))).reshape(self.grid)[selection[:n_grid]]
        flat = np.asarray(slots).reshape(-1)
        out = np.zeros((flat.size,) + self.shape[n_grid:], self.dtype)
        readable = self._ds.readable_slots
        written = flat[flat < readable]
        if written.size:
            lo, hi = int(written.min()), int(written.max()) + 1
            frames = self._ds.frames_dense(lo, hi)
            keep = flat < readable
            out[keep] = frames[flat[keep] - lo]
        out = out.reshape(np.shape(slots) + self.shape[n_grid:])
        return out[(Ellipsis,) + tuple(selection[n_grid:])] if selection[n_grid:] else out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        data = self[()]
        return data if dtype is None else data.astype(dtype)
