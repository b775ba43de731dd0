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

import numpy as np

from emdstream.format import counted as profile
from emdstream.read.dataset import EMDDataset
from emdstream.safety.live_registry import reopen_lock


class CountedDataset(EMDDataset):
    """A counted stream: ``data`` is the counts image (events per slot); the events are read with
    ``csr``, ``rows`` and ``frame``."""

    counted = True

    @property
    def frame_shape(self) -> tuple[int, int]:
        """The detector frame (H, W) the flat pixel indices refer to."""
        return profile.frame_shape(self.group)

    @property
    def has_counts(self) -> bool:
        """Whether events carry per-event counts (else each counts 1)."""
        return profile.has_counts(self.group)

    def rows(self, start: int = 0, stop: Optional[int] = None
             ) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
        """(indptr from 0, indices, counts or None) of slots ``start .. stop - 1``, in slot order
        (a scan's C order); a dropped slot has no events."""
        start, stop = self._span(start, stop)
        with reopen_lock:
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
        """The dtype of a densified frame: the counts' dtype, else uint16."""
        ds = self.group[profile.EVENTS].get("counts")
        return ds.dtype if ds is not None and self.has_counts else np.dtype(np.uint16)

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
        indptr, _, _ = self.rows(0, None) if self.frame_slots else (np.zeros(1, np.int64), None, None)
        with reopen_lock:
            return profile.summed_pattern(self.group, int(indptr[-1]))

    def _span(self, start: int, stop: Optional[int]) -> tuple[int, int]:
        n = self.frame_slots
        stop = n if stop is None else int(stop)
        start = int(start)
        if start < 0 or stop < start or stop > n:
            raise IndexError(f"slots {start}..{stop} of {self.name!r}: it has {n} written slots")
        return start, stop

    def __repr__(self) -> str:
        h, w = self.frame_shape
        return (f"<CountedDataset {self.name!r} {self.frame_grid} of {h}x{w} event lists, "
                f"{self.frames_written} frames written{'' if self.complete else ' (in progress)'}>")


def densify(indptr: np.ndarray, indices: np.ndarray, counts: Optional[np.ndarray],
            frame_shape: tuple[int, int], dtype) -> np.ndarray:
    """CSR rows as dense frames ``(n, H, W)``: events of a pixel summed (weighted by counts)."""
    n, size = indptr.size - 1, frame_shape[0] * frame_shape[1]
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    flat = np.bincount(rows * size + indices, weights=counts, minlength=n * size)
    return flat.astype(dtype).reshape((n,) + tuple(frame_shape))
