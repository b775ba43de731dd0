"""One stream of an acquisition: what it is (``Stream``) and the producer's side of it (``StreamWriter``).

The data path, top to bottom: ``StreamWriter.put`` checks a frame and copies it into its slot of
the stream's current chunk buffer (``assembler``); a full chunk goes on the file's one queue; the
writer thread (``writer_thread``) has the encoder pool compress it and writes it to the file.
"""
from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from emdstream.encoders import ChunkEncoder, get_encoder
from emdstream.errors import QueueFullError, WriterClosedError, WriterFullError
from emdstream.format.chunk_grid import ChunkGeometry
from emdstream.format.dims import Dim, resolve_dims
from emdstream.format.parts import Part
from emdstream.format.values import MAX_VALUES, ValueColumns, empty_rows, now
from emdstream.write.assembler import ChunkAssembler
from emdstream.write.chunk_buffer import EncodedChunk
from emdstream.write.frames import FrameSpec
from emdstream.write.gather import Gather
from emdstream.write.held_interrupts import held_interrupts
from emdstream.write.packed import PieceLayout
from emdstream.write.session import FileSession

_POLL = 0.05  # seconds between checks of the writer thread while put waits for room


@dataclass
class Stream:
    """One signal of an acquisition, stored as its own ``/data/<name>`` EMD group.

    ``frame_shape=()`` records one value per frame slot (e.g. HAADF per probe position). A stream
    shares the acquisition's ``scan_shape`` unless it sets ``n_frames`` or ``open_ended=True``.
    ``compression``: "bslz4", "zstd", "blosc-lz4", "gzip", None, or an encoder object such as
    ``emdstream.encoders.Zstd(level=9)``. ``chunk_frames``, ``queue_frames``, ``fillvalue`` as for
    ``EMDWriter``.
    """

    name: str
    frame_shape: Sequence[int]
    dtype: Any = "uint16"
    compression: Any = "bslz4"
    dims: Optional[Sequence[Dim]] = None
    n_frames: Optional[int] = None
    open_ended: bool = False
    chunk_frames: Optional[int] = None
    queue_frames: Optional[int] = None
    fillvalue: Any = None


class StreamWriter:
    """``acq[name]``: puts frames (and per-frame values) into one stream. Safe from several
    threads: frames land in the order the ``put`` calls take the stream's lock."""

    def __init__(self, session: FileSession, index: int, stream: Stream,
                 scan_shape: Optional[tuple[int, ...]], chunks: queue.SimpleQueue,
                 default_queue_frames: int, part: Optional[Part] = None):
        if not isinstance(stream.name, str) or not stream.name or "/" in stream.name:
            raise ValueError(f"stream name must be a non-empty str without '/', got {stream.name!r}")
        self._session = session
        self.index = index
        self.name = stream.name
        self.spec = FrameSpec(tuple(stream.frame_shape), stream.dtype)
        own_count = stream.n_frames is not None or stream.open_ended
        if stream.n_frames is not None and stream.open_ended:
            raise ValueError(f"stream {self.name!r}: n_frames and open_ended=True exclude each other")
        self.encoder: ChunkEncoder = get_encoder(stream.compression).for_frames(
            self.spec.nbytes, self.spec.dtype.itemsize)
        self.compression = self.encoder.name
        self.attrs: dict = {}  # extra attributes of the data group (a part file's layout)
        if part is not None and scan_shape and not own_count:  # the frames of this part's blocks
            whole = ChunkGeometry(self.spec.shape, 1, None, scan_shape)
            scan_dims = resolve_dims(stream.dims, whole.initial_shape(), len(self.spec.shape),
                                     False, is_scan=True)
            n_local = part.slots(whole.capacity).size
            if n_local == 0:
                raise ValueError(f"part {part.rank} of {part.count} holds no frame of a scan of "
                                 f"{whole.capacity} with block_frames={part.block_frames}")
            self.geometry = ChunkGeometry(self.spec.shape, self.spec.dtype.itemsize, n_local, None,
                                          stream.chunk_frames)
            self.dims = part.stream_dims(scan_shape, scan_dims)
            self.attrs = part.attrs(scan_shape, scan_dims)
        else:
            self.geometry = ChunkGeometry(self.spec.shape, self.spec.dtype.itemsize,
                                          stream.n_frames, None if own_count else scan_shape,
                                          stream.chunk_frames)
            self.dims = resolve_dims(stream.dims, self.geometry.initial_shape(),
                                     len(self.spec.shape), self.geometry.growing,
                                     is_scan=self.geometry.scan_shape is not None)
        self.fillvalue = _default_fill(self.spec.dtype) if stream.fillvalue is None \
            else stream.fillvalue
        self.columns = ValueColumns(self.name, [d.from_values for d in self.dims if d.from_values])
        queue_frames = stream.queue_frames or max(2 * self.geometry.k, default_queue_frames)
        layout = PieceLayout.of(self.encoder, self.geometry.k, self.spec.shape, self.spec.dtype,
                                session.on_full)
        self.assembler = ChunkAssembler(self.geometry, self.spec.dtype, self.fillvalue,
                                        -(-queue_frames // self.geometry.k), chunks, index, layout)
        self._compressed_refusal = Gather.refusal(self.encoder)  # put_compressed
        self._lock = threading.Lock()  # one put (or the close) at a time: file order = call order
        self.closed = False

    # --- producing -----------------------------------------------------------------------------
    def put(self, frame: Any, **values: float) -> bool:
        """Copy one frame (and its per-frame values) into the stream. Returns False if it was
        dropped (``on_full="drop"``)."""
        self._session.raise_if_unusable()
        frame = self.spec.checked(frame)
        when = now()
        with self._lock, held_interrupts:  # a Ctrl-C: at the end, or while waiting
            columns = self._value_columns(values)
            self._check_open()
            assembler = self.assembler
            if assembler.current is None:
                buffer = self._free_buffer()
                if buffer is None:  # on_full="drop"
                    assembler.drop()
                    return False
                assembler.begin_chunk(buffer)
            assembler.add(frame, when, columns)
        return True

    def put_many(self, frames: Any, **values: Any) -> int:
        """Copy a block of frames ``(n, *frame_shape)``: the same result as n puts, one call's
        overhead. ``values``: a length-n sequence (or one number for all) per name. Returns how
        many were taken (fewer when ``on_full="drop"`` dropped some). A Ctrl-C while it waits for
        room raises KeyboardInterrupt: ``frames_put`` says how many of the block were taken."""
        self._session.raise_if_unusable()
        frames = self.spec.checked_block(frames)
        n, when = len(frames), now()
        with self._lock, held_interrupts:
            columns = self.columns.block_columns(values, n)
            self._check_open(n)
            assembler, done, taken = self.assembler, 0, 0
            while done < n:
                if assembler.current is None:
                    buffer = self._free_buffer()
                    if buffer is None:  # on_full="drop": this frame's slot stays empty
                        assembler.drop()
                        done += 1
                        continue
                    assembler.begin_chunk(buffer)
                added = assembler.add_many(frames[done:], when, [(c, v[done:]) for c, v in columns])
                done += added
                taken += added
        return taken

    @contextlib.contextmanager
    def frame_buffer(self, **values: float) -> Iterator[np.ndarray]:
        """The next frame's slot itself, writable (``frame_shape``, ``dtype``), to be filled in
        place, e.g. ``sock.recv_into(buf)``: no copy. The frame counts once the block is left;
        an exception inside counts the slot as dropped (and propagates). Slots are handed out
        and committed in order: a slot still open holds back the chunks after it from the
        writer, not other puts. With ``on_full="drop"`` and no room, a scratch array is lent and
        the slot counted as dropped."""
        self._session.raise_if_unusable()
        reserved, filled = None, False
        try:
            with self._lock, held_interrupts:  # a Ctrl-C held here raises after the reserve
                columns = self._value_columns(values)
                self._check_open()
                if self.assembler.current is None:
                    fresh = self._free_buffer()
                    if fresh is None:
                        self.assembler.drop()
                    else:
                        self.assembler.begin_chunk(fresh)
                if self.assembler.current is not None:
                    reserved = self.assembler.reserve()
            if reserved is None:  # dropped: a scratch array
                yield np.empty(self.spec.shape, self.spec.dtype)
                return
            buffer, position = reserved
            yield buffer.array[position, ...]
            filled = True
        finally:
            with held_interrupts:  # first: a Ctrl-C here must not skip the commit
                if reserved is not None:
                    self.assembler.commit(*reserved, now(), columns, filled)

    def put_compressed(self, blob: Any, **values: float) -> bool:
        """A frame already in the stream's codec format (bslz4: the 12-byte header of HDF5
        filter 32008 and the LZ4 blocks, as Dectris detectors send it), stored without
        recompressing: as its own chunk (``chunk_frames=1``), or gathered with the next frames
        into the stream's multi-frame chunks when its bytes are whole blocks, the frames of a
        chunk in blocks of one size (otherwise ValueError naming ``chunk_frames=1``). The header
        and block lengths are checked (ValueError) before anything is taken; the body is not
        decoded. Returns False if it was dropped (``on_full="drop"``)."""
        return self.put_compressed_many((blob,), **values) == 1

    def put_compressed_many(self, blobs: Sequence[Any], **values: Any) -> int:
        """Several frames for ``put_compressed`` in one call; ``values``: a sequence of one value
        per frame (or one number for all) per name. Every frame is checked before any is taken.
        Returns how many were taken (fewer when ``on_full="drop"`` dropped some)."""
        self._session.raise_if_unusable()
        if self._compressed_refusal:
            raise ValueError(self._compressed_refusal)
        nbytes, itemsize = self.spec.nbytes, self.spec.dtype.itemsize
        gathered = self.geometry.k > 1
        payloads = [self.encoder.check_encoded(b, nbytes, itemsize, gathered) for b in blobs]
        n = len(payloads)
        if not n:
            return 0
        rows = empty_rows(n)
        rows[:, 0] = now()
        with self._lock, held_interrupts:
            for column, v in self.columns.block_columns(values, n) if values or \
                    self.columns.names is None or self.columns.required else ():
                rows[:, column] = v
            self._check_open(n)
            if self.geometry.k == 1:
                return sum(self._take_chunk(p, rows[i:i + 1])
                           for i, p in enumerate(payloads))
            return self._take_gathered(payloads, rows)

    def _take_chunk(self, payload, rows) -> bool:
        """Under the lock: one frame as its own chunk."""
        if not self._room_for_encoded():
            self.assembler.drop()
            return False
        slot = self.assembler.slots
        self._hand(EncodedChunk(self.geometry.locate(slot)[0], payload, rows, slot, slot + 1))
        return True

    def _take_gathered(self, payloads: list, rows: np.ndarray) -> int:
        """Under the lock: frames into the chunks being gathered (``gather``); how many taken."""
        assembler, done, taken = self.assembler, 0, 0
        g = assembler.gather = Gather.for_frames(payloads, assembler.gather, self.geometry.k,
                                                 self.spec.shape, self.spec.dtype, self.fillvalue)
        while done < len(payloads):
            if not g.open:
                if not self._room_for_encoded():
                    assembler.drop()
                    done += 1
                    continue
                assembler.begin_gather()
            m = min(len(payloads) - done, g.end_slot - assembler.slots)
            full = assembler.add_gathered(payloads[done:done + m], rows[done:done + m])
            done += m
            taken += m
            if full:
                self._hand(EncodedChunk(g.chunk_id, g.payload(), g.values, g.first_slot,
                                        g.end_slot), copy=True)
        return taken

    def _hand(self, chunk: EncodedChunk, copy: bool = False) -> None:
        """A complete in-order encoded chunk: written now from this thread if the writer thread
        is idle (see ``emdstream.write``), else queued (``copy``: its buffers are reused)."""
        if self._session.write_now(self.index, chunk):
            return
        if copy:
            chunk.payload, chunk.values = bytes(chunk.payload), chunk.values.copy()
        self.assembler.add_encoded(chunk)

    def put_encoded_chunk(self, chunk_id: int, payload, values: Optional[np.ndarray] = None
                          ) -> None:
        """Hand over a whole chunk already encoded with this stream's encoder (``self.encoder``),
        in any order (``write_dask``): it is written as it is. ``values``: its rows of per-frame
        values (``values.empty_rows(k)`` filled in; default: the timestamp now). The file counts
        the frames of the chunks below which every chunk is written."""
        self._session.raise_if_unusable()
        first, end = self.geometry.chunk_slots(chunk_id)
        rows = empty_rows(self.geometry.k) if values is None else np.asarray(values, np.float64)
        if values is None:
            rows[: end - first, 0] = now()
        if rows.shape != (self.geometry.k, MAX_VALUES):
            raise ValueError(f"values must have shape ({self.geometry.k}, {MAX_VALUES})")
        with self._lock, held_interrupts:
            if self.closed:
                raise WriterClosedError(f"writer for {self._session.path} is closed")
            while not self.assembler.encoded_room.take(timeout=_POLL):  # never dropped
                held_interrupts.raise_if_caught()
                self._session.raise_if_unusable()
            self.assembler.add_encoded(EncodedChunk(chunk_id, payload, rows, first, end,
                                                    in_order=False))

    def _room_for_encoded(self) -> bool:
        """A place in the queue for an encoded frame, following ``on_full`` (False: drop it); a
        Ctrl-C while it waits raises, nothing taken."""
        self.assembler.check_not_filling()  # before a place is taken
        room = self.assembler.encoded_room
        if self._session.on_full in ("raise", "drop"):
            if room.take(timeout=0):
                return True
            if self._session.on_full == "raise":
                raise QueueFullError(f"queue of {self.queue_size} frames{self._where()} is full "
                                     f"(writer behind); frame not accepted")
            return False
        while not room.take(timeout=_POLL):
            held_interrupts.raise_if_caught()
            self._session.raise_if_unusable()
        return True

    @property
    def n_chunks(self) -> int:
        """How many chunks the stream's data has (pre-allocated streams)."""
        g = self.geometry
        if g.capacity is None:
            raise ValueError("an open-ended stream has no fixed number of chunks")
        return g.locate(g.capacity - 1)[0] + 1

    def _value_columns(self, values: dict) -> list:
        """(column, value) pairs of one frame's values (under the lock: the first put fixes the
        names); nothing to do in the common case of no values after the first put."""
        cols = self.columns
        return cols.columns(values) if values or cols.names is None or cols.required else []

    def _check_open(self, n: int = 1) -> None:
        """Under the lock: the stream takes ``n`` more frames."""
        if self.closed:
            raise WriterClosedError(f"writer for {self._session.path} is closed")
        capacity = self.geometry.capacity
        if capacity is not None and self.assembler.slots + n > capacity:
            left = capacity - self.assembler.slots
            raise WriterFullError(f"all {capacity} pre-allocated frames of {self._session.path}"
                                  f"{self._where()} have been put" if not left else
                                  f"{n} frames do not fit: {left} of the {capacity} pre-allocated "
                                  f"frames of {self._session.path}{self._where()} are left")

    def _free_buffer(self):
        """A chunk buffer for the next chunk, following ``on_full`` when the writer is behind."""
        self.assembler.check_not_gathering()  # before a buffer is taken
        on_full = self._session.on_full
        if on_full in ("raise", "drop"):
            buffer = self.assembler.acquire(timeout=0)
            if buffer is None and on_full == "raise":
                raise QueueFullError(f"queue of {self.queue_size} frames{self._where()} is full "
                                     f"(writer behind); frame not accepted")
            return buffer
        while True:
            buffer = self.assembler.acquire(timeout=_POLL)
            if buffer is not None:
                return buffer
            held_interrupts.raise_if_caught()  # nothing of this wait taken (earlier frames of
            # the same put_many are: the caller gets the KeyboardInterrupt, not their count)
            self._session.raise_if_unusable()

    def finish(self) -> int:
        """No more frames (the acquisition's close): waits for a put in progress, hands over the
        partly filled chunk; returns the slots used. Idempotent."""
        with self._lock:
            if not self.closed:
                self.closed = True
                self.assembler.finish()
            return self.assembler.slots

    def _where(self) -> str:
        return self._session.where(self.name)

    # --- state -------------------------------------------------------------------------------
    @property
    def frames_put(self) -> int:
        """Frames accepted by ``put`` so far (dropped ones not counted)."""
        return self.assembler.slots - self.frames_dropped

    @property
    def frames_dropped(self) -> int:
        """Frames refused by ``put`` with ``on_full="drop"``; their slots hold the fill value."""
        return len(self.assembler.dropped)

    @property
    def frames_written(self) -> int:
        """Frames durably in the file (after close: all frames put)."""
        return self._session.frames_written(self.index)

    @property
    def queue_high_water(self) -> int:
        """Most frames ever waiting for (or in) compression and writing at once."""
        return self.assembler.buffers_high_water * self.geometry.k

    @property
    def queue_size(self) -> int:
        """Frames the queue holds at most (whole chunk buffers)."""
        return self.assembler.n_buffers * self.geometry.k

    def __repr__(self) -> str:
        return (f"<StreamWriter {self.name!r}: {self.frames_put} put, {self.frames_written} "
                f"written, {self.frames_dropped} dropped>")


def _default_fill(dtype: np.dtype):
    if dtype.kind == "f":
        return np.nan
    if dtype.kind in "iu":
        return np.iinfo(dtype).max
    return False
