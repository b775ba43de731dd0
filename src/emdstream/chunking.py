"""Where each frame goes: data shape, chunk shape, and the chunk that holds each frame slot.

Frames fill the data in C order; slot ``s`` is the ``s``-th frame put. A chunk holds ``k`` frames
along the last scan (or frame-number) axis, never across a scan row, so every chunk is a rectangular
block ``(1, ..., 1, k, *frame_shape)``; a row's last chunk may be partial (padded with fill value).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from .values import empty_rows

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

    def chunk_offset(self, chunk_id: int) -> tuple[int, ...]:
        """Dataset coordinates of the chunk's first element (for ``write_direct_chunk``)."""
        zeros = (0,) * len(self.frame_shape)
        if self.row_length is None:
            return (chunk_id * self.k,) + zeros
        row, col = divmod(chunk_id, self.chunks_per_row)
        outer = np.unravel_index(row, self.scan_shape[:-1]) if self.scan_shape else ()
        return tuple(int(i) for i in outer) + (col * self.k,) + zeros


class ChunkBuffer:
    """A reusable chunk-shaped array that frames are copied into, once, at ``put``, with the
    per-frame value rows of those frames (see ``values``)."""

    def __init__(self, k: int, frame_shape: tuple[int, ...], dtype: np.dtype):
        self.array = np.empty((k,) + tuple(frame_shape), dtype=dtype)
        self.values = empty_rows(k)
        self.filled = np.zeros(k, dtype=bool)
        self.open: set[int] = set()  # positions handed out by ``frame_buffer``, not committed yet
        self.chunk_id = -1
        self.first_slot = 0
        self.end_slot = 0

    def start(self, chunk_id: int, first_slot: int, end_slot: int) -> None:
        self.chunk_id, self.first_slot, self.end_slot = chunk_id, first_slot, end_slot
        self.open.clear()
        self.filled[:] = False
        self.values.fill(np.nan)

    def put(self, position: int, frame: np.ndarray, when: float, columns=()) -> None:
        np.copyto(self.array[position, ...], frame, casting="unsafe")  # lossless: checked at put
        self.mark(position, when, columns)

    def mark(self, position: int, when: float, columns=()) -> None:
        """The frame at ``position`` is in place: record its values."""
        row = self.values[position]
        row[0] = when
        for column, value in columns:
            row[column] = value
        self.filled[position] = True

    def put_block(self, position: int, frames: np.ndarray, when: float, columns=()) -> None:
        """Frames for ``position``, ``position + 1``, ... in one copy; ``columns``: (column,
        one value per frame)."""
        end = position + len(frames)
        np.copyto(self.array[position:end], frames, casting="unsafe")  # checked at put_many
        rows = self.values[position:end]
        rows[:, 0] = when
        for column, values in columns:
            rows[:, column] = values
        self.filled[position:end] = True

    def filled_end(self) -> int:
        """The slot after the last frame put in this chunk."""
        positions = np.flatnonzero(self.filled)
        return self.first_slot + int(positions[-1]) + 1 if positions.size else self.first_slot

    def complete(self, fillvalue) -> None:
        """Put the fill value where no frame was put (dropped, or past the end)."""
        if not self.filled.all():
            self.array[~self.filled] = fillvalue


class EncodedChunk:
    """A chunk already in the stream's codec format (a detector's compressed frame, a Dask task's
    output), with the value rows of its frames (``values.empty_rows`` filled in)."""

    def __init__(self, chunk_id: int, payload, values: np.ndarray, first_slot: int,
                 end_slot: int, in_order: bool = True):
        self.chunk_id, self.payload, self.values = chunk_id, payload, values
        self.first_slot, self.end_slot = first_slot, end_slot
        self.in_order = in_order  # False: chunks may come in any order (see writer_thread)
