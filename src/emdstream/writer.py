"""EMDWriter: the producer's side of the stream (``put`` -> bounded queue -> writer thread)."""
from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np

from . import layout
from .assembler import ChunkAssembler
from .chunking import ChunkGeometry
from .dims import Dim, resolve_dims
from .encoders import get_encoder
from .errors import QueueFullError, WriterClosedError, WriterFullError
from .frames import FrameSpec
from .metadata import METADATA_GROUPS, check_metadata, unique_key, utc_key
from .writer_thread import Close, WriterThread, describe_failure

ON_FULL = ("block", "raise", "drop")
# Chunk buffers are reused, but each is first touched once: a larger default costs page faults
# up front in short runs (benchmarks/bench_write.py) for burst absorption few setups need.
DEFAULT_QUEUE_BYTES = 64 << 20
_POLL = 0.05  # seconds between checks of the writer thread while put/close wait
_open_writers: set[EMDWriter] = set()  # closed at interpreter exit if forgotten


class EMDWriter:
    """Stream frames into an EMD v0.2 file from a writer thread.

    Frames are put one at a time; each is checked and copied at once, so ``put`` returns without
    waiting for disk I/O while the queue has room. ``put`` is safe from several threads: frames
    land in the order the ``put`` calls acquire the writer's lock.

    Args:
        path: the ``.emd`` file to create.
        frame_shape, dtype: of every frame.
        n_frames: pre-allocate this many frames; None (default) grows as frames come.
        scan_shape: data shape is ``scan_shape + frame_shape``; frames fill it in C order.
        compression: "bslz4" (default), "zstd", "blosc-lz4", "gzip" or None.
        dims: one ``Dim`` per data axis; default index vectors (``[px]`` for frame axes).
        name: the group ``/data/<name>``.
        microscope, user, sample: metadata (numbers, str, bool, numeric arrays).
        chunk_frames: frames per chunk (default: about 2 MiB per chunk). For slow streams use about
            frame rate x flush_seconds: a partly filled chunk is rewritten at every flush.
        queue_frames: frames that may wait for compression and writing (default: about 64 MiB
            of frames), rounded up to whole chunks, at least 2; this bounds the memory used.
        on_full: what ``put`` does when the queue is full: "block" (default), "raise"
            (QueueFullError, frame not taken) or "drop" (frame counted in ``frames_dropped``,
            its slot keeps the fill value and is listed in the file).
        flush_seconds, flush_frames: make written frames durable (and counted in the file) at
            least this often; default every 1 s.
        workers: compression threads (default: one per core).
        fillvalue: value of slots without a frame (default: dtype max for ints, NaN for floats).
        overwrite: replace an existing file (default: refuse).
    """

    def __init__(self, path: str | os.PathLike, frame_shape: Sequence[int], dtype: Any = "uint16",
                 n_frames: Optional[int] = None, scan_shape: Optional[Sequence[int]] = None,
                 compression: Optional[str] = "bslz4", dims: Optional[Sequence[Dim]] = None,
                 name: str = "dataset_1", microscope: Optional[Mapping[str, Any]] = None,
                 user: Optional[Mapping[str, Any]] = None, sample: Optional[Mapping[str, Any]] = None,
                 chunk_frames: Optional[int] = None, queue_frames: Optional[int] = None,
                 on_full: str = "block", flush_seconds: Optional[float] = 1.0,
                 flush_frames: Optional[int] = None, workers: Optional[int] = None,
                 fillvalue: Any = None, overwrite: bool = False):
        self.path = os.fspath(path)
        self.spec = FrameSpec(tuple(frame_shape), dtype)
        if on_full not in ON_FULL:
            raise ValueError(f"on_full must be one of {ON_FULL}, got {on_full!r}")
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"name must be a non-empty str without '/', got {name!r}")
        if flush_seconds is None and flush_frames is None:
            raise ValueError("set flush_seconds or flush_frames: a stream that never flushes "
                             "loses everything in a crash")
        _check_positive(flush_seconds=flush_seconds, flush_frames=flush_frames, workers=workers,
                        queue_frames=queue_frames, chunk_frames=chunk_frames)
        self.geometry = ChunkGeometry(self.spec.shape, self.spec.dtype.itemsize, n_frames,
                                      tuple(scan_shape) if scan_shape else None, chunk_frames)
        encoder = get_encoder(compression)
        shape = self.geometry.initial_shape()
        n_outer = len(shape) - len(self.spec.shape)
        self.dims = resolve_dims(dims, shape, len(self.spec.shape), self.geometry.growing)
        metadata = {g: check_metadata(g, v)
                    for g, v in zip(METADATA_GROUPS, (microscope, user, sample))}
        self.fillvalue = _default_fill(self.spec.dtype) if fillvalue is None else fillvalue
        self._check_path(overwrite)
        self.name = name
        self.compression = compression
        self.on_full = on_full
        queue_frames = queue_frames or max(2 * self.geometry.k,
                                           DEFAULT_QUEUE_BYTES // max(1, self.spec.nbytes))
        self._assembler = ChunkAssembler(self.geometry, self.spec.dtype, self.fillvalue,
                                         -(-queue_frames // self.geometry.k))
        self._lock = threading.Lock()  # one put (or close) at a time: file order = call order
        self._failure_reported = False
        self._closed = False
        h5file = self._create_file(encoder, shape, metadata, n_outer)
        self._thread = WriterThread(h5file, self.path, name, self.geometry, encoder, self._assembler,
                                    workers, flush_frames, flush_seconds)
        self._thread.start()
        _open_writers.add(self)

    def _create_file(self, encoder, shape, metadata, n_outer: int):
        """The file, in SWMR mode. It is built under a temporary name and renamed once in SWMR
        mode, so that at every moment the path is absent (or the old file) or survives a kill -9."""
        first = (f"emdstream: acquisition started, frames {self.spec.shape} {self.spec.dtype}, "
                 f"{'open-ended' if self.geometry.growing else f'{self.geometry.capacity} frames'}"
                 f"{', scan ' + 'x'.join(map(str, self.geometry.scan_shape)) if n_outer > 1 else ''}"
                 f", compression {self.compression}")
        partial = f"{self.path}.emdstream-partial"
        first_key = utc_key()
        self._comment_keys = {first_key}
        try:
            h5file = layout.create_skeleton(
                partial, self.name, shape, self.geometry.maxshape(), self.geometry.chunk_shape,
                self.spec.dtype, self.fillvalue, encoder.dataset_options(), self.dims, metadata,
                (first_key, first))
        except BaseException:
            _remove_if_exists(partial)
            raise
        try:
            h5file.swmr_mode = True
            os.replace(partial, self.path)
        except BaseException:
            h5file.close()
            _remove_if_exists(partial)
            raise
        return h5file

    def _check_path(self, overwrite: bool) -> None:
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"cannot create {self.path}: directory {folder} does not exist")
        if os.path.exists(self.path) and not overwrite:
            raise FileExistsError(f"{self.path} already exists; pass overwrite=True to replace it")

    # --- producing -----------------------------------------------------------------------------
    def put(self, frame: Any) -> bool:
        """Copy one frame into the stream. Returns False if it was dropped (``on_full="drop"``)."""
        self._raise_if_unusable()
        frame = self.spec.checked(frame)
        with self._lock:
            if self._closed:
                raise WriterClosedError(f"writer for {self.path} is closed")
            assembler = self._assembler
            if self.geometry.capacity is not None and assembler.slots >= self.geometry.capacity:
                raise WriterFullError(f"all {self.geometry.capacity} pre-allocated frames of "
                                      f"{self.path} have been put")
            if assembler.current is None:
                buffer = self._free_buffer()
                if buffer is None:  # on_full="drop"
                    assembler.drop()
                    return False
                assembler.begin_chunk(buffer)
            assembler.add(frame)
        return True

    def _free_buffer(self):
        """A chunk buffer for the next chunk, following ``on_full`` when the writer is behind."""
        if self.on_full != "block":
            buffer = self._assembler.acquire(timeout=0)
            if buffer is None and self.on_full == "raise":
                raise QueueFullError(f"queue of {self.queue_size} frames is full (writer behind); "
                                     f"frame not accepted")
            return buffer
        while True:
            buffer = self._assembler.acquire(timeout=_POLL)
            if buffer is not None:
                return buffer
            self._raise_if_unusable()

    def comment(self, text: str) -> str:
        """Add a timestamped entry to /comments (kept in the file from the next flush on).

        Returns its key; a second comment in the same second gets a ``#2`` suffix."""
        if not isinstance(text, str):
            raise TypeError(f"comment text must be str, got {type(text).__name__}")
        with self._lock:
            self._raise_if_unusable()
            key = unique_key(utc_key(), self._comment_keys)
            self._comment_keys.add(key)
            self._thread.add_comment(key, text)
        return key

    def _raise_if_unusable(self) -> None:
        if self._thread.error is not None:
            raise describe_failure(self._thread)
        if self._closed:
            raise WriterClosedError(f"writer for {self.path} is closed")

    # --- state -------------------------------------------------------------------------------
    @property
    def frames_put(self) -> int:
        """Frames accepted by ``put`` so far (dropped ones not counted)."""
        return self._assembler.slots - self.frames_dropped

    @property
    def frames_dropped(self) -> int:
        """Frames refused by ``put`` with ``on_full="drop"``; their slots hold the fill value."""
        return len(self._assembler.dropped)

    @property
    def queue_high_water(self) -> int:
        """Most frames ever waiting for (or in) compression and writing at once."""
        return self._assembler.buffers_high_water * self.geometry.k

    @property
    def frames_written(self) -> int:
        """Frames durably in the file (after close: all frames put)."""
        if self._thread.frames_written_final is not None:
            return self._thread.frames_written_final
        return self._thread.frames_written

    @property
    def queue_size(self) -> int:
        """Frames the queue holds at most (whole chunk buffers)."""
        return self._assembler.n_buffers * self.geometry.k

    @property
    def closed(self) -> bool:
        return self._closed

    # --- closing -------------------------------------------------------------------------------
    def close(self, comment: Optional[str] = None) -> None:
        """Write the remaining frames, finalize dims and comments, close the file. Idempotent.

        Re-raises a writer-thread error (after releasing the file).
        """
        with self._lock:
            if not self._closed:
                self._closed = True
                slots, capacity = self._assembler.slots, self.geometry.capacity
                closing = comment or "emdstream: acquisition finished"
                if capacity is not None and slots < capacity:
                    closing += f" (stopped early: {slots} of {capacity} frame slots used)"
                self._assembler.finish()
                self._assembler.chunks.put(Close(slots, closing))
        # every caller (a second close, the exit hook) waits until the file is finished
        while not self._thread.finished.wait(_POLL):
            if not self._thread.is_alive():
                break
        _open_writers.discard(self)
        if self._thread.error is not None and not self._failure_reported:
            self._failure_reported = True  # once: a later close() is a no-op, as on success
            raise describe_failure(self._thread)

    def __enter__(self) -> EMDWriter:
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
        state = "closed" if self._closed else "open"
        return (f"<EMDWriter {self.path!r} {state}: {self.frames_put} put, "
                f"{self.frames_written} written, {self.frames_dropped} dropped>")


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


def _default_fill(dtype: np.dtype):
    if dtype.kind == "f":
        return np.nan
    if dtype.kind in "iu":
        return np.iinfo(dtype).max
    return False


# a forked child has the writers but not their threads: it must not wait for them at exit
os.register_at_fork(after_in_child=_open_writers.clear)


@atexit.register
def _close_forgotten_writers() -> None:
    """A writer the producer never closed is finished at interpreter exit, not left hanging."""
    for writer in list(_open_writers):
        try:
            writer.close(comment="emdstream: closed at interpreter exit (close() was not called)")
        except Exception as exc:  # nothing to raise to at exit; say it
            print(f"emdstream: closing {writer.path} at exit failed: {exc}", file=sys.stderr)
