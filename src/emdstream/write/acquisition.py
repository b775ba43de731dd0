"""Acquisition: one file holding several streams (diffraction frames, HAADF, spectra...).

    with Acquisition("run.emd", scan_shape=(128, 128), streams=[Stream("diffraction", (256, 256)),
                     Stream("haadf", (), "float32")]) as acq:
        acq["diffraction"].put(frame, stage_z=z)
        acq["haadf"].put(value)

Each stream has its own producer lock and chunk buffers, so streams are fed at their own pace; one
writer thread per file does all HDF5 work for all of them (``writer_thread``).

Threads and the lock order: see ``emdstream.write`` (its package docstring).

Processes: a forked child never touches the parent's file. At fork the child's copy of every open
acquisition is made unusable (``put`` raises at once), HDF5's inherited descriptor is pointed at
/dev/null (HDF5's shutdown in the child would otherwise rewrite the parent's superblock) and the
child's copy of the writer's file lock is closed (so ``recover`` is not refused while it lives).
"""
from __future__ import annotations

import atexit
import os
import queue
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np

from emdstream.format import layout
from emdstream.format.metadata import METADATA_GROUPS, check_metadata, unique_key, utc_key
from emdstream.format.parts import Part
from emdstream.safety import filelock
from emdstream.safety.chunklog import ChunkLog, fsync_dir
from emdstream.write.counted import CountedStream, CountedStreamWriter
from emdstream.write.held_interrupts import uninstall as uninstall_sigint_guard
from emdstream.write.session import FileSession
from emdstream.write.stream import Stream, StreamWriter
from emdstream.write.writer_thread import Close, WriterThread

ON_FULL = ("block", "raise", "drop", "store_raw")
# Chunk buffers are reused, but each is first touched once: a larger default costs page faults
# up front in short runs (benchmarks/bench_write.py) for burst absorption few setups need.
DEFAULT_QUEUE_BYTES = 64 << 20
_open: set[Acquisition] = set()  # closed at interpreter exit if forgotten


class Acquisition:
    """Stream several signals of one acquisition into one EMD v0.2 file.

    Args:
        path: the ``.emd`` file to create.
        streams: ``Stream`` objects, each becoming ``/data/<name>``.
        scan_shape: the probe positions every stream without its own ``n_frames`` shares.
        microscope, user, sample: metadata (numbers, str, bool, numeric arrays).
        on_full: what ``put`` does when a stream's queue is full: "block" (default), "raise"
            (QueueFullError, frame not taken), "drop" (frame counted in ``frames_dropped``) or
            "store_raw" (the writer stores chunks uncompressed while it is behind, so it keeps up
            with the disk; ``put`` blocks only if even that is not enough; readers see the same
            data, and the file counts the chunks stored raw).
        flush_seconds, flush_frames: make written frames durable (and counted in the file) at
            least this often; default every 1 s.
        fsync: also fsync every flush before the count saying the frames are durable is written,
            and that count after (survives a power cut, not only a crash of the process).
        workers: compression threads (default: one per core).
        part, block_frames: ``part=(rank, n)``: this file is one of ``n`` part files of the scan,
            holding the frames of blocks of ``block_frames`` slots with ``block % n == rank``
            (see ``parts``; ``emdstream.write_master`` joins the parts).
        overwrite: replace an existing file (default: refuse).
    """

    def __init__(self, path: str | os.PathLike, streams: Sequence[Stream],
                 scan_shape: Optional[Sequence[int]] = None,
                 microscope: Optional[Mapping[str, Any]] = None,
                 user: Optional[Mapping[str, Any]] = None, sample: Optional[Mapping[str, Any]] = None,
                 on_full: str = "block", flush_seconds: Optional[float] = 1.0,
                 flush_frames: Optional[int] = None, workers: Optional[int] = None,
                 fsync: bool = False, part: Optional[Sequence[int]] = None,
                 block_frames: Optional[int] = None, overwrite: bool = False):
        self.path = os.fspath(path)
        if on_full not in ON_FULL:
            raise ValueError(f"on_full must be one of {ON_FULL}, got {on_full!r}")
        if flush_seconds is None and flush_frames is None:
            raise ValueError("set flush_seconds or flush_frames: a stream that never flushes "
                             "loses everything in a crash")
        _check_positive(flush_seconds=flush_seconds, flush_frames=flush_frames, workers=workers)
        streams = list(streams)
        if not streams:
            raise ValueError("an acquisition needs at least one Stream")
        for s in streams:
            if not isinstance(s, Stream):
                raise TypeError(f"streams must be emdstream.Stream objects, got {type(s).__name__}")
        names = [s.name for s in streams]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"stream names must be unique; repeated: {duplicates}")
        for s in streams:
            _check_positive(queue_frames=getattr(s, "queue_frames", None),
                            chunk_frames=getattr(s, "chunk_frames", None))
        self.on_full = on_full
        self.part = None
        if part is not None or block_frames is not None:
            if not scan_shape:
                raise ValueError("part= and block_frames= split a scan: give scan_shape too")
            self.part = Part.of(part, block_frames)
        self._chunks: queue.SimpleQueue = queue.SimpleQueue()  # every stream's chunks, then Close
        frame_bytes = sum(max(1, int(np.prod(() if isinstance(s, CountedStream) else s.frame_shape,
                                             dtype=np.int64))  # counted: events queue apart
                              * np.dtype(s.dtype).itemsize) for s in streams)
        per_stream = DEFAULT_QUEUE_BYTES // frame_bytes
        self._session = FileSession(self.path, on_full, len(streams))
        self.streams: dict[str, StreamWriter] = {}
        for i, s in enumerate(streams):
            scan = tuple(scan_shape) if scan_shape else None
            kind = CountedStreamWriter if isinstance(s, CountedStream) else StreamWriter
            self.streams[s.name] = kind(self._session, i, s, scan, self._chunks, per_stream,
                                        self.part)
        self.scan_shape = tuple(scan_shape) if scan_shape else None
        metadata = {g: check_metadata(g, v)
                    for g, v in zip(METADATA_GROUPS, (microscope, user, sample))}
        self._check_path(overwrite)
        self._close_lock = threading.Lock()
        self._close_sent = False  # the writer thread has its Close message
        self._failure_reported = False
        self._comment_keys: set[str] = set()
        h5file, lock_fd, log = self._create_file(metadata, fsync)
        try:
            self._thread = WriterThread(h5file, self.path, list(self.streams.values()), self._chunks,
                                        lock_fd, workers, flush_frames, flush_seconds, fsync,
                                        store_raw=on_full == "store_raw", chunk_log=log)
            self._thread.start()
            self._session.writer = self._thread
        except BaseException:
            h5file.close()
            log.close()
            filelock.release(lock_fd)
            raise
        _open.add(self)

    def _create_file(self, metadata, fsync: bool):
        """The file, in SWMR mode, with the writer's lock held, and its chunk log. It is built under
        a temporary name, locked, fsynced, its image put in the chunk log (fsynced), and renamed
        once in SWMR mode, the directory fsynced: at every moment (power cuts included) the path
        is absent (or the old file) or a file that survives a kill -9, that ``recover`` leaves
        alone while we live, and whose log ``recover`` can rebuild it from."""
        partial = f"{self.path}.emdstream-partial"
        first_key = utc_key()
        self._comment_keys.add(first_key)
        try:
            h5file = layout.create_skeleton(partial, list(self.streams.values()), metadata,
                                            (first_key, self._first_comment()))
        except BaseException:
            _remove_if_exists(partial)
            raise
        lock_fd = log = None
        try:
            token = os.urandom(16).hex()  # ties the chunk log to this file (see safety.chunklog)
            h5file[layout.STATE_GROUP].attrs["run_token"] = token
            h5file.swmr_mode = True  # HDF5 drops its own lock here...
            lock_fd = filelock.hold(partial)  # ...so ours can be taken, before the path exists
            os.fsync(h5file.id.get_vfd_handle())
            with open(partial, "rb") as fh:
                image = fh.read()
            log = ChunkLog.create(self.path, image, token, list(self.streams), fsync)
            os.replace(partial, self.path)
            fsync_dir(self.path)  # the path is durable before any count is
        except BaseException:
            h5file.close()
            if lock_fd is not None:
                filelock.release(lock_fd)
            if log is not None:
                log.remove()
            _remove_if_exists(partial)
            raise
        return h5file, lock_fd, log

    def _first_comment(self) -> str:
        def describe(s: StreamWriter) -> str:
            count = "open-ended" if s.geometry.growing else f"{s.geometry.capacity} frames"
            scan = s.geometry.scan_shape
            scan = f", scan {'x'.join(map(str, scan))}" if scan and len(scan) > 1 else ""
            return f"frames {s.spec.shape} {s.spec.dtype}, {count}{scan}, compression {s.compression}"
        parts = [describe(s) if len(self.streams) == 1 else f"{s.name}: {describe(s)}"
                 for s in self.streams.values()]
        return "emdstream: acquisition started, " + "; ".join(parts)

    def _check_path(self, overwrite: bool) -> None:
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"cannot create {self.path}: directory {folder} does not exist")
        if os.path.exists(self.path) and not overwrite:
            raise FileExistsError(f"{self.path} already exists; pass overwrite=True to replace it")

    # --- producing -------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> StreamWriter:
        try:
            return self.streams[name]
        except KeyError:
            raise KeyError(f"no stream {name!r} in {self.path}; it has {list(self.streams)}") from None

    def comment(self, text: str) -> str:
        """Add a timestamped entry to /comments (kept in the file from the next flush on).

        Returns its key; a second comment in the same second gets a ``#2`` suffix."""
        if not isinstance(text, str):
            raise TypeError(f"comment text must be str, got {type(text).__name__}")
        with self._close_lock:
            self._session.raise_if_unusable()
            key = unique_key(utc_key(), self._comment_keys)
            self._comment_keys.add(key)
            self._thread.add_comment(key, text)
        return key

    @property
    def closed(self) -> bool:
        return self._session.closed

    # --- closing -------------------------------------------------------------------------------
    def close(self, comment: Optional[str] = None) -> None:
        """Write the remaining frames, finalize dims, values and comments, close the file.

        Idempotent; every call waits until the file is finished. Interrupted (Ctrl-C), it lets
        the interrupt through and a later ``close()`` finishes the job. Re-raises a writer-thread
        error (after releasing the file).
        """
        if self._session.forked:
            return  # the parent's file: nothing for a forked child to finish
        with self._close_lock:
            if not self._close_sent:  # each step may be repeated after an interrupt
                self._session.closed = True
                used = [s.finish() for s in self.streams.values()]
                self._chunks.put(Close(used, self._closing_comment(comment, used)))
                self._close_sent = True
        self._thread.wait_finished()  # a second close waits as long
        _open.discard(self)
        if not _open:
            uninstall_sigint_guard()  # see held_interrupts
        if self._thread.error is not None and not self._failure_reported:
            self._failure_reported = True  # once: a later close() is a no-op, as on success
            raise self._thread.failure()

    def _closing_comment(self, comment: Optional[str], used: list[int]) -> str:
        closing = comment or "emdstream: acquisition finished"
        early = []
        for s, slots in zip(self.streams.values(), used):
            capacity = s.geometry.capacity
            if capacity is not None and slots < capacity:
                early.append(f"{slots} of {capacity} frame slots used"
                             + (f" in {s.name}" if len(self.streams) > 1 else ""))
        return closing + (f" (stopped early: {'; '.join(early)})" if early else "")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        try:
            self.close(comment=f"emdstream: acquisition aborted by {exc_type.__name__}: {exc}")
        except Exception as close_error:  # the producer's exception propagates; it carries this
            note = f"emdstream: closing {self.path} also failed: {close_error}"
            if hasattr(exc, "add_note"):
                exc.add_note(note)
            else:
                print(note, file=sys.stderr)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Acquisition {self.path!r} {state}: {list(self.streams.values())}>"

    def detach_in_forked_child(self) -> None:
        """In a forked child (called by the fork hook): this copy takes no more frames and lets go
        of the parent's file."""
        self._session.forked = True
        self._thread.detach_in_forked_child()


def _check_positive(**values) -> None:
    for label, value in values.items():
        whole = label != "flush_seconds"
        number = (int, np.integer) if whole else (int, float, np.integer, np.floating)
        if value is not None and (isinstance(value, bool) or not isinstance(value, number)
                                  or not value > 0):
            raise ValueError(f"{label} must be a positive {'int' if whole else 'number'} or None, "
                             f"got {value!r}")


def _remove_if_exists(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _after_fork_in_child() -> None:
    for acquisition in list(_open):
        acquisition.detach_in_forked_child()
    _open.clear()  # a forked child has the writers but not their threads: never wait for them


os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _close_forgotten() -> None:
    """An acquisition the producer never closed is finished at interpreter exit, not left hanging."""
    for acquisition in list(_open):
        try:
            acquisition.close(comment="emdstream: closed at interpreter exit (close() was not called)")
        except Exception as exc:  # nothing to raise to at exit; say it
            print(f"emdstream: closing {acquisition.path} at exit failed: {exc}", file=sys.stderr)
