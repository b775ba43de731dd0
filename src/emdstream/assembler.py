"""The producer's side of the queue: frames are copied once, into reusable chunk buffers.

``put`` copies each frame straight into its slot of the current chunk buffer; a full chunk is
handed to the writer thread through an (unbounded) queue. The number of buffers is bounded, so
a writer that falls behind shows up as no free buffer when a new chunk starts: that is where
back-pressure happens. The writer returns each buffer once its chunk is in the file, and may take
a snapshot of the partly filled chunk so slow streams are durable every flush interval too.
"""
from __future__ import annotations

import bisect
import queue
import threading
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .chunking import ChunkBuffer, ChunkGeometry


@dataclass
class Snapshot:
    """What the producer has handed over or filled so far (taken under the assembler's lock)."""

    handed_end: int                 # every slot below this is in a chunk handed to the writer
    slots: int                      # slots assigned so far (frames put or dropped)
    dropped: list[int]
    partial_id: Optional[int] = None
    partial_end: int = 0
    partial: Optional[np.ndarray] = None  # a copy, fill value where no frame was put
    partial_values: Optional[np.ndarray] = None  # a copy of the value rows


class ChunkAssembler:
    """One stream's chunks: frames copied into buffers, full chunks put on the file's queue as
    ``(stream index, buffer, end slot)``."""

    def __init__(self, geometry: ChunkGeometry, dtype: np.dtype, fillvalue, n_buffers: int,
                 chunks: queue.SimpleQueue, stream_index: int = 0):
        self.geometry = geometry
        self.dtype = dtype
        self.fillvalue = fillvalue
        self.n_buffers = max(2, n_buffers)
        self.chunks = chunks  # the file's one queue, shared by its streams
        self.stream_index = stream_index
        self.lock = threading.Lock()  # guards the fields below; never held while waiting
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        # encoded chunks waiting for the writer: at most as many as there are chunk buffers
        self.encoded_room = threading.Semaphore(self.n_buffers)
        self._allocated = 0
        self.current: Optional[ChunkBuffer] = None
        self.handed_end = 0
        self.slots = 0
        self.dropped: list[int] = []
        self.buffers_high_water = 0
        self.any_order = False  # chunks came in any order (put_encoded_chunk): see writer_thread

    # --- buffers ---------------------------------------------------------------------------
    def acquire(self, timeout: Optional[float]) -> Optional[ChunkBuffer]:
        """A free buffer, a new one while fewer than ``n_buffers`` exist, or None after ``timeout``
        (0: do not wait)."""
        try:
            return self._free.get_nowait()
        except queue.Empty:
            pass
        if self._allocated < self.n_buffers:
            self._allocated += 1
            return ChunkBuffer(self.geometry.k, self.geometry.frame_shape, self.dtype)
        if not timeout:
            return None
        try:
            return self._free.get(timeout=timeout)
        except queue.Empty:
            return None

    def release(self, buffer) -> None:
        """The writer is done with a buffer: its chunk is in the file (an ``EncodedChunk`` frees
        its place in the queue)."""
        if isinstance(buffer, ChunkBuffer):
            self._free.put(buffer)
        else:
            self.encoded_room.release()

    def buffers_in_use(self) -> int:
        return self._allocated - self._free.qsize()

    # --- frames (the caller serializes these) -------------------------------------------------
    # A chunk is handed over as soon as its last slot is filled, and frames are only dropped
    # when no chunk is current: so the current chunk, if any, always holds the next slot.
    def begin_chunk(self, buffer: ChunkBuffer) -> None:
        """Start ``buffer`` as the chunk holding the next slot."""
        chunk_id, _ = self.geometry.locate(self.slots)
        buffer.start(chunk_id, *self.geometry.chunk_slots(chunk_id))
        with self.lock:
            self.current = buffer
        self.buffers_high_water = max(self.buffers_high_water, self.buffers_in_use())

    def add(self, frame: np.ndarray, when: float, columns=()) -> None:
        """Copy a checked frame (and its per-frame values) into the next slot."""
        with self.lock:
            cur = self.current
            cur.put(self.slots - cur.first_slot, frame, when, columns)
            self.slots += 1
            if self.slots == cur.end_slot:
                self._hand_over(cur.end_slot)

    def drop(self) -> None:
        """The next slot gets no frame (``on_full="drop"``)."""
        with self.lock:
            self.dropped.append(self.slots)
            self.slots += 1

    def add_encoded(self, chunk) -> None:
        """Hand an ``EncodedChunk`` to the writer (the caller holds a place in ``encoded_room``)."""
        with self.lock:
            self.chunks.put((self.stream_index, chunk, chunk.end_slot))
            if chunk.in_order:
                self.slots = self.handed_end = chunk.end_slot
            else:
                self.any_order = True
                self.slots += chunk.end_slot - chunk.first_slot

    def dropped_below(self, slot: int) -> int:
        """How many dropped slots lie below ``slot`` (drops are recorded in order)."""
        return bisect.bisect_left(self.dropped, slot)

    def finish(self) -> None:
        """No more frames: hand over the partly filled last chunk."""
        with self.lock:
            if self.current is not None:
                self._hand_over(self.current.filled_end())

    def _hand_over(self, end: int) -> None:
        self.current.complete(self.fillvalue)
        self.chunks.put((self.stream_index, self.current, end))
        self.handed_end = end
        self.current = None

    # --- the writer's view -------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        with self.lock:
            snap = Snapshot(self.handed_end, self.slots, list(self.dropped))
            cur = self.current
            if cur is not None and cur.filled.any():
                snap.partial_id = cur.chunk_id
                snap.partial_end = cur.filled_end()
                snap.partial = np.where(cur.filled.reshape((-1,) + (1,) * (cur.array.ndim - 1)),
                                        cur.array, np.asarray(self.fillvalue, cur.array.dtype))
                snap.partial_values = cur.values.copy()
        return snap
