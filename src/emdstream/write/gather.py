"""Detector-compressed bslz4 frames gathered into multi-frame chunks without recompressing.

A bslz4 frame is a 12-byte header and a body of (4-byte length, LZ4 block) per block (bitshuffle's
default: 8 KiB). When a frame's bytes are a whole number of blocks, the bodies of k frames, one
after the other under one new header (k frames' bytes, the same block size), are the body of the
k-frame chunk: each frame's body is copied into the chunk's reusable output buffer, and slots
without a frame (dropped, or past the end of a scan row) get the body of a frame of fill value,
compressed once. The block size is the detector's, one per chunk (``for_frames``), which may
differ from the one the stream compresses raw frames with (a chunk's own header names its block
size). Thread safety: used by one producer at a time, under its stream's lock; what a flush's
snapshot reads (``frames``) changes only under the assembler's lock.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from emdstream.encoders import BitshuffleLZ4
from emdstream.encoders.bslz4 import block_bytes_of
from emdstream.format.values import empty_rows


class Gather:
    """The chunk being gathered: bodies copied in slot order, with their value rows."""

    def __init__(self, encoder: BitshuffleLZ4, k: int, frame_shape: tuple, dtype: np.dtype,
                 fillvalue):
        self.encoder, self.k = encoder, k
        self.frame_shape, self.dtype = tuple(frame_shape), np.dtype(dtype)
        frame_bytes = int(np.prod(self.frame_shape, dtype=np.int64)) * self.dtype.itemsize
        self.header = encoder.header(k * frame_bytes, self.dtype.itemsize)
        self.out = np.empty(12 + k * encoder.bound(frame_bytes, self.dtype.itemsize), np.uint8)
        self.out[:12] = np.frombuffer(self.header, np.uint8)
        self._view = memoryview(self.out)
        fill = np.full(self.frame_shape, fillvalue, self.dtype)
        self.fill_body = np.asarray(encoder.encode(fill))[12:].copy()
        self.values = empty_rows(k)
        self.chunk_id = -1
        self.first_slot = self.end_slot = 0
        self.count = 0          # positions taken (frames and gaps)
        self.cursor = 12

    @staticmethod
    def for_frames(payloads: list, gather: Optional[Gather], k: int, frame_shape: tuple,
                   dtype: np.dtype, fillvalue) -> Gather:
        """The gather for checked frames ``payloads`` (at least one): the stream's ``gather`` if
        it is in their block size, a new one if no chunk is being gathered; ValueError (nothing
        taken) for frames of several block sizes in one call, or of another block size than the
        chunk being gathered: a chunk's one header names one block size."""
        block = block_bytes_of(payloads[0])
        for payload in payloads:
            if block_bytes_of(payload) != block:
                raise ValueError(f"bslz4 frames compressed in blocks of {block} and "
                                 f"{block_bytes_of(payload)} bytes in one call: a gathered chunk "
                                 f"has one block size; put them in separate calls, or create the "
                                 f"stream with chunk_frames=1 (each frame its own chunk)")
        if gather is not None and gather.encoder.block_bytes == block:
            return gather
        if gather is not None and gather.open:
            raise ValueError(f"bslz4 frame compressed in blocks of {block} bytes; the chunk being "
                             f"gathered holds frames of {gather.encoder.block_bytes}-byte blocks "
                             f"(one header, one block size): compress every frame in one block "
                             f"size, or create the stream with chunk_frames=1 (each frame its own "
                             f"chunk)")
        return Gather(BitshuffleLZ4(block), k, frame_shape, dtype, fillvalue)

    @staticmethod
    def refusal(encoder) -> str:
        """Why frames of this stream cannot be gathered ("" if they can; each frame's blocks are
        checked as it comes: ``BitshuffleLZ4.check_encoded``)."""
        if type(encoder) is not BitshuffleLZ4:
            return (f"put_compressed takes bslz4 frames (HDF5 filter 32008); this stream's "
                    f"compression is {encoder.name!r}")
        return ""

    @property
    def open(self) -> bool:
        return self.count > 0

    def start(self, chunk_id: int, first_slot: int, end_slot: int) -> None:
        self.chunk_id, self.first_slot, self.end_slot = chunk_id, first_slot, end_slot
        self.count, self.cursor = 0, 12
        self.values.fill(np.nan)

    def add(self, position: int, blobs: list[memoryview], rows: np.ndarray) -> None:
        """Checked frames (header and body, as bytes) from ``position`` on, with their value
        rows; gaps before them get fill."""
        self._fill_to(position)
        view, at = self._view, self.cursor
        for blob in blobs:
            end = at + blob.nbytes - 12
            view[at:end] = blob[12:]
            at = end
        self.cursor = at
        self.values[position:position + len(blobs)] = rows
        self.count = position + len(blobs)

    def fill_rest(self) -> None:
        """The chunk's last slot is taken: positions past its end (a short chunk) get fill, so
        that ``payload`` changes nothing (the caller holds the assembler's lock, as ``frames``
        does)."""
        self._fill_to(self.k)

    def payload(self) -> memoryview:
        """The whole chunk, positions not taken filled in."""
        self._fill_to(self.k)
        return memoryview(self.out)[:self.cursor]

    def _fill_to(self, position: int) -> None:
        body = self.fill_body
        while self.count < position:
            self.out[self.cursor:self.cursor + body.nbytes] = body
            self.cursor += body.nbytes
            self.count += 1

    def frames(self) -> np.ndarray:
        """The chunk's frames so far, decoded, fill value elsewhere (a flush's partial chunk);
        leaves the chunk as it was."""
        count, cursor = self.count, self.cursor
        payload = bytes(self.payload())
        self.count, self.cursor = count, cursor
        frames = np.empty((self.k,) + self.frame_shape, self.dtype)
        self.encoder.decode_into(payload, frames)
        return frames
