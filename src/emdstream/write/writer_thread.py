"""The writer thread: the only code that touches the HDF5 file while frames stream in.

It takes full chunks of every stream from the file's one queue, has the encoder pool compress
them and writes them in the order they came, with ``write_direct_chunk``, and gives their buffers
back. What is durable when:

1. A chunk is handed to HDF5 (``committed``): its bytes may still sit in HDF5's or the OS's cache.
2. A flush (every ``flush_seconds``, or once ``flush_frames`` written frames are not yet durable)
   writes each stream's partly filled chunk if its stream is idle (slow streams), appends where
   every chunk went and the counts to the chunk log (``safety.chunklog``; with ``fsync=True`` the
   file is fsynced before, the log after), flushes the file (fsyncs it), and only then records
   each stream's count in its state group (``committed_slots``, see ``layout``) and flushes
   (fsyncs) again: ``durable``. A flush never waits for chunks still in the encoder pool; they
   are counted at the next one.
3. On close: everything is written and flushed, the SWMR handle closed, and the file finalized
   through a journal (``journal``): a kill at any moment leaves either the streaming state or the
   finished file, and ``recover`` completes it. A file with much dead space (slow streams rewrite
   their partial chunk) is then compacted (``compact``).
"""
from __future__ import annotations

import collections
import os
import queue
import threading
import time
import warnings
from concurrent.futures import Future
from typing import Optional

import h5py

from emdstream.errors import WriterError
from emdstream.format import layout
from emdstream.safety import filelock, journal, live_registry
from emdstream.safety.chunklog import ChunkLog
from emdstream.safety.compact import compact_if_worth_it
from emdstream.safety.past_end import free_past_end_of
from emdstream.write.chunk_buffer import ChunkBuffer, EncodedChunk
from emdstream.write.chunk_notes import ChunkNotes
from emdstream.write.encoder_pool import EncoderPool
from emdstream.write.events import EventsPending
from emdstream.write.failure import describe_failure, file_identity
from emdstream.write.held_interrupts import held_interrupts
from emdstream.write.reserve import Reserve
from emdstream.write.sink import RAW_INCOMPRESSIBLE, RAW_WRITER_BEHIND, StreamSink, encode_chunk, raw_chunk
from emdstream.write.writeback import Writeback

# chunks this small (a scalar stream's row: HAADF, a counter) are encoded by the writer thread
# itself: handing one to the encoder pool costs a thread wake-up (~50-100 µs on a VM), more than
# compressing it
SMALL_CHUNK_BYTES = 16 << 10
_FRAME_POLL = 0.05  # seconds: how often flush_frames is checked while no chunk arrives

_FINISH_POLL = 0.002  # seconds: how often wait_finished looks
WRITEBACK_DUE = "writeback due"  # queue message from a producer's write_now (see writeback)


class Close:
    """Queue message: no more frames; ``total_slots[i]`` slots of stream i were used."""

    def __init__(self, total_slots: list[int], closing_comment: str):
        self.total_slots = total_slots
        self.closing_comment = closing_comment


class WriterThread(threading.Thread):
    def __init__(self, h5file: h5py.File, path: str, streams: list, chunks: queue.SimpleQueue,
                 lock_fd: int, workers: Optional[int], flush_frames: Optional[int],
                 flush_seconds: Optional[float], fsync: bool = False, store_raw: bool = False,
                 chunk_log: Optional[ChunkLog] = None):
        super().__init__(name=f"emdstream-writer-{os.path.basename(path)}", daemon=True)
        self.file = h5file
        self.path = path
        self.sinks = [StreamSink(h5file, s) for s in streams]
        self.chunks = chunks
        self.workers = workers
        self.flush_frames = flush_frames
        self.flush_seconds = flush_seconds
        self.fsync = fsync
        self.store_raw = store_raw
        self.chunk_log = chunk_log
        self.notes = ChunkNotes(chunk_log, self.sinks)
        self.pid = os.getpid()
        self._identity = file_identity(path)
        self._lock_fd: Optional[int] = lock_fd
        self._hdf5_fd: Optional[int] = h5file.id.get_vfd_handle()  # None once the file is closed
        self._writeback = Writeback(self._hdf5_fd)
        self._reserve = Reserve(self._hdf5_fd, path)  # disk blocks ahead of the file's end
        self._comments: list[tuple[str, str]] = []
        self._comments_lock = threading.Lock()
        # held by this thread except while it waits for work; a producer that takes it (never
        # waiting for it) may write its stream's encoded chunk itself: ``write_now``
        self.io_lock = threading.Lock()
        # set only once this thread has let go of the file (closed it, freed the blocks reserved
        # past its end, released its lock): a producer that sees it may run ``recover`` at once
        self.error: Optional[BaseException] = None
        self._failing = False  # a producer's write_now failed: no other may write
        self.finished = threading.Event()
        self.final_counts: Optional[dict[str, int]] = None

    @property
    def encoder(self):
        """The first stream's encoder (the one stream of an ``EMDWriter``)."""
        return self.sinks[0].encoder

    # --- called from the producer ------------------------------------------------------------
    def add_comment(self, key: str, text: str) -> None:
        with self._comments_lock:
            self._comments.append((key, text))

    def frames_written(self, index: int) -> int:
        """Frames of stream ``index`` durably in the file and counted there (dropped not counted)."""
        if self.final_counts is not None:
            return self.final_counts[self.sinks[index].name]
        return self.sinks[index].frames_written()

    def failure(self) -> WriterError:
        """The producer-side exception for ``error`` (see ``failure.describe_failure``)."""
        return describe_failure(self.path, self.error, self.sinks)

    def detach_in_forked_child(self) -> None:
        """In a forked child: never write the parent's file (see ``acquisition``). No h5py call
        here: another thread of the parent may have held h5py's lock at the fork."""
        fd = self._hdf5_fd
        if fd is not None:
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, fd)
            os.close(null)
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # the child's copy; the parent's lock stays
            self._lock_fd = None
        self.notes.close()  # the child's copy of the chunk log's descriptor

    # --- the thread ------------------------------------------------------------------------
    def run(self) -> None:
        self._pool: Optional[EncoderPool] = None
        self._inflight: collections.deque = collections.deque()
        self._most_inflight = 2 * (self.workers or os.cpu_count() or 1)
        self.io_lock.acquire()
        try:
            if any(s.events is not None or (s.assembler.layout is None and
                                            s.geometry.chunk_bytes > SMALL_CHUNK_BYTES)
                   for s in self.sinks):
                self._pool = EncoderPool(self.workers)  # not for packed chunks, nor small ones
            close = self._stream()
            self._finish(close)
        except BaseException as exc:
            try:
                self._abandon()
            finally:
                self.error = exc
        finally:
            if self._pool is not None:
                self._pool.shutdown()
            self.io_lock.release()
            self.finished.set()

    def _stream(self) -> Close:
        deadline = self._next_deadline()
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            if self.flush_frames:  # frames fill chunks without waking this thread: look often
                timeout = _FRAME_POLL if timeout is None else min(timeout, _FRAME_POLL)
            try:
                # with chunks in flight, take only what is already there, else write the oldest
                item = self.chunks.get_nowait() if self._inflight else self._wait(timeout)
            except queue.Empty:
                item = None
                self._write_ready(block=True)
            if isinstance(item, Close):
                return item
            if isinstance(item, BaseException):  # a producer's write_now failed
                raise item
            if item is WRITEBACK_DUE:  # advanced below
                item = None
            if isinstance(item, EventsPending):  # a counted stream's events: full chunks
                self.sinks[item.index].events.write_ready(self._pool)
                item = None
            if item is not None:
                saturated = len(self._inflight) >= self._most_inflight
                if saturated and self.store_raw and isinstance(item[1], ChunkBuffer):
                    self._write_raw_now(*item)  # behind: the disk takes it while the pool works
                else:
                    self._submit(*item)
                self._write_ready(block=saturated and not self.store_raw)
            self._writeback.advance(self.notes.file_end)
            self._reserve.advance(self.notes.file_end)
            if self._flush_due() or (deadline is not None and time.monotonic() >= deadline):
                self._flush()
                deadline = self._next_deadline()

    def _wait(self, timeout: Optional[float]):
        """The next queue item; producers may write (``write_now``) while this thread waits, and
        it starts the writeback of what they wrote when asked (``WRITEBACK_DUE``), still without
        ``io_lock``."""
        until = None if timeout is None else time.monotonic() + timeout
        self.io_lock.release()
        try:
            while True:
                self._writeback.advance(self.notes.file_end)
                left = None if until is None else max(0.0, until - time.monotonic())
                item = self.chunks.get(timeout=left)
                if item is not WRITEBACK_DUE:
                    return item
        finally:
            self.io_lock.acquire()

    def write_now(self, index: int, chunk: EncodedChunk) -> bool:
        """From a producer holding its stream's lock: write an in-order encoded chunk in the
        producer's own thread, under this thread's rules (holding ``io_lock``, taken only if this
        thread waits for work; only if nothing of the stream is still queued), counted the same
        way. False: the caller queues it instead. A failure fails the writer as here; so the
        caller holds Ctrl-C back (``held_interrupts``)."""
        if not self.io_lock.acquire(blocking=False):
            return False
        try:
            sink = self.sinks[index]
            if self._failing or self.error is not None or not sink.assembler.may_write_now():
                return False
            sink.write_chunk(self.notes, chunk.chunk_id, chunk.values, chunk.end_slot, chunk.payload)
            sink.count_written(chunk, chunk.end_slot, self.store_raw)
            sink.assembler.written_now(chunk)
            if self._writeback.due(self.notes.file_end):
                self.chunks.put(WRITEBACK_DUE)
            return True
        except BaseException as exc:
            self._failing = True
            self.chunks.put(exc)  # this thread raises it, lets go of the file and sets ``error``
            failed = exc
        finally:
            self.io_lock.release()
        self.wait_finished()
        raise describe_failure(self.path, self.error or failed, self.sinks)

    def wait_finished(self) -> None:
        """Until this thread has finished (the file closed, or let go of after an error); a
        Ctrl-C held back meanwhile (``held_interrupts``: a producer's ``write_now``) raises here,
        so a thread stuck on a dead disk never leaves the producer uninterruptible. Polled, not
        Event.wait(): a Ctrl-C inside that can leave the event's lock held (see ``room``; seen
        once in 100 runs of the Ctrl-C campaign). is_set() and sleep() take none."""
        while not self.finished.is_set():
            held_interrupts.raise_if_caught()
            time.sleep(_FINISH_POLL)

    def _next_deadline(self) -> Optional[float]:
        return None if self.flush_seconds is None else time.monotonic() + self.flush_seconds

    def _flush_due(self) -> bool:
        """``flush_frames`` written frames not yet durable, or put into an idle stream's partial
        chunk (never a reason to wait for chunks still being compressed)."""
        n = self.flush_frames
        return bool(n) and any(
            s.committed - s.durable >= n
            or (s.in_flight == 0 and s.assembler.slots - s.durable >= n
                and (s.assembler.current is not None or s.assembler.slots > s.committed))
            for s in self.sinks)

    def _submit(self, index: int, buffer, end: int) -> None:
        sink = self.sinks[index]
        if isinstance(buffer, EncodedChunk):
            fut = Future()  # nothing to encode
            fut.set_result((buffer.payload,))
        elif buffer.pack is not None:  # compressed in pieces: the rest here, now (see packed)
            fut, rewrite = Future(), (sink.partial_written or (None,))[0] == buffer.chunk_id
            payload = buffer.pack.chunk(sink.assembler, rewrite)  # None: incompressible
            fut.set_result((payload,) if payload is not None else
                           raw_chunk(buffer.array, RAW_INCOMPRESSIBLE))
        elif buffer.array.nbytes <= SMALL_CHUNK_BYTES:  # cheaper here than a thread's wake-up
            fut = Future()
            fut.set_result(encode_chunk(sink, buffer.array))
        else:
            if self._pool is None:  # only streams of other codecs need it
                self._pool = EncoderPool(self.workers)
            fut = self._pool.submit(encode_chunk, sink, buffer.array)
        sink.in_flight += 1
        self._inflight.append((sink, buffer, end, fut))

    def _write_ready(self, block: bool) -> None:
        """Write finished chunks in order; with ``block``, wait for the oldest one at least."""
        while self._inflight and (block or self._inflight[0][3].done()):
            sink, buffer, end, fut = self._inflight.popleft()
            sink.write_chunk(self.notes, buffer.chunk_id, buffer.values, end, *fut.result(),
                             frames=getattr(buffer, "array", None))
            sink.in_flight -= 1
            sink.assembler.release(buffer)
            sink.count_written(buffer, end, self.store_raw)
            block = False

    def _write_raw_now(self, index: int, buffer: ChunkBuffer, end: int) -> None:
        """``on_full="store_raw"`` with the encoder pool saturated: store this chunk as it is,
        ahead of the chunks still being compressed (counted as in any order)."""
        sink = self.sinks[index]
        sink.write_chunk(self.notes, buffer.chunk_id, buffer.values, end,
                         *raw_chunk(buffer.array, RAW_WRITER_BEHIND))
        sink.assembler.release(buffer)
        sink.count_written(buffer, end, self.store_raw)

    def _drain(self) -> None:
        while self._inflight:
            self._write_ready(block=True)

    def _flush(self, final: Optional[Close] = None) -> None:
        """Make what has been written durable, then record the counts (in that order)."""
        if final is not None:
            self._drain()
        else:
            self._write_ready(block=False)
        for index, sink in enumerate(self.sinks):
            snap = sink.assembler.snapshot(sink.dropped_seen)
            if final is not None and not sink.assembler.any_order:
                sink.committed = max(sink.committed, final.total_slots[index])
            elif sink.assembler.any_order or snap.waiting:
                pass  # counted chunk by chunk (count_written); or a chunk waits for an open slot
            elif snap.handed_end <= sink.committed:  # every full chunk handed over is written
                if snap.partial is None:  # slots after the last chunk were all dropped
                    sink.committed = max(sink.committed, snap.slots)
                elif (snap.partial_id, snap.partial_end) != sink.partial_written:
                    # a rewrite leaves the chunk's older copy as dead space: only when it grew
                    sink.write_chunk(self.notes, snap.partial_id, snap.partial_values,
                                     snap.partial_end, *encode_chunk(sink, snap.partial),
                                     frames=snap.partial)
                    sink.partial_written = (snap.partial_id, snap.partial_end)
                    sink.committed = max(sink.committed, snap.partial_end)
            sink.dropped_change = snap.dropped
            sink.values.mark_dropped(snap.dropped.chunkless)
        for sink in self.sinks:  # after the snapshots: every counted slot's events were queued
            if sink.events is not None:
                sink.events.flush(self._pool)
        for sink in self.sinks:  # value blocks too are written before the chunk log names them
            sink.values.flush()
        self._check_file_still_there()
        with self._comments_lock:
            comments, self._comments = self._comments, []
        self.notes.commit(self.sinks, comments,  # before the counts claim the chunks
                          self.file.id.get_vfd_handle() if self.fsync else None)
        self._record(comments)

    def _record(self, comments: list[tuple[str, str]]) -> None:
        for sink in self.sinks:
            sink.record_dropped()
            if sink.raw_written:
                layout.append_rows(sink.state["raw_chunks"], sink.raw_written)
                sink.raw_written = []
            if not sink.names_logged and sink.columns.names is not None:
                layout.record_value_names(sink.state, sink.columns.all_names)
                sink.names_logged = True
        layout.append_log(self.file, comments)
        self._flush_file()
        for sink in self.sinks:
            sink.state["committed_slots"][()] = sink.committed
        self._flush_file()
        for sink in self.sinks:
            sink.durable = sink.committed

    def _flush_file(self) -> None:
        self.file.flush()
        if self.fsync:
            os.fsync(self.file.id.get_vfd_handle())

    def _check_file_still_there(self) -> None:
        if file_identity(self.path) != self._identity:
            raise FileNotFoundError(f"{self.path} was deleted or replaced while frames were being "
                                    f"written to it")

    def _finish(self, close: Close) -> None:
        self._flush(final=close)
        with live_registry.reopen_lock:  # see live_registry
            live_registry.close_live_readers(self.path)
            self._reserve.release_if_short()  # else the journal's truncate frees the blocks
            self._reserve.forget()
            self._hdf5_fd = None
            self.file.close()
            log = self.chunk_log
            counts = journal.finalize(self.path, close.closing_comment,  # flock kept: recover waits
                                      on_applied=log.mark_finalized if log else None)
            if log is not None:
                log.remove()
            try:
                compact_if_worth_it(self.path)
            except OSError as exc:  # the file is finished and whole, only not compacted
                warnings.warn(f"emdstream: {self.path} is finished, but compacting its dead space "
                              f"failed: {exc}", RuntimeWarning, stacklevel=1)
        self.final_counts = {name: written for name, (written, _) in counts.items()}
        self._release_lock()

    def _abandon(self) -> None:
        """After an error: release the file; what the last flush recorded stays valid."""
        for _, _, _, fut in self._inflight:
            fut.cancel()
        still_open, self._hdf5_fd = self._hdf5_fd is not None, None
        try:
            if still_open:
                self._reserve.release()
            elif self._reserve.reserved:  # closed already (inside close): by path, not by number
                free_past_end_of(self.path)
        except OSError:  # only blocks past the end are at stake; recover frees them
            pass
        self._reserve.forget()
        try:
            self.file.close()
        except Exception:
            pass
        self.notes.close()  # the chunk log is kept: recover rebuilds the file from it
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            filelock.release(self._lock_fd)
            self._lock_fd = None
