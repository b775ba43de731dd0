"""The producer's side of the queue: frames are copied once, into reusable chunk buffers.

``put`` copies each frame straight into its slot of the current chunk buffer; a full chunk is
handed to the writer thread through an (unbounded) queue. The number of buffers is bounded, so
a writer that falls behind shows up as no free buffer when a new chunk starts: that is where
back-pressure happens. The writer returns each buffer once its chunk is in the file, and may take
a snapshot of the partly filled chunk so slow streams are durable every flush interval too.
"""
from __future__ import annotations

import collections
import queue
import threading
from dataclasses import dataclass
from typing import Optional

import numpy as np

from emdstream.format.chunk_grid import ChunkGeometry
from emdstream.write.chunk_buffer import ChunkBuffer, EncodedChunk
from emdstream.write.dropped import DroppedChange, DroppedSeen, DroppedSlots
from emdstream.write.gather import Gather
from emdstream.write.packed import PieceLayout
from emdstream.write.room import Room

# chunk buffers made (and their memory touched) with the stream, up to 6 and 24 MiB in all: the
# first chunks of an acquisition pay no page faults (a few µs per 4 KiB page on a VM); more are
# made if the writer falls behind, up to the queue's size
PREPARED_BUFFERS, PREPARED_BYTES = 6, 24 << 20


@dataclass
class Snapshot:
    """What the producer has handed over or filled so far (taken under the assembler's lock)."""

    handed_end: int                 # every slot below this is in a chunk handed to the writer
    slots: int                      # slots assigned so far (frames put or dropped)
    dropped: Optional[DroppedChange]  # the slots dropped since the writer last looked
    partial_id: Optional[int] = None
    partial_end: int = 0
    partial: Optional[np.ndarray] = None  # a copy, fill value where no frame was put
    partial_values: Optional[np.ndarray] = None  # a copy of the value rows
    waiting: bool = False  # a complete chunk waits for an open slot: nothing past it is counted


class ChunkAssembler:
    """One stream's chunks: frames copied into buffers, full chunks put on the file's queue as
    ``(stream index, buffer, end slot)``."""

    def __init__(self, geometry: ChunkGeometry, dtype: np.dtype, fillvalue, n_buffers: int,
                 chunks: queue.SimpleQueue, stream_index: int = 0,
                 layout: Optional[PieceLayout] = None):
        self.geometry = geometry
        self.layout = layout  # chunks compressed in pieces (``packed``), or None
        self.dtype = dtype
        self.fillvalue = fillvalue
        self.n_buffers = max(2, n_buffers)
        self.chunks = chunks  # the file's one queue, shared by its streams
        self.stream_index = stream_index
        self.lock = threading.Lock()  # guards the fields below; never held while waiting
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        # encoded chunks waiting for the writer: at most as many as there are chunk buffers
        self.encoded_room = Room(self.n_buffers)
        self._allocated = 0
        self.current: Optional[ChunkBuffer] = None
        self.handed_end = 0
        self.slots = 0
        self.dropped = DroppedSlots()
        self.buffers_high_water = 0
        self.any_order = False  # chunks came in any order (put_encoded_chunk): see writer_thread
        self._complete_chunks: collections.deque = collections.deque()  # waiting for open slots
        self.finished = False
        # pieces handed to the writer thread raw (producer's count) and compressed there since
        # (the writer's): the producer compresses in put while the writer has some left
        self.raw_handed = 0
        self.raw_done = 0
        self.gather: Optional[Gather] = None  # detector-compressed frames into k-frame chunks
        self.queued_chunks = 0   # chunks put on the file's queue (producer's count) ...
        self.written_chunks = 0  # ... and written since (the writer's): see may_write_now
        with_output = 2 if layout is not None else 1  # a packed chunk has its output buffer too
        for _ in range(min(self.n_buffers, PREPARED_BUFFERS,
                           PREPARED_BYTES // max(1, with_output * geometry.chunk_bytes))):
            self._free.put(self._new_buffer())

    # --- buffers ---------------------------------------------------------------------------
    def acquire(self, timeout: Optional[float]) -> Optional[ChunkBuffer]:
        """A free buffer, a new one while fewer than ``n_buffers`` exist, or None after ``timeout``
        (0: do not wait)."""
        try:
            return self._free.get_nowait()
        except queue.Empty:
            pass
        if self._allocated < self.n_buffers:
            return self._new_buffer()
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
            self.encoded_room.give()
        self.written_chunks += 1

    def _new_buffer(self) -> ChunkBuffer:
        self._allocated += 1
        buffer = ChunkBuffer(self.geometry.k, self.geometry.frame_shape, self.dtype, self.layout)
        buffer.touch()
        return buffer

    def buffers_in_use(self) -> int:
        return self._allocated - self._free.qsize()

    def count_raw_done(self, n: int) -> None:
        """The writer thread compressed ``n`` more pieces left raw (one thread adds: no lock)."""
        self.raw_done += n

    def writer_backlog(self) -> int:
        """Pieces the writer thread still has to compress (read without a lock: each count has
        one writer, and a stale value only moves one piece to the other thread)."""
        return self.raw_handed - self.raw_done

    # --- frames (the caller serializes these) -------------------------------------------------
    # A chunk is complete once its last slot is taken; it is handed over when no slot of it (nor
    # of an earlier chunk) is still open (``reserve``), so chunks reach the writer in order.
    # Frames are only dropped when no chunk is current: the current chunk, if any, always holds
    # the next slot.
    def check_not_gathering(self) -> None:
        """Where a buffer is taken for raw frames (the stream's ``_free_buffer``, then
        ``begin_chunk``): refused while a chunk of encoded frames is being gathered, so that a
        refusal takes nothing."""
        if self.gather is not None and self.gather.open:
            raise ValueError("put after put_compressed into the same chunk: a chunk holds frames "
                             "of one kind (use chunk_frames=1 to mix them)")

    def check_not_filling(self) -> None:
        """Where a place is taken for encoded frames (the stream's ``_room_for_encoded``, then
        ``begin_gather``): refused while a chunk of raw frames is being filled, so that a refusal
        takes nothing."""
        if self.current is not None:
            raise ValueError("put_compressed after put into the same chunk: a chunk holds frames "
                             "of one kind (use chunk_frames=1 to mix them)")

    def begin_chunk(self, buffer: ChunkBuffer) -> None:
        """Start ``buffer`` as the chunk holding the next slot (``check_not_gathering`` passed)."""
        chunk_id, _ = self.geometry.locate(self.slots)
        buffer.start(chunk_id, *self.geometry.chunk_slots(chunk_id))
        with self.lock:
            self.current = buffer
        self.buffers_high_water = max(self.buffers_high_water, self.buffers_in_use())

    def add(self, frame: np.ndarray, when: float, columns=()) -> None:
        """Copy a checked frame (and its per-frame values) into the next slot."""
        with self.lock:
            cur = self.current
            cur.put(self.slots - cur.first_slot, frame, when, columns,
                    self.raw_handed - self.raw_done)
            self._taken(1)

    def add_many(self, frames: np.ndarray, when: float, columns=()) -> int:
        """Copy as many of ``frames`` as the current chunk has room for, from the next slot on,
        in one copy; returns how many. ``columns``: (column, array of values per frame)."""
        with self.lock:
            cur = self.current
            n = min(len(frames), cur.end_slot - self.slots)
            cur.put_block(self.slots - cur.first_slot, frames[:n], when,
                          [(c, v[:n]) for c, v in columns], self.raw_handed - self.raw_done)
            self._taken(n)
        return n

    def reserve(self) -> tuple[ChunkBuffer, int]:
        """The next slot, left open for the caller to fill in place (``frame_buffer``): (buffer,
        position); ``commit`` closes it."""
        with self.lock:
            cur = self.current
            position = self.slots - cur.first_slot
            cur.open.add(position)
            self._taken(1)
        return cur, position

    def commit(self, buffer: ChunkBuffer, position: int, when: float, columns, filled: bool) -> None:
        """Close a reserved slot: filled (values recorded) or dropped."""
        with self.lock:
            if self.finished:  # close() went ahead without it: the slot counts as dropped
                return
            if filled:
                if buffer.pack is not None:
                    buffer.pack.filled_in_place(position, self.raw_handed - self.raw_done)
                buffer.mark(position, when, columns)
            else:
                self.dropped.insert(buffer.first_slot + position)
            buffer.open.discard(position)
            self._hand_over_ready()

    def drop(self) -> None:
        """The next slot gets no frame (``on_full="drop"``): none has a chunk buffer for it, or
        (a counted stream's events had no room) it is left empty in the current chunk."""
        with self.lock:
            if self.current is None:
                self.dropped.append(self.slots)
                self.slots += 1
            else:
                self.dropped.insert(self.slots)
                self._taken(1)

    def add_encoded(self, chunk) -> None:
        """Hand an ``EncodedChunk`` to the writer (the caller holds a place in ``encoded_room``)."""
        with self.lock:
            if chunk.in_order:
                self._complete(None, chunk)
                self.slots = chunk.end_slot
                self._gathered(chunk)
            else:
                self.any_order = True
                self.queued_chunks += 1
                self.chunks.put((self.stream_index, chunk, chunk.end_slot))
                self.slots += chunk.end_slot - chunk.first_slot

    # --- encoded frames: gathered, and written by the producer ---------------------------------
    def begin_gather(self) -> Gather:
        """Start gathering the chunk that holds the next slot (``gather`` made by the stream;
        ``check_not_filling`` passed)."""
        chunk_id, _ = self.geometry.locate(self.slots)
        self.gather.start(chunk_id, *self.geometry.chunk_slots(chunk_id))
        return self.gather

    def add_gathered(self, blobs, rows) -> bool:
        """The next slots' frames into the chunk being gathered (no more than it has room for);
        True once the chunk is full."""
        g = self.gather
        with self.lock:
            g.add(self.slots - g.first_slot, blobs, rows)
            self.slots += len(blobs)
            full = self.slots == g.end_slot
            if full:  # a flush's snapshot may decode the gather (``frames``) at any time
                g.fill_rest()
        return full

    def may_write_now(self) -> bool:
        """An in-order encoded chunk may be written at once (``WriterThread.write_now``): nothing
        of this stream waits in the queue, behind an open slot, or in a chunk buffer."""
        with self.lock:
            return (not self._complete_chunks and self.current is None
                    and self.queued_chunks == self.written_chunks)

    def written_now(self, chunk) -> None:
        """``chunk`` was written by the producer: handed over and written, its place free."""
        with self.lock:
            self.slots = max(self.slots, chunk.end_slot)
            self.handed_end = chunk.end_slot
            self._gathered(chunk)
        self.encoded_room.give()

    def _gathered(self, chunk) -> None:
        g = self.gather
        if g is not None and g.open and g.chunk_id == chunk.chunk_id:
            g.count = 0  # handed over: no chunk being gathered

    def dropped_below(self, slot: int) -> int:
        """How many dropped slots lie below ``slot`` (kept sorted)."""
        return self.dropped.below(slot)

    def finish(self) -> None:
        """No more frames: hand over the partly filled last chunk; slots still open (a
        ``frame_buffer`` not left yet) count as dropped."""
        with self.lock:
            if self.current is not None:
                self._complete(self.current.filled_end())
            g = self.gather
            if g is not None and g.open:  # the last chunk, partly gathered
                end = g.first_slot + g.count
                self._complete(None, EncodedChunk(g.chunk_id, bytes(g.payload()), g.values.copy(),
                                                  g.first_slot, end))
                g.count = 0
            for buffer, _ in self._complete_chunks:
                for position in getattr(buffer, "open", ()):
                    self.dropped.insert(buffer.first_slot + position)
                if isinstance(buffer, ChunkBuffer):
                    buffer.open.clear()
            self._hand_over_ready()
            self.finished = True

    def _taken(self, n: int) -> None:
        self.slots += n
        if self.slots == self.current.end_slot:
            self._complete(self.current.end_slot)

    def _complete(self, end: Optional[int], encoded=None) -> None:
        """The current chunk (or an encoded one) is complete: it goes to the writer as soon as
        every chunk before it has gone and none of its slots is open."""
        if encoded is not None:
            self._complete_chunks.append((encoded, encoded.end_slot))
        else:
            self._complete_chunks.append((self.current, end))
            self.current = None
        self._hand_over_ready()

    def _hand_over_ready(self) -> None:
        while self._complete_chunks and not getattr(self._complete_chunks[0][0], "open", None):
            buffer, end = self._complete_chunks.popleft()
            if isinstance(buffer, ChunkBuffer):
                buffer.complete(self.fillvalue)
                if buffer.pack is not None:
                    self.raw_handed += buffer.pack.raw_pieces()
            self.queued_chunks += 1
            self.chunks.put((self.stream_index, buffer, end))
            self.handed_end = end

    # --- the writer's view -------------------------------------------------------------------
    def snapshot(self, seen: DroppedSeen) -> Snapshot:
        """``seen``: the dropped slots the writer has (only newer ones are copied)."""
        with self.lock:
            taken = self.dropped.take(seen, self.geometry, self.slots)
            snap = Snapshot(self.handed_end, self.slots, None, waiting=bool(self._complete_chunks))
            cur = self.current
            if cur is not None and cur.filled.any() and not snap.waiting:
                if cur.pack is not None:
                    cur.pack.materialize()  # frames compressed at put: their raw bytes
                snap.partial_id = cur.chunk_id
                snap.partial_end = cur.filled_end()
                snap.partial = np.where(cur.filled.reshape((-1,) + (1,) * (cur.array.ndim - 1)),
                                        cur.array, np.asarray(self.fillvalue, cur.array.dtype))
                snap.partial_values = cur.values.copy()
            g = self.gather
            if g is not None and g.open and not snap.waiting:
                snap.partial_id, snap.partial_end = g.chunk_id, g.first_slot + g.count
                snap.partial, snap.partial_values = g.frames(), g.values.copy()
        snap.dropped = taken.change(self.geometry)  # the work, without the lock
        return snap
