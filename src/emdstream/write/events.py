"""The events of a counted stream on their way to the file: ``EventQueue`` (producer side) and
``EventWriter`` (writer-thread side).

A counted put copies its events once, straight into fixed-size chunk buffers of ``indices``,
``counts`` and ``indptr`` (``_Filler``; buffers are reused). The copy itself runs without a lock,
into the part of a buffer that no other thread reads; the fill counts, the buffers and the lists
change under the queue's leaf lock (taken holding the stream's locks, never the other way round;
the writer thread takes it alone and never waits holding it), and the events count (``events``)
once all three datasets have them. A filled chunk is listed for the writer thread (an ``indices``
chunk together with its ``counts`` chunk, its weights in the summed pattern), woken by an
``EventsPending`` message on the file's queue; it has the encoder pool compress the chunk (and add
the events of an ``indices`` chunk into the summed pattern, ``write.summed``), writes it with a
direct chunk write and gives the buffer back. At every flush the writer thread writes the partly
filled chunks too (copies taken under the lock). A counted put queues a slot's events before the
slot enters the counts image, and the writer thread drains the queue at every flush after taking
the streams' snapshots and before the file flush that precedes the commit point
(``committed_slots``): the events of every slot it counts are in the file first. A chunk is never
rewritten in place over its compressed bytes (the chunk log's rule, ``safety.chunklog``): a version
the size of the last is stored raw.
"""
from __future__ import annotations

import collections
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Optional

import h5py
import numpy as np

from emdstream.encoders import ChunkEncoder
from emdstream.format import counted as profile
from emdstream.write.growing import Growing
from emdstream.write.room import Signal
from emdstream.write.summed import SummedPattern

_POLL = 0.05  # seconds between checks of the writer while a put waits for room


class EventsPending:
    """File-queue message: stream ``index`` has filled chunks of events waiting."""

    def __init__(self, index: int):
        self.index = index


Chunk = tuple[str, int, np.ndarray]  # (dataset key, first element, buffer)


class _Filler:
    """Elements of one dataset copied into chunk-sized buffers (producer side; the copy without
    the queue's lock, the bookkeeping under it)."""

    def __init__(self, key: str, dtype: np.dtype, size: int):
        self.key, self.dtype, self.size = key, np.dtype(dtype), size
        self.buffer: Optional[np.ndarray] = None
        self.fill = 0
        self.base = 0
        self.free: list[np.ndarray] = []

    def put(self, values: np.ndarray, lock: threading.Lock, filled: Callable[[Chunk], None]
            ) -> None:
        """Copy ``values`` in after the elements already there: the copy runs without ``lock``
        (into the part of the buffer past ``fill``, which no other thread reads); ``fill`` and
        the buffers change under it, and each filled chunk goes to ``filled``, called under it."""
        at, n = 0, values.size
        while at < n:
            if self.buffer is None:
                with lock:
                    buffer = self.free.pop() if self.free else None
                if buffer is None:
                    buffer = np.empty(self.size, self.dtype)
                with lock:
                    self.buffer = buffer
            take = min(self.size - self.fill, n - at)
            self.buffer[self.fill:self.fill + take] = values[at:at + take]
            at += take
            with lock:
                self.fill += take
                if self.fill == self.size:
                    filled((self.key, self.base, self.buffer))
                    self.base += self.size
                    self.buffer, self.fill = None, 0

    def partial(self) -> Optional[tuple[int, int, np.ndarray]]:
        """(first element, elements, a padded copy) of the chunk being filled, if any."""
        if not self.fill:
            return None
        copy = np.zeros(self.size, self.dtype)
        copy[:self.fill] = self.buffer[:self.fill]
        return self.base, self.fill, copy


class EventQueue:
    """Events put but not yet written, at most ``limit`` of them (a put larger than that is
    taken once nothing waits)."""

    def __init__(self, chunks: queue.SimpleQueue, index: int, chunk_events: int, limit: int,
                 counts_dtype: np.dtype):
        self._chunks = chunks
        self._index = index
        self.limit = limit
        sizes = profile.chunk_lengths(chunk_events)
        dtypes = {"indices": profile.INDEX_DTYPE, "counts": counts_dtype,
                  "indptr": profile.INDPTR_DTYPE}
        self.fillers = {key: _Filler(key, dtypes[key], sizes[key]) for key in profile.EVENT_KEYS}
        self._lock = threading.Lock()
        self._released = Signal()  # a Condition's wait is not safe from Ctrl-C (see room)
        self._full: list[Chunk] = []
        self._out: set[int] = set()  # first elements of indices chunks taken, not yet written
        self.events = 0    # events put
        self.written = 0   # events from the first on that are in the file
        self.finished = False  # the stream's last put is queued (the writer may sum the rest)
        self._nudged = False
        self.fillers["indptr"].put(np.zeros(1, profile.INDPTR_DTYPE), self._lock, self._filled)

    @property
    def pending(self) -> int:
        """Events put and not yet in the file."""
        return self.events - self.written

    def has_room(self, n: int) -> bool:
        return self.pending == 0 or self.pending + n <= self.limit

    def wait_for_room(self, n: int, check: Callable[[], None]) -> None:
        """Wait until ``n`` events fit; ``check`` raises if the file became unusable."""
        while True:
            with self._lock:
                if self.has_room(n):
                    return
                self._released.waiting = True
            self._released.wait(_POLL)
            check()

    def add(self, lengths: np.ndarray, indices: np.ndarray, counts: Optional[np.ndarray]) -> None:
        """One put's rows: their lengths, flat indices (checked) and counts (or None). Called by
        one producer at a time (the stream's order lock); the events count once all three
        datasets have them."""
        ends = np.cumsum(lengths, dtype=np.int64)
        ends += self.events  # changed only here
        fill_idx, fill_cnt = self.fillers["indices"], self.fillers["counts"]
        at, n = 0, indices.size
        while at < n:  # indices and counts chunk by chunk, in step (their chunks have one length)
            stop = min(n, at + fill_idx.size - fill_idx.fill)
            done: list[Chunk] = []
            fill_idx.put(indices[at:stop], self._lock, done.append)
            if counts is not None:
                fill_cnt.put(counts[at:stop], self._lock, done.append)
            if done:  # an indices chunk is listed with its counts chunk: its weights
                with self._lock:
                    self._full.extend(done)
            at = stop
        self.fillers["indptr"].put(ends, self._lock, self._filled)
        with self._lock:
            self.events += indices.size
            if self._full and not self._nudged:
                self._nudged = True
                self._chunks.put(EventsPending(self._index))

    def _filled(self, chunk: Chunk) -> None:
        """A chunk is full (under the lock): listed for the writer (``take`` swaps the list, so
        it is looked up here, never held across the copy)."""
        self._full.append(chunk)

    def wake(self, _=None) -> None:
        """Have the writer thread look at this stream's events (an encoded chunk is ready)."""
        self._chunks.put(EventsPending(self._index))

    def take(self, partials: bool = False) -> tuple[list[Chunk], int, list]:
        """(the filled chunks, events put, and with ``partials`` [(key, first element, elements,
        padded copy) of every chunk being filled]), taken under one hold of the lock (writer
        thread): together they hold every event counted in ``events``, and may hold more of a
        put under way (its copies run without the lock; it counts its events last)."""
        with self._lock:
            full, self._full = self._full, []
            self._out.update(first for key, first, _ in full if key == "indices")
            self._nudged = False
            parts = [(key, *part) for key, filler in self.fillers.items()
                     if partials and (part := filler.partial()) is not None]
            return full, self.events, parts

    def release(self, key: str, first: int, buffer: np.ndarray) -> None:
        """A filled chunk is in the file: its buffer is free again."""
        with self._lock:
            self.fillers[key].free.append(buffer)
            if key == "indices":
                self._out.discard(first)
        self.written_up_to(0)

    def written_up_to(self, events: int) -> None:
        """The first ``events`` events are in the file (or, 0, a chunk buffer came back)."""
        with self._lock:
            waiting = [first for key, first, _ in self._full if key == "indices"]
            below = min([*waiting, *self._out, self.fillers["indices"].base])  # all written below
            self.written = max(self.written, events, min(below, self.events))
            self._released.wake()


class EventWriter:
    """The writer thread's side of a counted stream's events."""

    def __init__(self, group: h5py.Group, encoder: ChunkEncoder, events: EventQueue):
        self.events_group = group[profile.EVENTS]
        self.datasets = {key: self.events_group[key] for key in profile.EVENT_KEYS}
        self._lengths = {key: Growing(ds) for key, ds in self.datasets.items()}  # never shrunk
        self.queue = events
        self.encoder = encoder
        self.raw_masks = {key: (1 << ds.id.get_create_plist().get_nfilters()) - 1
                          for key, ds in self.datasets.items()}
        self._last_size: dict[tuple[str, int], int] = {}  # (key, first) -> bytes of its last write
        self._partial: dict[str, tuple[int, int]] = {}  # key -> (first, elements) last written
        self._inflight: collections.deque = collections.deque()
        self._summed_group = group.parent.get(profile.sum_name(group.name.rsplit("/", 1)[-1]))
        size = self._summed_group["data"].size if self._summed_group is not None else 0
        self.summed = SummedPattern(size, events.fillers["counts"].dtype)
        self._counts_of: dict[int, np.ndarray] = {}  # first element -> filled counts chunk
        self._outputs = Outputs.of(encoder)  # reused payload buffers (bslz4), or None
        self.summed_done = False
        self.on_write: Optional[Callable] = None  # (key, offset, payload, mask, first, end)

    @classmethod
    def of(cls, h5file: h5py.File, stream) -> Optional[EventWriter]:
        """The event writer of a counted stream (``stream.events``), None for a dense one."""
        events = getattr(stream, "events", None)
        if events is None:
            return None
        return cls(h5file[f"data/{stream.name}"], stream.encoder, events)

    def write_ready(self, pool=None, block: bool = False, full: Optional[list[Chunk]] = None
                    ) -> None:
        """Hand the filled chunks (``full``, default: those waiting now) to the encoder pool (or
        encode them here without one) and write those done, in order; with ``block``, all."""
        for key, first, buffer in self.queue.take()[0] if full is None else full:
            if key == "counts":
                self._counts_of[first] = buffer
            self._inflight.append((key, first, buffer, None))
        pending = collections.deque()
        for key, first, buffer, fut in self._inflight:
            if fut is None:
                weights = self._counts_of.pop(first, None) if key == "indices" else None
                summed = self.summed if key == "indices" and self.summed.size else None
                args = (self.encoder, buffer, summed, weights, self._outputs)
                if pool is None:
                    fut = _done(_encode(*args))
                else:  # once encoded, the writer thread is woken to write it
                    fut = pool.submit(_encode, *args)
                    fut.add_done_callback(self.queue.wake)
            pending.append((key, first, buffer, fut))
        self._inflight = pending
        while self._inflight and (block or self._inflight[0][3].done()):
            key, first, buffer, fut = self._inflight.popleft()
            payload, out = fut.result()
            self._write(key, first, buffer, buffer.size, payload)
            if out is not None:
                self._outputs.give(out)
            self.queue.release(key, first, buffer)

    def flush(self, pool=None) -> None:
        """Everything put so far into the file, partly filled chunks too; the summed pattern
        once the stream's last put is in."""
        finished = self.queue.finished
        full, events, partials = self.queue.take(partials=True)  # every event counted is in these
        self.write_ready(pool, block=True, full=full)
        for key, first, valid, buffer in partials:
            if self._partial.get(key) != (first, valid):
                self._write(key, first, buffer, valid, self.encoder.encode(buffer))
                self._partial[key] = (first, valid)
        self.queue.written_up_to(events)
        if finished and not self.summed_done and self._summed_group is not None:
            self._write_summed(partials)

    def _write_summed(self, partials: list) -> None:
        """The summed pattern of every event (filled chunks were summed as they were encoded;
        the rest is summed here), written into the summary group with the count it covers."""
        parts = {key: part for key, *part in partials}
        if "indices" in parts:
            first, valid, buffer = parts["indices"]
            weights = parts["counts"][2][:valid] if "counts" in parts else None
            self.summed.add(buffer[:valid], weights)
        data = self._summed_group["data"]
        data[...] = self.summed.total().reshape(data.shape).astype(data.dtype)
        self.events_group["summed_events"][()] = self.queue.events
        self.summed_done = True

    def _write(self, key: str, first: int, chunk: np.ndarray, valid: int, payload) -> None:
        ds = self.datasets[key]
        end = first + valid
        self._lengths[key].reach(end)  # grows with what is written
        mask, size = 0, memoryview(payload).nbytes
        if self.raw_masks[key] and (size == self._last_size.get((key, first)) or size >= chunk.nbytes):
            payload, mask = chunk.data, self.raw_masks[key]
        ds.id.write_direct_chunk((first,), payload, filter_mask=mask)
        self._last_size[(key, first)] = memoryview(payload).nbytes
        if valid == chunk.size:
            self._last_size.pop((key, first), None)  # a full chunk is never written again
        if self.on_write is not None:
            self.on_write(f"{profile.EVENTS}/{key}", (first,), payload, mask, first, end)


def _encode(encoder: ChunkEncoder, chunk: np.ndarray, summed: Optional[SummedPattern],
            weights: Optional[np.ndarray], outputs: Optional[Outputs] = None):
    """(the chunk's payload, the reused buffer it lies in or None), its events added into
    ``summed`` (an ``indices`` chunk): runs in the encoder pool."""
    if summed is not None:
        summed.add(chunk, weights)
    if outputs is None:
        return encoder.encode(chunk), None
    out = outputs.take(chunk)
    return encoder.encode_into(chunk, out), out


class Outputs:
    """Payload buffers of a codec that encodes into a given buffer (bslz4), reused chunk after chunk: a
    fresh 2 MiB allocation per chunk, freed by another thread, cost page faults (over 200 M events
    54,000-60,000 minor faults without reuse, 30,000 with it; the rest not traced, likely the
    bounded buffer pools' first touch). Taken by encoder threads, given back by the writer thread
    once the chunk is written (deque appends and pops are atomic); at most ``KEEP`` kept per size,
    the rest freed."""

    KEEP = 8

    def __init__(self, encoder: ChunkEncoder):
        self.encoder = encoder
        self._free: dict[int, collections.deque] = collections.defaultdict(collections.deque)

    @classmethod
    def of(cls, encoder: ChunkEncoder) -> Optional[Outputs]:
        return cls(encoder) if hasattr(encoder, "encode_into") else None

    def take(self, chunk: np.ndarray) -> np.ndarray:
        size = self.encoder.out_bytes(chunk.nbytes, chunk.itemsize)
        try:
            return self._free[size].pop()
        except IndexError:
            return np.empty(size, np.uint8)

    def give(self, out: np.ndarray) -> None:
        free = self._free[out.size]
        if len(free) < self.KEEP:
            free.append(out)


def _done(result) -> Future:
    fut: Future = Future()
    fut.set_result(result)
    return fut
