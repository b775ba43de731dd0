"""bslz4: bitshuffle + LZ4, HDF5 filter 32008, framed with the 12-byte header the filter expects
(big-endian uncompressed size, block size in bytes)."""
from __future__ import annotations

import functools
import glob
import os
import struct
import threading
from typing import Any

import hdf5plugin
import numpy as np

from .base import ChunkEncoder


class BitshuffleLZ4(ChunkEncoder):
    name, filter_id, label = "bslz4", 32008, "bitshuffle+lz4"
    BLOCK_BYTES = 8192  # bitshuffle's default block: 8 KiB per block of elements

    def dataset_options(self) -> dict[str, Any]:
        return dict(hdf5plugin.Bitshuffle(cname="lz4"))

    def encode(self, chunk: np.ndarray) -> bytes:
        import bitshuffle

        _one_openmp_thread()
        block_elems = max(8, (self.BLOCK_BYTES // chunk.itemsize) // 8 * 8)
        body = bitshuffle.compress_lz4(np.ascontiguousarray(chunk).reshape(-1), block_elems)
        out = np.empty(12 + body.nbytes, dtype=np.uint8)  # header + body, copied once
        struct.pack_into(">QI", out, 0, chunk.nbytes, block_elems * chunk.itemsize)
        out[12:] = body.view(np.uint8)
        return out


    def check_encoded(self, blob: Any, nbytes: int, itemsize: int) -> memoryview:
        """The filter-32008 layout: big-endian uncompressed size and block size, then one
        (4-byte big-endian length, LZ4 block) per block of elements, the last block holding a
        multiple of 8 elements, then the leftover (< 8) elements as they are."""
        data = memoryview(blob).cast("B")
        if data.nbytes < 12:
            raise ValueError(f"bslz4 frame of {data.nbytes} bytes: shorter than its 12-byte header")
        size, block = struct.unpack(">QI", data[:12])
        if size != nbytes:
            raise ValueError(f"bslz4 header says {size} bytes uncompressed; a frame has {nbytes}")
        if block == 0 or block % (8 * itemsize):
            raise ValueError(f"bslz4 header block size {block} bytes is not a positive multiple "
                             f"of 8 elements of {itemsize} bytes")
        elements, block_elems, at = nbytes // itemsize, block // itemsize, 12
        while elements >= 8:
            this = min(block_elems, elements - elements % 8)
            if at + 4 > data.nbytes:
                raise ValueError("bslz4 frame cut short: a block header is missing")
            length = int.from_bytes(data[at:at + 4], "big")
            if length > this * itemsize + this * itemsize // 255 + 16:  # LZ4's worst case
                raise ValueError(f"bslz4 block of {length} bytes for {this * itemsize} bytes of data")
            at += 4 + length
            elements -= this
        if at + elements * itemsize != data.nbytes:
            raise ValueError(f"bslz4 frame of {data.nbytes} bytes; its blocks need "
                             f"{at + elements * itemsize}")
        return data


_per_thread = threading.local()


def _one_openmp_thread() -> None:
    """bitshuffle runs an OpenMP team (its own bundled libgomp) inside every call. The encoder pool
    is already one thread per core, so that team only competes with the pool and spins while idle
    (0.3-0.5 cores of 2 in benchmarks/bench_limits.py's "other" column). Limit the calling
    thread's team to itself: ``omp_set_num_threads`` is a per-thread setting in libgomp, so the
    rest of the process (and ``OMP_NUM_THREADS``) is left alone."""
    if getattr(_per_thread, "openmp_set", False):
        return
    _per_thread.openmp_set = True
    libgomp = _bitshuffle_libgomp()
    if libgomp is not None:
        libgomp.omp_set_num_threads(1)


@functools.cache
def _bitshuffle_libgomp():
    """The libgomp bitshuffle's wheel bundles (already loaded with it), or None."""
    import ctypes

    import bitshuffle

    found = glob.glob(os.path.join(os.path.dirname(bitshuffle.__file__), os.pardir,
                                   "bitshuffle.libs", "libgomp*.so*"))
    try:
        return ctypes.CDLL(found[0]) if found else None
    except OSError:
        return None
