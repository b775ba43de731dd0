"""The writer thread: the only code that touches the HDF5 file while frames stream in.

It takes full chunks from the queue, has the encoder pool compress them, writes them in order
with ``write_direct_chunk`` and gives their buffers back. Every flush interval it makes what it
wrote durable (with the partly filled chunk, for slow streams) and records the count in the state
group (see ``layout``), in that order. On close it finalizes the file; on an error it stops and
keeps the error for the producer.
"""
from __future__ import annotations

import collections
import os
import queue
import threading
import time
from typing import Optional

import h5py

from . import filelock, layout
from .assembler import ChunkAssembler
from .chunking import ChunkBuffer, ChunkGeometry
from .encoder_pool import EncoderPool
from .encoders import ChunkEncoder
from .errors import WriterError
from .reader import live_readers_closed

_FRAME_POLL = 0.05  # seconds: how often flush_frames is checked while no chunk arrives


class Close:
    """Queue message: no more frames; ``total_slots`` slots were used (frames put or dropped)."""

    def __init__(self, total_slots: int, closing_comment: str):
        self.total_slots = total_slots
        self.closing_comment = closing_comment


class WriterThread(threading.Thread):
    def __init__(self, h5file: h5py.File, path: str, dataset_name: str, geometry: ChunkGeometry,
                 encoder: ChunkEncoder, assembler: ChunkAssembler, workers: Optional[int],
                 flush_frames: Optional[int], flush_seconds: Optional[float]):
        super().__init__(name=f"emdstream-writer-{dataset_name}", daemon=True)
        self.file = h5file
        self.path = path
        self.dataset_name = dataset_name
        self.geometry = geometry
        self.encoder = encoder
        self.assembler = assembler
        self.chunks = assembler.chunks
        self.workers = workers
        self.flush_frames = flush_frames
        self.flush_seconds = flush_seconds
        self.data = h5file[f"data/{dataset_name}/data"]
        self.state = h5file[f"{layout.STATE_GROUP}/{dataset_name}"]
        self._identity = _file_identity(path)
        self._lock_fd: Optional[int] = filelock.hold(path)
        self.committed = 0  # slots 0..committed-1 have been handed to HDF5
        self.durable = 0    # ... and were flushed and recorded in the file as valid
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
        return durable - self.assembler.dropped_below(durable)

    # --- the thread ------------------------------------------------------------------------
    def run(self) -> None:
        self._pool: Optional[EncoderPool] = None
        self._inflight: collections.deque = collections.deque()
        self._partial_written: Optional[tuple[int, int]] = None
        try:
            self._pool = EncoderPool(self.workers)
            close = self._stream()
            self._finish(close)
        except BaseException as exc:
            self.error = exc
            self._abandon()
        finally:
            if self._pool is not None:
                self._pool.shutdown()
            self.finished.set()

    def _stream(self) -> Close:
        deadline = self._next_deadline()
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            if self.flush_frames:  # frames fill chunks without waking this thread: look often
                timeout = _FRAME_POLL if timeout is None else min(timeout, _FRAME_POLL)
            try:
                # with chunks in flight, take only what is already there, else write the oldest
                item = self.chunks.get_nowait() if self._inflight else self.chunks.get(timeout=timeout)
            except queue.Empty:
                item = None
                self._write_ready(block=True)
            if isinstance(item, Close):
                return item
            if item is not None:
                self._submit(*item)
                self._write_ready(block=len(self._inflight) > 2 * self._pool.workers)
            due_frames = (self.flush_frames
                          and self.assembler.slots - self.durable >= self.flush_frames)
            if due_frames or (deadline is not None and time.monotonic() >= deadline):
                self._flush()
                deadline = self._next_deadline()

    def _next_deadline(self) -> Optional[float]:
        return None if self.flush_seconds is None else time.monotonic() + self.flush_seconds

    def _submit(self, buffer: ChunkBuffer, end: int) -> None:
        fut = self._pool.submit(self.encoder.encode, buffer.array.reshape(self.geometry.chunk_shape))
        self._inflight.append((buffer, end, fut))

    def _write_ready(self, block: bool) -> None:
        """Write finished chunks in order; with ``block``, wait for the oldest one at least."""
        while self._inflight and (block or self._inflight[0][2].done()):
            buffer, end, fut = self._inflight.popleft()
            self._write_chunk(buffer.chunk_id, fut.result())
            self.assembler.release(buffer)
            self.committed = max(self.committed, end)
            block = False

    def _write_chunk(self, chunk_id: int, payload) -> None:
        offset = self.geometry.chunk_offset(chunk_id)
        if self.geometry.growing and offset[0] + self.geometry.k > self.data.shape[0]:
            grow = self.geometry.grow_frames
            new_len = (offset[0] + self.geometry.k + grow - 1) // grow * grow
            self.data.resize((new_len,) + self.data.shape[1:])
        self.data.id.write_direct_chunk(offset, payload)

    def _drain(self) -> None:
        while self._inflight:
            self._write_ready(block=True)

    def _flush(self, final: Optional[Close] = None) -> None:
        """Make every frame received so far durable, then record the count (in that order)."""
        self._drain()
        snap = self.assembler.snapshot()
        if final is not None:
            self.committed = max(self.committed, final.total_slots)
        elif snap.handed_end <= self.committed:  # every full chunk handed over is written
            if snap.partial is None:  # slots after the last chunk were all dropped
                self.committed = max(self.committed, snap.slots)
            elif (snap.partial_id, snap.partial_end) != self._partial_written:
                # a rewrite leaves the chunk's older copy as dead space: only when it grew
                chunk = snap.partial.reshape(self.geometry.chunk_shape)
                self._write_chunk(snap.partial_id, self.encoder.encode(chunk))
                self._partial_written = (snap.partial_id, snap.partial_end)
                self.committed = max(self.committed, snap.partial_end)
        self._check_file_still_there()
        self._record(snap.dropped)

    def _record(self, dropped: list[int]) -> None:
        new_drops = dropped[self._dropped_logged:]
        if new_drops:
            ds = self.state["dropped_frames"]
            ds.resize((ds.shape[0] + len(new_drops),))
            ds[-len(new_drops):] = new_drops
            self._dropped_logged = len(dropped)
        with self._comments_lock:
            comments, self._comments = self._comments, []
        layout.append_log(self.state, comments)
        self.file.flush()
        self.state["committed_slots"][()] = self.committed
        self.file.flush()
        self.durable = self.committed

    def _check_file_still_there(self) -> None:
        if _file_identity(self.path) != self._identity:
            raise FileNotFoundError(f"{self.path} was deleted or replaced while frames were being "
                                    f"written to it")

    def _finish(self, close: Close) -> None:
        self._flush(final=close)
        self.file.close()
        # our flock stays: recover must wait; live readers in this process step aside
        with live_readers_closed(self.path), layout.open_for_finalize(self.path) as f:
            self.frames_written_final, _ = layout.finalize(f, self.dataset_name,
                                                           close.closing_comment)
        self._release_lock()

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
