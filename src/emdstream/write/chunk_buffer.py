"""The write path's chunk-shaped buffers: frames copied into their slot at ``put`` (``ChunkBuffer``)
and chunks that arrive already encoded (``EncodedChunk``), each with its frames' value rows."""
from __future__ import annotations

from typing import Optional

import numpy as np

from emdstream.format.values import empty_rows
from emdstream.write.packed import Packing, PieceLayout


class ChunkBuffer:
    """A reusable chunk-shaped array that frames are copied into, once, at ``put``, with the
    per-frame value rows of those frames (see ``values``). With a ``PieceLayout`` (bslz4 of
    block-aligned frames), frames may instead be compressed at ``put`` into ``pack``."""

    def __init__(self, k: int, frame_shape: tuple[int, ...], dtype: np.dtype,
                 layout: Optional[PieceLayout] = None):
        self.array = np.empty((k,) + tuple(frame_shape), dtype=dtype)
        self.pack = Packing(layout, self.array.reshape(-1)) if layout is not None else None
        self.values = empty_rows(k)
        self.filled = np.zeros(k, dtype=bool)
        self.open: set[int] = set()  # positions handed out by ``frame_buffer``, not committed yet
        self.chunk_id = -1
        self.first_slot = 0
        self.end_slot = 0

    def touch(self) -> None:
        """Write every page of the buffers once, so that no ``put`` pays their page faults."""
        self.array.reshape(-1).view(np.uint8)[::4096] = 0
        if self.pack is not None:
            self.pack.out[12::4096] = 0

    def start(self, chunk_id: int, first_slot: int, end_slot: int) -> None:
        self.chunk_id, self.first_slot, self.end_slot = chunk_id, first_slot, end_slot
        self.open.clear()
        self.filled[:] = False
        self.values.fill(np.nan)
        if self.pack is not None:
            self.pack.reset()

    def put(self, position: int, frame: np.ndarray, when: float, columns=(),
            backlog: int = 0) -> None:
        """``backlog``: pieces the writer thread has still to compress (see ``packed``)."""
        if self.pack is not None:
            self.pack.take(position, frame[None], backlog)
        else:
            np.copyto(self.array[position, ...], frame, casting="unsafe")  # lossless: checked
        self.mark(position, when, columns)

    def mark(self, position: int, when: float, columns=()) -> None:
        """The frame at ``position`` is in place: record its values."""
        row = self.values[position]
        row[0] = when
        for column, value in columns:
            row[column] = value
        self.filled[position] = True

    def put_block(self, position: int, frames: np.ndarray, when: float, columns=(),
                  backlog: int = 0) -> None:
        """Frames for ``position``, ``position + 1``, ... in one copy; ``columns``: (column,
        one value per frame)."""
        end = position + len(frames)
        if self.pack is not None:
            self.pack.take(position, frames, backlog)
        else:
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
