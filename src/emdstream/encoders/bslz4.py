"""bslz4: bitshuffle + LZ4, HDF5 filter 32008, framed with the 12-byte header the filter expects
(big-endian uncompressed size, block size in bytes).

A chunk's body is one (4-byte big-endian length, LZ4 block) per block, so the bodies of
block-aligned pieces, concatenated in order under one header, are the body of the whole: the write
path compresses pieces of a chunk on different threads (``write.packed``) and gathers
detector-compressed frames into multi-frame chunks without recompressing them.

The block size is in each chunk's header, and the filter decodes with the header's (not the
dataset's filter options), so chunks of one dataset may differ (detector frames are gathered in
the detector's block size, ``write.gather``). bitshuffle's default is 8 KiB. A stream of frames
that are whole 16 KiB blocks (256x256, 128x128, 1024x1024 uint16) compresses them in 16 KiB blocks
unless its encoder was given a block size: ~8 % less CPU per byte in a one-thread loop here and
~2 % smaller files; ``put`` of 256x256 frames 3.14 vs 2.77 GB/s (medians of five interleaved runs,
docs/performance.md).
"""
from __future__ import annotations

import copy
import numbers
import struct
from typing import Any, Optional

import hdf5plugin
import numpy as np

from .base import ChunkEncoder
from .bslz4_lib import library

HEADER = struct.Struct(">QI")  # uncompressed bytes, block bytes


class BitshuffleLZ4(ChunkEncoder):
    name, filter_id, label = "bslz4", 32008, "bitshuffle+lz4"
    BLOCK_BYTES = 8192  # bitshuffle's default block: 8 KiB per block of elements
    WIDE_BLOCK_BYTES = 16384  # for frames of whole 16 KiB blocks (``for_frames``)

    def __init__(self, block_bytes: Optional[int] = None):
        """``block_bytes``: the LZ4 block size (a multiple of 8 elements); None: bitshuffle's
        default, or 16 KiB for a stream of frames that are whole 16 KiB blocks."""
        if block_bytes is not None and (not isinstance(block_bytes, numbers.Integral)
                                        or block_bytes < 64 or block_bytes % 64):
            raise ValueError(f"block_bytes must be a positive multiple of 64, got {block_bytes!r}")
        self.chosen = None if block_bytes is None else int(block_bytes)
        self.block_bytes = self.chosen or self.BLOCK_BYTES
        self.declared_elems = 0  # block elements in the filter's options (0: its default)

    def for_frames(self, frame_bytes: int, itemsize: int) -> BitshuffleLZ4:
        """The encoder a stream of such frames uses: this one, in 16 KiB blocks where its frames
        are whole ones and no block size was chosen (a copy: subclasses stay themselves). A
        block size other than the default is declared in the dataset's filter options too: HDF5
        compresses with those where it writes a chunk itself (an edge chunk when a dataset
        shrinks)."""
        wide = self.chosen is None and frame_bytes and frame_bytes % self.WIDE_BLOCK_BYTES == 0
        encoder = copy.copy(self)
        encoder.block_bytes = self.WIDE_BLOCK_BYTES if wide else self.block_bytes
        if encoder.block_bytes != self.BLOCK_BYTES:
            encoder.declared_elems = encoder.block_elems(itemsize)
        return encoder

    def dataset_options(self) -> dict[str, Any]:
        return dict(hdf5plugin.Bitshuffle(nelems=self.declared_elems, cname="lz4"))

    def block_elems(self, itemsize: int) -> int:
        return max(8, (self.block_bytes // itemsize) // 8 * 8)

    def header(self, nbytes: int, itemsize: int) -> bytes:
        """The 12-byte chunk header of ``nbytes`` uncompressed bytes of ``itemsize`` elements."""
        return HEADER.pack(nbytes, self.block_elems(itemsize) * itemsize)

    def bound(self, nbytes: int, itemsize: int) -> int:
        """The most body bytes ``compress_into`` writes for ``nbytes`` bytes."""
        return library().bound(nbytes // itemsize, itemsize, self.block_elems(itemsize))

    def compress_into(self, src: np.ndarray, out: np.ndarray, at: int) -> int:
        """The body (no header) of C-contiguous ``src`` into ``out`` (uint8) from byte ``at``,
        which has room for ``bound(src.nbytes)``; returns its length. Releases the GIL."""
        itemsize = src.itemsize
        return library().compress(src.ctypes.data, out.ctypes.data + at, src.size, itemsize,
                                  self.block_elems(itemsize))

    def encode(self, chunk: np.ndarray) -> np.ndarray:
        chunk = np.ascontiguousarray(chunk)
        return self.encode_into(chunk, np.empty(self.out_bytes(chunk.nbytes, chunk.itemsize),
                                                dtype=np.uint8))

    def out_bytes(self, nbytes: int, itemsize: int) -> int:
        """The room ``encode_into`` needs for ``nbytes`` bytes of ``itemsize`` elements."""
        return 12 + self.bound(nbytes, itemsize)

    def encode_into(self, chunk: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``encode`` into ``out`` (uint8, ``out_bytes`` long, reused by the caller: no new
        memory to fault in): the payload, a view of ``out``."""
        chunk = np.ascontiguousarray(chunk)
        need = self.out_bytes(chunk.nbytes, chunk.itemsize)
        if out.dtype != np.uint8 or out.ndim != 1 or not out.flags.c_contiguous or \
                not out.flags.writeable or out.size < need:
            raise ValueError(f"encode_into needs a writable, contiguous 1-D uint8 buffer of at "
                             f"least {need} bytes, got {out.dtype} {out.shape}")
        out[:12] = np.frombuffer(self.header(chunk.nbytes, chunk.itemsize), np.uint8)
        return out[:12 + self.compress_into(chunk, out, 12)]

    def decode_into(self, payload: Any, out: np.ndarray) -> None:
        """Decompress a whole chunk (header and body) into C-contiguous ``out``, in the block
        size its header names."""
        data = np.frombuffer(payload, np.uint8)
        library().decompress(data.ctypes.data + 12, out.ctypes.data, out.size, out.itemsize,
                             block_bytes_of(data) // out.itemsize)

    def check_encoded(self, blob: Any, nbytes: int, itemsize: int,
                      gathered: bool = False) -> memoryview:
        """The filter-32008 layout: big-endian uncompressed size and block size, then one
        (4-byte big-endian length, LZ4 block) per block of elements, the last block holding a
        multiple of 8 elements, then the leftover (< 8) elements as they are."""
        data = memoryview(blob).cast("B")
        if data.nbytes < 12:
            raise ValueError(f"bslz4 frame of {data.nbytes} bytes: shorter than its 12-byte header")
        size, block = HEADER.unpack_from(data)
        if size != nbytes:
            raise ValueError(f"bslz4 header says {size} bytes uncompressed; a frame has {nbytes}")
        if block == 0 or block % (8 * itemsize):
            raise ValueError(f"bslz4 header block size {block} bytes is not a positive multiple "
                             f"of 8 elements of {itemsize} bytes")
        if gathered and nbytes % block:  # a chunk's frames share its header's block size
            raise ValueError(f"bslz4 frame compressed in blocks of {block} bytes: its "
                             f"{nbytes} bytes are not whole blocks, so it cannot be gathered "
                             f"with other frames into one chunk; create the stream with "
                             f"chunk_frames=1 (each frame its own chunk, any block size)")
        end = _walk_blocks(data, nbytes, itemsize, block)
        if end != data.nbytes:
            raise ValueError(f"bslz4 frame of {data.nbytes} bytes; its blocks need {end}")
        return data

    def __repr__(self) -> str:
        return f"{type(self).__name__}(block_bytes={self.block_bytes})"


def block_bytes_of(blob: memoryview) -> int:
    """The block size a checked bslz4 frame's header names."""
    return HEADER.unpack_from(blob)[1]


_LENGTH = struct.Struct(">I")


def _walk_blocks(data: memoryview, nbytes: int, itemsize: int, block: int) -> int:
    """The byte where a body of ``nbytes`` bytes in blocks of ``block`` bytes ends (ValueError
    if a block is cut short or longer than LZ4 allows). Per frame on the put_compressed path:
    kept to one unpack and one comparison a block."""
    unpack, at = _LENGTH.unpack_from, 12
    full, rest = divmod(nbytes, block)
    worst = block + block // 255 + 16  # LZ4's worst case
    tail = rest - rest % (8 * itemsize)  # the last block: a multiple of 8 elements
    try:
        for _ in range(full):
            length = unpack(data, at)[0]
            if length > worst:
                raise ValueError(f"bslz4 block of {length} bytes for {block} bytes of data")
            at += 4 + length
        if tail:
            length = unpack(data, at)[0]
            if length > tail + tail // 255 + 16:
                raise ValueError(f"bslz4 block of {length} bytes for {tail} bytes of data")
            at += 4 + length
    except struct.error:  # past the end of the frame
        raise ValueError("bslz4 frame cut short: a block header is missing") from None
    return at + rest - tail
