"""Where each frame goes: data shape, chunk shape, and the chunk that holds each frame slot.

Frames fill the data in C order; slot ``s`` is the ``s``-th frame put. A chunk holds ``k`` frames
along the last scan (or frame-number) axis, never across a scan row, so every chunk is a rectangular
block ``(1, ..., 1, k, *frame_shape)``; a row's last chunk may be partial (padded with fill value).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

DEFAULT_CHUNK_BYTES = 2 * 1024 * 1024  # 2 MiB: see benchmarks/bench_write.py --chunk-sweep
MAX_DEFAULT_CHUNK_FRAMES = 1024  # tiny frames: bound the padding of a partial last chunk


class ChunkGeometry:
    """Shapes and slot -> chunk mapping for a stack (``n_frames``/open-ended) or a scan."""

    def __init__(self, frame_shape: tuple[int, ...], itemsize: int,
                 n_frames: Optional[int] = None, scan_shape: Optional[tuple[int, ...]] = None,
                 chunk_frames: Optional[int] = None, grow_frames: Optional[int] = None):
        self.frame_shape = tuple(frame_shape)
        self.scan_shape = tuple(int(n) for n in scan_shape) if scan_shape else None
        if self.scan_shape and any(n < 1 for n in self.scan_shape):
            raise ValueError(f"scan_shape must hold positive ints, got {scan_shape}")
        if self.scan_shape and n_frames is not None and n_frames != math.prod(self.scan_shape):
            raise ValueError(f"n_frames={n_frames} does not match scan_shape {self.scan_shape}")
        if n_frames is not None and (not isinstance(n_frames, (int, np.integer)) or n_frames < 1):
            raise ValueError(f"n_frames must be a positive int or None, got {n_frames!r}")
        self.row_length = self.scan_shape[-1] if self.scan_shape else n_frames  # None: open-ended
        self.capacity = math.prod(self.scan_shape) if self.scan_shape else n_frames
        frame_bytes = math.prod(self.frame_shape) * itemsize
        if chunk_frames is None:
            chunk_frames = min(MAX_DEFAULT_CHUNK_FRAMES, max(1, DEFAULT_CHUNK_BYTES // frame_bytes))
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
        self.k = min(int(chunk_frames), self.row_length or int(chunk_frames))
        self.grow_frames = grow_frames or max(self.k * 16, (256 << 20) // frame_bytes // self.k * self.k)
        outer = (1,) * (len(self.scan_shape) - 1) if self.scan_shape else ()
        self.chunk_shape = outer + (self.k,) + self.frame_shape
        self.chunk_bytes = math.prod(self.chunk_shape) * itemsize  # one chunk, uncompressed
        self.chunks_per_row = math.ceil(self.row_length / self.k) if self.row_length else None

    @property
    def growing(self) -> bool:
        return self.capacity is None

    def initial_shape(self) -> tuple[int, ...]:
        if self.scan_shape:
            return self.scan_shape + self.frame_shape
        return (self.capacity or self.grow_frames,) + self.frame_shape

    def maxshape(self) -> tuple:
        if self.scan_shape:
            return self.scan_shape + self.frame_shape
        return (None,) + self.frame_shape

    def locate(self, slot: int) -> tuple[int, int]:
        """(chunk id, position of the frame inside the chunk) of a slot."""
        if self.row_length is None:
            return slot // self.k, slot % self.k
        row, inner = divmod(slot, self.row_length)
        return row * self.chunks_per_row + inner // self.k, inner % self.k

    def chunk_slots(self, chunk_id: int) -> tuple[int, int]:
        """First slot and end slot (exclusive) of a chunk."""
        if self.row_length is None:
            return chunk_id * self.k, (chunk_id + 1) * self.k
        row, col = divmod(chunk_id, self.chunks_per_row)
        first = row * self.row_length + col * self.k
        return first, min(first + self.k, (row + 1) * self.row_length)

    def chunk_bounds(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``chunk_slots`` of the chunk of each of ``slots`` (int64 array): (firsts, ends)."""
        if self.row_length is None:
            first = slots - slots % self.k
            return first, first + self.k
        row, inner = np.divmod(slots, self.row_length)
        first = slots - inner % self.k
        return first, np.minimum(first + self.k, (row + 1) * self.row_length)

    def chunks_between(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """``chunk_slots`` of every chunk holding a slot of ``lo .. hi``: (firsts, ends)."""
        if self.row_length is None:
            first = np.arange(lo // self.k, hi // self.k + 1, dtype=np.int64) * self.k
            return first, first + self.k
        rows = np.arange(lo // self.row_length, hi // self.row_length + 1, dtype=np.int64)
        first = (rows[:, None] * self.row_length
                 + np.arange(self.chunks_per_row, dtype=np.int64) * self.k).reshape(-1)
        end = np.minimum(first + self.k, (first // self.row_length + 1) * self.row_length)
        keep = (end > lo) & (first <= hi)
        return first[keep], end[keep]

    def chunk_offset(self, chunk_id: int) -> tuple[int, ...]:
        """Dataset coordinates of the chunk's first element (for ``write_direct_chunk``)."""
        zeros = (0,) * len(self.frame_shape)
        if self.row_length is None:
            return (chunk_id * self.k,) + zeros
        row, col = divmod(chunk_id, self.chunks_per_row)
        outer = np.unravel_index(row, self.scan_shape[:-1]) if self.scan_shape else ()
        return tuple(int(i) for i in outer) + (col * self.k,) + zeros
