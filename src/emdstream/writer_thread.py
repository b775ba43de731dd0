"""The writer thread: the only code that touches the HDF5 file while frames stream in.

It takes frames from the queue, collects them into chunks, has the encoder pool compress the
chunks, writes finished chunks in order with ``write_direct_chunk``, and every flush interval makes
what it wrote durable and records it in the state group (see ``layout``). On close it finalizes the
file; on an error it stops and keeps the error for the producer.
"""
from __future__ import annotations

import collections
import os
import queue
import threading
import time
from typing import Optional

import h5py
import numpy as np

from . import filelock, layout
from .chunking import ChunkGeometry, PendingChunk
from .encoder_pool import EncoderPool
from .encoders import ChunkEncoder
from .errors import WriterError


class Close:
    """Queue message: no more frames; ``total_slots`` frames were put or dropped."""

    def __init__(self, total_slots: int, closing_comment: str):
        self.total_slots = total_slots
        self.closing_comment = closing_comment


class WriterThread(threading.Thread):
    def __init__(self, h5file: h5py.File, path: str, name: str, geometry: ChunkGeometry, fillvalue,
                 encoder: ChunkEncoder, frames: queue.Queue, workers: Optional[int],
                 flush_frames: Optional[int], flush_seconds: Optional[float]):
        super().__init__(name=f"emdstream-writer-{name}", daemon=True)
        self.file = h5file
        self.path = path
        self.name = name
        self.geometry = geometry
        self.fillvalue = fillvalue
        self.encoder = encoder
        self.frames = frames
        self.workers = workers
        self.flush_frames = flush_frames
        self.flush_seconds = flush_seconds
        self.data = h5file[f"data/{name}/data"]
        self.state = h5file[f"{layout.STATE_GROUP}/{name}"]
        self._identity = _file_identity(self.path)
        self._lock_fd: Optional[int] = filelock.hold(self.path)
        self.committed = 0  # slots 0..committed-1 have been handed to HDF5
        self.durable = 0    # ... and were flushed and recorded in the file as valid
        self.dropped: list[int] = []  # dropped slots seen so far (gaps in the slots put)
        self._dropped_logged = 0
        self._comments: list[tuple[str, str]] = []
        self._comments_lock = threading.Lock()
        self.error: Optional[BaseException] = None
        self.finished = threading.Event()
        self.frames_written_final: Optional[int] = None

    # --- called from the producer ------------------------------------------------------------
    def add_comment(self, key: str, text: str) -> None:
        with self._comments_lock:
            self._comments.append((key, text))

    @property
    def frames_written(self) -> int:
        """Frames durably in the file and counted there (dropped slots not counted)."""
        durable = self.durable
        return durable - sum(1 for s in self.dropped[:] if s < durable)

    # --- the thread ------------------------------------------------------------------------
    def run(self) -> None:
        self._pool = EncoderPool(self.workers)
        self._inflight: collections.deque = collections.deque()
        self._current: Optional[PendingChunk] = None
        self._next_slot = 0
        self._since_flush = 0
        try:
            close = self._stream()
            self._finish(close)
        except BaseException as exc:
            self.error = exc
            self._abandon()
        finally:
            self._pool.shutdown()
            self.finished.set()

    def _stream(self) -> Close:
        deadline = self._next_deadline()
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                item = self.frames.get(timeout=timeout)
            except queue.Empty:
                item = None
            if isinstance(item, Close):
                return item
            if item is not None:
                self._place(*item)
                self._write_ready(block=len(self._inflight) > 2 * self._pool.workers)
                self._since_flush += 1
            due_frames = self.flush_frames and self._since_flush >= self.flush_frames
            if due_frames or (deadline is not None and time.monotonic() >= deadline):
                self._flush()
                deadline = self._next_deadline()

    def _next_deadline(self) -> Optional[float]:
        return None if self.flush_seconds is None else time.monotonic() + self.flush_seconds

    def _place(self, slot: int, frame: np.ndarray) -> None:
        if slot > self._next_slot:
            self.dropped.extend(range(self._next_slot, slot))
        self._next_slot = slot + 1
        chunk_id, position = self.geometry.locate(slot)
        if self._current is not None and self._current.chunk_id != chunk_id:
            self._submit(self._current, self._current.end_slot)
        if self._current is None:
            self._current = PendingChunk(chunk_id, *self.geometry.chunk_slots(chunk_id))
        self._current.add(position, frame)
        if slot + 1 == self._current.end_slot:
            self._submit(self._current, self._current.end_slot)

    def _submit(self, chunk: PendingChunk, end: int) -> None:
        fut = self._pool.submit(self._encode, chunk)
        self._inflight.append((chunk.chunk_id, end, fut))
        if chunk is self._current:
            self._current = None

    def _encode(self, chunk: PendingChunk) -> bytes:
        block = chunk.assemble(self.geometry.chunk_shape, self.data.dtype, self.fillvalue)
        return self.encoder.encode(block)

    def _write_ready(self, block: bool) -> None:
        """Write finished chunks in order; with ``block``, wait for the oldest one at least."""
        while self._inflight and (block or self._inflight[0][2].done()):
            chunk_id, end, fut = self._inflight.popleft()
            self._write_chunk(chunk_id, fut.result())
            self.committed = max(self.committed, end)
            block = False

    def _write_chunk(self, chunk_id: int, payload: bytes) -> None:
        offset = self.geometry.chunk_offset(chunk_id)
        if self.geometry.growing and offset[0] + self.geometry.k > self.data.shape[0]:
            grow = self.geometry.grow_frames
            new_len = (offset[0] + self.geometry.k + grow - 1) // grow * grow
            self.data.resize((new_len,) + self.data.shape[1:])
        self.data.id.write_direct_chunk(offset, payload)

    def _drain(self) -> None:
        while self._inflight:
            self._write_ready(block=True)

    def _flush(self) -> None:
        """Make every frame received so far durable, then record the count (in that order)."""
        self._drain()
        partial = self._current
        if partial is not None and partial.last_slot_end() > self.committed:
            self._write_chunk(partial.chunk_id, self._encode(partial))
            self.committed = partial.last_slot_end()
        self._check_file_still_there()
        new_drops = self.dropped[self._dropped_logged:]
        if new_drops:
            ds = self.state["dropped_frames"]
            ds.resize((ds.shape[0] + len(new_drops),))
            ds[-len(new_drops):] = new_drops
            self._dropped_logged = len(self.dropped)
        with self._comments_lock:
            comments, self._comments = self._comments, []
        layout.append_log(self.state, comments)
        self.file.flush()
        self.state["committed_slots"][()] = self.committed
        self.file.flush()
        self.durable = self.committed
        self._since_flush = 0

    def _check_file_still_there(self) -> None:
        if _file_identity(self.path) != self._identity:
            raise FileNotFoundError(f"{self.path} was deleted or replaced while frames were being "
                                    f"written to it")

    def _finish(self, close: Close) -> None:
        if close.total_slots > self._next_slot:
            self.dropped.extend(range(self._next_slot, close.total_slots))
        if self._current is not None:
            self._submit(self._current, self._current.last_slot_end())
        self._drain()
        self.committed = max(self.committed, close.total_slots)
        self._flush()
        self.file.close()
        self._release_lock()
        with layout.open_for_finalize(self.path) as f:
            self.frames_written_final, _ = layout.finalize(f, self.name, close.closing_comment)

    def _abandon(self) -> None:
        """After an error: release the file; what the last flush recorded stays valid."""
        for _, _, fut in self._inflight:
            fut.cancel()
        try:
            self.file.close()
        except Exception:
            pass
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            filelock.release(self._lock_fd)
            self._lock_fd = None


def _file_identity(path: str) -> Optional[tuple[int, int]]:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def describe_failure(thread: WriterThread) -> WriterError:
    """The producer-side exception for a writer-thread error, naming what is safe in the file."""
    exc = thread.error
    err = WriterError(
        f"writing {thread.path} failed: {type(exc).__name__}: {exc}. "
        f"{thread.frames_written} frame(s) were safely flushed to the file before the failure; "
        f"frames put after that are lost. Run `emdstream recover {thread.path}` to finish the file.")
    err.__cause__ = exc
    return err
