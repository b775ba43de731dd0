"""The events of a counted stream on their way to the file: ``EventQueue`` (producer side) and
``EventWriter`` (writer-thread side).

A counted put hands one block per call (row lengths, indices, counts) to the stream's queue, a
list under a leaf lock (taken holding the stream's locks, never the other way round; the writer
thread takes it alone and never waits holding it). Once a chunk's worth of events waits, the queue
puts an ``EventsPending`` message on the file's queue; the writer thread then packs the events
into fixed-size chunks, encodes them with the stream's codec and writes them with direct chunk
writes (``_Appender``). A counted put queues a slot's events before the slot enters the counts
image, and the writer thread drains the queue at every flush after taking the streams'
snapshots and before the file flush that precedes the commit point (``committed_slots``): the
events of every slot it counts, partly filled chunks included, are in the file first.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Optional

import h5py
import numpy as np

from emdstream.encoders import ChunkEncoder
from emdstream.format import counted as profile

_POLL = 0.05  # seconds between checks of the writer while a put waits for room


class EventsPending:
    """File-queue message: stream ``index`` has a chunk's worth of events waiting."""

    def __init__(self, index: int):
        self.index = index


Block = tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]  # (row lengths, indices, counts)


class EventQueue:
    """Events put but not yet taken by the writer thread, at most ``limit`` of them (a put larger
    than that is taken once the queue is empty)."""

    def __init__(self, chunks: queue.SimpleQueue, index: int, chunk_events: int, limit: int):
        self._chunks = chunks
        self._index = index
        self._chunk_events = chunk_events
        self.limit = limit
        self._lock = threading.Lock()
        self._taken = threading.Condition(self._lock)
        self._blocks: list[Block] = []
        self.pending = 0  # events waiting
        self._nudged = False

    def has_room(self, n: int) -> bool:
        return self.pending == 0 or self.pending + n <= self.limit

    def wait_for_room(self, n: int, check: Callable[[], None]) -> None:
        """Wait until ``n`` events fit; ``check`` raises if the file became unusable."""
        with self._lock:
            while not self.has_room(n):
                self._taken.wait(_POLL)
                check()

    def add(self, lengths: np.ndarray, indices: np.ndarray, counts: Optional[np.ndarray]) -> None:
        """One block of rows (arrays owned by the queue from now on)."""
        with self._lock:
            self._blocks.append((lengths, indices, counts))
            self.pending += indices.size
            if self.pending >= self._chunk_events and not self._nudged:
                self._nudged = True
                self._chunks.put(EventsPending(self._index))

    def take(self) -> list[Block]:
        """Everything waiting (writer thread)."""
        with self._lock:
            blocks, self._blocks = self._blocks, []
            self.pending = 0
            self._nudged = False
            self._taken.notify_all()
        return blocks


class _Appender:
    """One 1-D extendible dataset filled chunk by chunk with direct chunk writes. The extent grows
    with what is written (never shrinks while streaming: HDF5 would rewrite the edge chunk). A
    partly filled chunk is written again as it grows, never in place over its compressed bytes
    (the chunk log's rule, ``safety.chunklog``): a version the size of the last is stored raw."""

    def __init__(self, ds: h5py.Dataset, key: str, encoder: ChunkEncoder,
                 start: Optional[np.ndarray] = None):
        self.ds = ds
        self.key = key  # the dataset's path in the stream's group, for the chunk log
        self.encoder = encoder
        self.size = ds.chunks[0]
        self.raw_mask = (1 << ds.id.get_create_plist().get_nfilters()) - 1
        self.buffer = np.zeros(self.size, ds.dtype)
        self.fill = 0
        self.base = 0               # element offset of the chunk being filled
        self.partial_written = 0    # elements of that chunk already in the file
        self.last_size = -1         # bytes of its last version
        self.on_write: Optional[Callable] = None  # (key, offset, payload, mask, first, end)
        if start is not None:
            self.append(start)

    @property
    def length(self) -> int:
        return self.base + self.fill

    def append(self, values: np.ndarray) -> None:
        at, n = 0, values.size
        while at < n:
            if self.fill == 0 and n - at >= self.size:  # whole chunks straight from the input
                self._write(values[at:at + self.size], self.size)
                self._next_chunk()
                at += self.size
                continue
            take = min(self.size - self.fill, n - at)
            self.buffer[self.fill:self.fill + take] = values[at:at + take]
            self.fill += take
            at += take
            if self.fill == self.size:
                self._write(self.buffer, self.size)
                self._next_chunk()

    def _next_chunk(self) -> None:
        self.base += self.size
        self.fill = self.partial_written = 0
        self.last_size = -1

    def flush(self) -> None:
        """Write the partly filled chunk (padded) if it grew since it was last written."""
        if self.fill > self.partial_written:
            self.buffer[self.fill:] = 0
            self._write(self.buffer, self.fill)
            self.partial_written = self.fill

    def _write(self, chunk: np.ndarray, valid: int) -> None:
        end = self.base + valid
        if end > self.ds.shape[0]:
            self.ds.resize((end,))
        payload, mask = self.encoder.encode(chunk), 0
        size = memoryview(payload).nbytes
        if self.raw_mask and (size == self.last_size or size >= chunk.nbytes):
            payload, mask = np.ascontiguousarray(chunk).data, self.raw_mask
        self.ds.id.write_direct_chunk((self.base,), payload, filter_mask=mask)
        self.last_size = memoryview(payload).nbytes
        if self.on_write is not None:
            self.on_write(self.key, (self.base,), payload, mask, self.base, end)


class EventWriter:
    """The writer thread's side of a counted stream's events."""

    def __init__(self, group: h5py.Group, encoder: ChunkEncoder, events: EventQueue):
        ds = group[profile.EVENTS]
        self.queue = events
        self.indices, self.counts, self.indptr = (
            _Appender(ds[key], f"{profile.EVENTS}/{key}", encoder) for key in profile.EVENT_KEYS)
        self.indptr.append(np.zeros(1, profile.INDPTR_DTYPE))
        self.rows_written = 0  # slots whose events are handed to HDF5

    @classmethod
    def of(cls, h5file: h5py.File, stream) -> Optional[EventWriter]:
        """The event writer of a counted stream (``stream.events``), None for a dense one."""
        events = getattr(stream, "events", None)
        if events is None:
            return None
        return cls(h5file[f"data/{stream.name}"], stream.encoder, events)

    @property
    def on_write(self) -> Optional[Callable]:
        return self.indices.on_write

    @on_write.setter
    def on_write(self, note: Optional[Callable]) -> None:
        """Told of every chunk written: ``note(key, offset, payload, mask, first, end)``,
        ``first .. end`` the elements it holds (the chunk log, ``write.chunk_notes``)."""
        for appender in (self.indices, self.counts, self.indptr):
            appender.on_write = note

    def write_ready(self) -> None:
        """Take what waits and write its full chunks."""
        blocks = self.queue.take()
        if not blocks:
            return
        before = self.indices.length
        self.indices.append(_joined(blocks, 1))
        if blocks[0][2] is not None:  # the first put fixed whether the stream has counts
            self.counts.append(_joined(blocks, 2))
        lengths = _joined(blocks, 0)
        ends = np.cumsum(lengths, dtype=np.int64)
        ends += before
        self.indptr.append(ends)
        self.rows_written += lengths.size

    def flush(self) -> int:
        """Everything taken so far into the file (partial chunks too); returns ``rows_written``."""
        self.write_ready()
        for appender in (self.indices, self.counts, self.indptr):
            appender.flush()
        return self.rows_written


def _joined(blocks: list[Block], part: int) -> np.ndarray:
    arrays = [b[part] for b in blocks]
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
