"""Counted streams: a list of electron events per frame slot instead of a dense frame.

    CountedStream("electrons", frame_shape=(576, 576))
    acq["electrons"].put_events(indices, counts=None, **values)      # one frame slot
    acq["electrons"].put_csr(indptr, indices, counts=None, **values)  # n slots, CSR

A ``CountedStreamWriter`` is a scalar ``StreamWriter`` (the number of events per slot: the dense
counts image every EMD reader opens, with per-frame values, timestamps, drops and the commit
point of any stream) plus an ``EventQueue`` for the events themselves (``events``). The layout
is ``format.counted``; the events reach the file through the writer thread (``events``).

Locks: ``_order_lock`` and the event queue's lock have their place in the lock order stated in
``emdstream.write`` (the package docstring).
"""
from __future__ import annotations

import math
import queue
import threading
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from emdstream.errors import QueueFullError
from emdstream.format import counted as profile
from emdstream.format.parts import Part
from emdstream.write.events import EventQueue
from emdstream.write.held_interrupts import held_interrupts
from emdstream.write.session import FileSession
from emdstream.write.stream import Stream, StreamWriter

_POLL = 0.05  # seconds between checks of the writer while a put waits for room
DEFAULT_QUEUE_EVENTS = 16 << 20  # events waiting for the writer (64 MiB of indices) before on_full
COUNTS_QUEUE_FRAMES = 1 << 16  # slots of the counts image waiting (4 bytes each): never the limit


@dataclass
class CountedStream(Stream):
    """A counted signal (electron events), stored as ``/data/<name>`` per the counted-data profile.

    ``frame_shape``: the detector frame (H, W) the flat pixel indices ``ky * W + kx`` refer to.
    ``n_frames``/``open_ended``/``dims`` (scan or frame axes only)/``chunk_frames`` as for
    ``Stream``; they shape the counts image. ``compression``: the codec of the events and the
    counts image. ``counts_dtype``: of the optional per-event counts. ``chunk_events``: events
    per chunk of ``indices``/``counts``. ``queue_events``: how many events may wait for the
    writer before ``on_full`` applies.
    """

    dtype: Any = "uint32"  # of the counts image: events per slot
    fillvalue: Any = 0
    counts_dtype: Any = "uint16"
    chunk_events: int = profile.DEFAULT_CHUNK_EVENTS
    queue_events: int = DEFAULT_QUEUE_EVENTS


class CountedStreamWriter(StreamWriter):
    """``acq[name]`` of a counted stream: ``put_events`` and ``put_csr``."""

    def __init__(self, session: FileSession, index: int, stream: CountedStream,
                 scan_shape: Optional[tuple[int, ...]], chunks: queue.SimpleQueue,
                 default_queue_frames: int, part: Optional[Part] = None):
        shape = tuple(int(n) for n in stream.frame_shape)
        if len(shape) != 2 or min(shape) < 1 or math.prod(shape) > 2 ** 32:
            raise ValueError(f"counted stream {stream.name!r}: frame_shape must be (H, W) of "
                             f"positive ints with H * W <= 2**32, got {stream.frame_shape}")
        if np.dtype(stream.counts_dtype).kind not in "iuf":
            raise TypeError(f"counted stream {stream.name!r}: counts_dtype must be numeric, "
                            f"got {stream.counts_dtype}")
        for label in ("chunk_events", "queue_events"):
            value = getattr(stream, label)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{label} must be a positive int, got {value!r}")
        counts_image = Stream(stream.name, (), stream.dtype, stream.compression, stream.dims,
                              stream.n_frames, stream.open_ended, stream.chunk_frames,
                              stream.queue_frames or COUNTS_QUEUE_FRAMES, stream.fillvalue)
        super().__init__(session, index, counts_image, scan_shape, chunks, default_queue_frames,
                         part)
        self.frame_shape = shape
        self.frame_size = math.prod(shape)
        self.counts_dtype = np.dtype(stream.counts_dtype)
        self.chunk_events = int(stream.chunk_events)
        self.events = EventQueue(chunks, index, self.chunk_events, int(stream.queue_events),
                                 self.counts_dtype)
        self.has_counts: Optional[bool] = None  # fixed by the first put
        self._order_lock = threading.Lock()
        self._events_added = False  # inside a put, after its events were queued (see _waiting)

    def create_layout(self, h5file) -> None:
        """The events group and summed-pattern group (called while the file is made)."""
        profile.create(h5file, self.name, self.frame_shape, self.counts_dtype,
                       self.encoder.dataset_options(), self.chunk_events)

    # --- producing ---------------------------------------------------------------------------
    def put_events(self, indices: Any, counts: Any = None, **values: float) -> bool:
        """One frame slot's events: flat pixel indices (any integer dtype), optional per-event
        counts. Returns False if it was dropped (``on_full="drop"``)."""
        self._session.raise_if_unusable()
        idx = self._checked_indices(indices)
        cnt = self._checked_counts(counts, idx.size)
        with self._order_lock, held_interrupts:  # events and slot together, or neither
            self._value_columns(values)  # checked before anything is taken (or decided)
            self._check_open()
            cnt = self._fix_counts(cnt, idx.size)
            if not self._room(idx.size):
                self._drop(1)
                return False
            self._first_buffer()
            self.events.add(np.array([idx.size], np.int64), idx, cnt)  # before its slot: see events
            self._events_added = True
            try:
                StreamWriter.put(self, np.asarray(idx.size, np.uint32), **values)
            finally:
                self._events_added = False
        return True

    def put_csr(self, indptr: Any, indices: Any, counts: Any = None, **values: Any) -> int:
        """``n`` frame slots at once in CSR form: ``indptr`` (n + 1 entries from 0, not
        decreasing, ending at ``len(indices)``), flat pixel ``indices``, optional ``counts``;
        ``values`` as for ``put_many``. Returns how many slots were taken (0: all dropped,
        ``on_full="drop"``)."""
        self._session.raise_if_unusable()
        lengths = _checked_indptr(indptr)
        idx = self._checked_indices(indices)
        if int(lengths.sum()) != idx.size:
            raise ValueError(f"indptr ends at {int(lengths.sum())} but {idx.size} indices were "
                             f"given; the last entry must equal len(indices)")
        cnt = self._checked_counts(counts, idx.size)
        n = lengths.size
        if n == 0:
            return 0
        with self._order_lock, held_interrupts:
            self.columns.block_columns(values, n)  # checked before anything is taken (or decided)
            self._check_open(n)
            cnt = self._fix_counts(cnt, idx.size)
            if not self._room(idx.size):
                self._drop(n)
                return 0
            self._first_buffer()
            self.events.add(lengths, idx, cnt)  # before their slots: see events
            self._events_added = True
            try:
                StreamWriter.put_many(self, lengths.astype(np.uint32), **values)
            finally:
                self._events_added = False
        return n

    def _room(self, n: int) -> bool:
        """Room in the event queue, following ``on_full`` (False: drop)."""
        events = self.events
        if events.has_room(n):
            return True
        on_full = self._session.on_full
        if on_full == "raise":
            raise QueueFullError(f"event queue of {events.limit} events{self._where()} is full "
                                 f"(writer behind); frame not accepted")
        if on_full == "drop":
            return False
        events.wait_for_room(n, self._waiting)
        return True

    def _drop(self, n: int) -> None:
        """``n`` slots dropped for want of room: counted, with no events."""
        self._check_open(n)
        self.events.add(np.zeros(n, np.int64), np.zeros(0, profile.INDEX_DTYPE),
                        np.zeros(0, self.counts_dtype) if self.has_counts else None)
        with self._lock:
            for _ in range(n):
                self.assembler.drop()

    def _free_buffer(self):
        """A buffer of the counts image, waited for whatever ``on_full`` says: a counted stream
        applies ``on_full`` to its events (``_room``), whose slots are queued first."""
        while True:
            buffer = self.assembler.acquire(timeout=_POLL)
            if buffer is not None:
                return buffer
            self._waiting()

    def _first_buffer(self) -> None:
        """Before a put's events are queued: the counts image's chunk for its first slot, so
        that a Ctrl-C while waiting for it leaves nothing taken."""
        with self._lock:
            if self.assembler.current is None:
                self.assembler.begin_chunk(self._free_buffer())

    def _waiting(self) -> None:
        """Between polls of a wait: a failed writer raises, and a Ctrl-C too unless the put's
        events are queued already (its slots must follow them: the Ctrl-C waits for the end of
        the put)."""
        if not self._events_added:
            held_interrupts.raise_if_caught()
        self._session.raise_if_unusable()

    def _checked_indices(self, indices: Any) -> np.ndarray:
        """Flat pixel indices as a uint32 copy, or TypeError/ValueError."""
        arr = np.asarray(indices)
        if arr.size == 0 and arr.ndim <= 1:
            return np.zeros(0, profile.INDEX_DTYPE)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"indices of {self.name!r} must have an integer dtype, got {arr.dtype}")
        if arr.ndim != 1:
            raise ValueError(f"indices of {self.name!r} must be 1-D flat pixel indices "
                             f"(ky * {self.frame_shape[1]} + kx), got shape {arr.shape}")
        if arr.dtype.kind == "i" and int(arr.min()) < 0:
            raise ValueError(f"indices of {self.name!r} must not be negative, got {int(arr.min())}")
        if int(arr.max()) >= self.frame_size:
            raise ValueError(f"index {int(arr.max())} is outside the {self.frame_shape[0]}x"
                             f"{self.frame_shape[1]} frame of {self.name!r} (largest: "
                             f"{self.frame_size - 1})")
        return arr  # copied (and cast) into the chunk buffers by the event queue

    def _checked_counts(self, counts: Any, n: int) -> Optional[np.ndarray]:
        if counts is None:
            return None
        arr = np.asarray(counts)
        if arr.dtype.kind not in "biuf" or arr.ndim != 1 or arr.size != n:
            raise ValueError(f"counts of {self.name!r} must be 1-D numbers, one per index: got "
                             f"{arr.dtype} of shape {arr.shape} for {n} indices")
        if not np.can_cast(arr.dtype, self.counts_dtype, "safe") and arr.size:
            target = self.counts_dtype
            exact = target.kind in "iu" and arr.dtype.kind in "iu" and \
                np.iinfo(target).min <= int(arr.min()) and int(arr.max()) <= np.iinfo(target).max
            if target.kind == "f":  # exact if it comes back unchanged (2**24 + 1 in float32 not)
                exact = np.array_equal(arr.astype(target).astype(arr.dtype), arr,
                                       equal_nan=arr.dtype.kind == "f")
            if not exact:
                raise ValueError(f"counts of {self.name!r} ({arr.dtype}) do not fit its "
                                 f"counts_dtype {target} exactly")
        return arr.astype(self.counts_dtype)

    def _fix_counts(self, counts: Optional[np.ndarray], n: int) -> Optional[np.ndarray]:
        """Under the order lock: the first put fixes whether the stream has counts; later puts
        without counts get 1 per event, later counts on a stream without them are refused."""
        if self.has_counts is None:
            self.has_counts = counts is not None
        if counts is None:
            return np.ones(n, self.counts_dtype) if self.has_counts else None
        if not self.has_counts:
            raise ValueError(f"stream {self.name!r}: the first put gave no counts, so no put "
                             f"may give counts")
        return counts

    def finish(self) -> int:
        with self._order_lock:  # a counted put in progress hands over its events first
            self.events.finished = True
            return super().finish()

    def _dense_only(self, *args, **kwargs):
        raise TypeError(f"{self.name!r} is a counted stream: use put_events or put_csr")

    put = put_many = put_compressed = put_encoded_chunk = frame_buffer = _dense_only

    def __repr__(self) -> str:
        return (f"<CountedStreamWriter {self.name!r} {self.frame_shape}: {self.frames_put} put, "
                f"{self.frames_written} written, {self.frames_dropped} dropped>")


def _checked_indptr(indptr: Any) -> np.ndarray:
    """The row lengths of a CSR ``indptr`` (int64), or TypeError/ValueError."""
    arr = np.asarray(indptr)
    if arr.dtype.kind not in "iu" or arr.ndim != 1 or arr.size < 1:
        raise TypeError(f"indptr must be a 1-D integer array of n + 1 entries, got {arr.dtype} of "
                        f"shape {arr.shape}")
    if arr[0] != 0:
        raise ValueError(f"indptr must start at 0, got {arr[0]}")
    lengths = np.diff(arr.astype(np.int64))
    if lengths.size and lengths.min() < 0:
        raise ValueError(f"indptr must not decrease (at entry {int(np.argmax(lengths < 0)) + 1})")
    return lengths
