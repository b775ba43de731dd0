"""EMDWriter: an acquisition of one stream, with that stream's methods on the writer itself."""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from emdstream.format.dims import Dim
from emdstream.write.acquisition import Acquisition
from emdstream.write.stream import Stream


class EMDWriter(Acquisition):
    """Stream frames into an EMD v0.2 file from a writer thread.

    Frames are put one at a time; each is checked and copied at once, so ``put`` returns without
    waiting for disk I/O while the queue has room. ``put`` is safe from several threads: frames
    land in the order the ``put`` calls acquire the writer's lock.

    Args:
        path: the ``.emd`` file to create.
        frame_shape, dtype: of every frame.
        n_frames: pre-allocate this many frames; None (default) grows as frames come.
        scan_shape: data shape is ``scan_shape + frame_shape``; frames fill it in C order.
        compression: "bslz4" (default), "zstd", "blosc-lz4", "gzip", None, or an encoder object
            (e.g. ``emdstream.encoders.Zstd(level=9)``).
        dims: one ``Dim`` per data axis; default index vectors (``[px]`` for frame axes).
            ``Dim("tilt", "[deg]", from_values="tilt")`` on axis 0 of a stack takes the value
            ``tilt`` put with each frame.
        name: the group ``/data/<name>``.
        microscope, user, sample: metadata (numbers, str, bool, numeric arrays).
        chunk_frames: frames per chunk (default: about 2 MiB per chunk).
        queue_frames: frames that may wait for compression and writing (default: about 64 MiB
            of frames), rounded up to whole chunks, at least 2; this bounds the memory used.
        on_full: what ``put`` does when the queue is full: "block" (default), "raise"
            (QueueFullError, frame not taken) or "drop" (frame counted in ``frames_dropped``,
            its slot keeps the fill value and is listed in the file).
        flush_seconds, flush_frames: make written frames durable (and counted in the file) at
            least this often; default every 1 s.
        fsync: fsync every flush (see ``Acquisition``).
        part, block_frames: write one part of a scan split between several writers
            (see ``Acquisition``).
        workers: compression threads (default: one per core).
        fillvalue: value of slots without a frame (default: dtype max for ints, NaN for floats).
        overwrite: replace an existing file (default: refuse).
    """

    def __init__(self, path: str | os.PathLike, frame_shape: Sequence[int], dtype: Any = "uint16",
                 n_frames: Optional[int] = None, scan_shape: Optional[Sequence[int]] = None,
                 compression: Any = "bslz4", dims: Optional[Sequence[Dim]] = None,
                 name: str = "dataset_1", microscope: Optional[Mapping[str, Any]] = None,
                 user: Optional[Mapping[str, Any]] = None, sample: Optional[Mapping[str, Any]] = None,
                 chunk_frames: Optional[int] = None, queue_frames: Optional[int] = None,
                 on_full: str = "block", flush_seconds: Optional[float] = 1.0,
                 flush_frames: Optional[int] = None, workers: Optional[int] = None,
                 fillvalue: Any = None, fsync: bool = False,
                 part: Optional[Sequence[int]] = None, block_frames: Optional[int] = None,
                 overwrite: bool = False):
        if scan_shape is not None and n_frames is not None:
            from emdstream.format.chunk_grid import ChunkGeometry  # the scan's own check names both
            ChunkGeometry(tuple(frame_shape), 1, n_frames, tuple(scan_shape))
        stream = Stream(name, frame_shape, dtype, compression, dims,
                        n_frames=n_frames if scan_shape is None else None,
                        open_ended=scan_shape is None and n_frames is None,
                        chunk_frames=chunk_frames, queue_frames=queue_frames, fillvalue=fillvalue)
        super().__init__(path, [stream], scan_shape, microscope, user, sample, on_full,
                         flush_seconds, flush_frames, workers, fsync, part, block_frames, overwrite)
        self._stream = self.streams[name]

    def put(self, frame: Any, **values: float) -> bool:
        """Copy one frame (and its per-frame values) into the stream. Returns False if it was
        dropped (``on_full="drop"``)."""
        return self._stream.put(frame, **values)

    def put_many(self, frames: Any, **values: Any) -> int:
        """A block of frames ``(n, *frame_shape)`` in one call (see ``StreamWriter.put_many``)."""
        return self._stream.put_many(frames, **values)

    def frame_buffer(self, **values: float):
        """The next frame's slot, filled in place (see ``StreamWriter.frame_buffer``)."""
        return self._stream.frame_buffer(**values)

    def put_compressed(self, blob: Any, **values: float) -> bool:
        """A frame already bslz4-compressed, written as it is (see ``StreamWriter.put_compressed``)."""
        return self._stream.put_compressed(blob, **values)

    def put_compressed_many(self, blobs: Sequence[Any], **values: Any) -> int:
        """Several compressed frames in one call (see ``StreamWriter.put_compressed_many``)."""
        return self._stream.put_compressed_many(blobs, **values)

    # --- the stream's state ----------------------------------------------------------------------
    name = property(lambda self: self._stream.name)
    spec = property(lambda self: self._stream.spec)
    geometry = property(lambda self: self._stream.geometry)
    dims = property(lambda self: self._stream.dims)
    fillvalue = property(lambda self: self._stream.fillvalue)
    compression = property(lambda self: self._stream.compression)
    frames_put = property(lambda self: self._stream.frames_put,
                          doc="Frames accepted by ``put`` so far (dropped ones not counted).")
    frames_dropped = property(lambda self: self._stream.frames_dropped,
                              doc="Frames refused by ``put`` with ``on_full='drop'``.")
    frames_written = property(lambda self: self._stream.frames_written,
                              doc="Frames durably in the file (after close: all frames put).")
    queue_high_water = property(lambda self: self._stream.queue_high_water,
                                doc="Most frames ever waiting for compression and writing at once.")
    queue_size = property(lambda self: self._stream.queue_size,
                          doc="Frames the queue holds at most (whole chunk buffers).")

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return (f"<EMDWriter {self.path!r} {state}: {self.frames_put} put, "
                f"{self.frames_written} written, {self.frames_dropped} dropped>")
