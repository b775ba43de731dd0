"""The writer's side of a stream's per-frame values: rows gathered into blocks of the table's
chunk size, each block compressed and written once all its rows are in, and at every flush (so the
values of durable frames are durable too; a block written again later leaves its older copy as
dead space, which ``compact`` gives back).

The table ``/data/<name>/frame_values`` is shaped like the frame grid plus one axis of
``values.MAX_VALUES`` columns; its chunks hold ``block_rows`` slots along the last grid axis, a
whole number of data chunks, never crossing a scan row.
"""
from __future__ import annotations

import math

import h5py
import numpy as np

from emdstream.format.chunk_grid import ChunkGeometry
from emdstream.format.values import ENCODER, empty_rows
from emdstream.write.growing import Growing


class ValueTable:
    def __init__(self, dataset: h5py.Dataset, geometry: ChunkGeometry):
        self.ds = dataset
        self.geometry = geometry
        self._chunk_shape = dataset.chunks  # an h5py call each time it is asked
        self.rows = self._chunk_shape[-2]
        scan = geometry.scan_shape  # a stack's blocks just follow one another
        self.blocks_per_row = math.ceil(scan[-1] / self.rows) if scan else None
        self._grown = Growing(dataset) if self.blocks_per_row is None else None  # a stack
        self._blocks: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # block -> (rows, written)
        self._changed: set[int] = set()  # blocks filling that changed since the last flush
        self._with_rows: set[int] = set()  # blocks filling that hold rows stored (not only drops)
        self._stored: dict[tuple, int] = {}  # partly written block's offset -> size of that write
        self._raw_mask = (1 << dataset.id.get_create_plist().get_nfilters()) - 1  # stored as is
        # called after each block written: (offset, payload, filter mask, first slot, end slot)
        self.on_write = None

    def store(self, first: int, end: int, rows: np.ndarray) -> None:
        """The value rows of slots ``first .. end - 1`` (one data chunk, or its filled part)."""
        key, at = self._locate(first)
        values, written = self._block(key)
        n = end - first
        values[at:at + n] = rows[:n]
        written[at:at + n] = True
        self._with_rows.add(key)
        self._filled(key)

    def mark_dropped(self, slots: np.ndarray) -> None:
        """Slots of chunks dropped whole since the last call (sorted, each once): no write stores
        their rows, which stay NaN (the table's fill value) and count as written, so a block
        holding some completes (and is let go) and claims its rows after them. A block of such
        rows only is never written."""
        if not slots.size:
            return
        keys, at = self._locate(slots)  # arrays: one block key and row per slot
        bounds = np.flatnonzero(np.diff(keys)) + 1  # each block's run of slots in turn
        for start, end in zip(np.r_[0, bounds].tolist(), np.r_[bounds, keys.size].tolist()):
            key = int(keys[start])
            if key not in self._blocks and end - start == self._length(key):
                continue  # every row dropped: nothing to write
            self._block(key)[1][at[start:end]] = True
            self._filled(key)

    def _block(self, key: int) -> tuple[np.ndarray, np.ndarray]:
        """(value rows, which are written) of a block still filling."""
        block = self._blocks.get(key)
        if block is None:
            block = self._blocks[key] = (empty_rows(self.rows), np.zeros(self.rows, dtype=bool))
        return block

    def _filled(self, key: int) -> None:
        """Rows of a block were filled: write it once all are (and let it go)."""
        values, written = self._blocks[key]
        if written[:self._length(key)].all():
            if key in self._with_rows:
                self._write(key, values, self._length(key))
            del self._blocks[key]
            self._changed.discard(key)
            self._with_rows.discard(key)
        else:
            self._changed.add(key)

    def flush(self) -> None:
        """Write the blocks still filling that changed (they are written again once complete)."""
        for key in self._changed & self._with_rows:
            values, written = self._blocks[key]
            self._write(key, values, len(written) if written.all() else int(np.argmin(written)))
        self._changed.clear()

    def _locate(self, slot):
        """(block key, row in it) of a slot (or of each of an array of slots)."""
        if self.blocks_per_row is None:
            return divmod(slot, self.rows)
        row, column = divmod(slot, self.geometry.row_length)
        return row * self.blocks_per_row + column // self.rows, column % self.rows

    def _length(self, key: int) -> int:
        if self.blocks_per_row is None:
            return self.rows
        return min(self.rows, self.geometry.row_length - key % self.blocks_per_row * self.rows)

    def _first_slot(self, key: int) -> int:
        if self.blocks_per_row is None:
            return key * self.rows
        row, block = divmod(key, self.blocks_per_row)
        return row * self.geometry.row_length + block * self.rows

    def _write(self, key: int, values: np.ndarray, valid: int) -> None:
        """Write a block whose first ``valid`` rows hold values. A compressed block is never
        rewritten in place (same size as its last write: stored as it is instead), so the bytes
        a durable count relies on stay (see ``safety.chunklog``)."""
        if self.blocks_per_row is None:
            offset = (key * self.rows, 0)
            self._grown.reach(offset[0] + self.rows, self.geometry.grow_frames)  # a growing stack
        else:
            row, block = divmod(key, self.blocks_per_row)
            outer = np.unravel_index(row, self.geometry.scan_shape[:-1]) if len(
                self.geometry.scan_shape) > 1 else ()
            offset = tuple(int(i) for i in outer) + (block * self.rows, 0)
        block = np.ascontiguousarray(values.reshape(self._chunk_shape))
        payload, mask = ENCODER.encode(block), 0
        if len(payload) == self._stored.get(offset):
            payload, mask = block.data, self._raw_mask
        self.ds.id.write_direct_chunk(offset, payload, filter_mask=mask)
        if valid < self._length(key):  # written again as it fills: remember its size
            self._stored[offset] = memoryview(payload).nbytes
        else:  # a whole block is never written again (memory stays bounded)
            self._stored.pop(offset, None)
        if self.on_write is not None:
            first = self._first_slot(key)
            self.on_write(offset, payload, mask, first, first + valid)
