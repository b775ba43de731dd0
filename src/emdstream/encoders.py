"""Chunk encoders: compress a whole chunk outside HDF5 into exactly the bytes its HDF5 filter decodes.

Each encoder pairs the dataset-creation keywords (the stock HDF5 / hdf5plugin filter a reader will
use) with an ``encode`` that produces a chunk for ``Dataset.id.write_direct_chunk``. Encoders run in a
thread pool, so each uses a library that releases the GIL while compressing:

* ``bslz4``: the ``bitshuffle`` package (the reference implementation of HDF5 filter 32008), framed
  with the 12-byte header the filter expects (big-endian uncompressed size, block size in bytes).
* ``zstd``: ``numcodecs.Zstd`` (libzstd) -> a plain zstd frame, what filter 32015 decodes.
* ``blosc-lz4``: ``numcodecs.Blosc`` (c-blosc 1.x, the library HDF5 filter 32001 is built on; the
  ``blosc2`` package writes a newer chunk format that filter 32001 refuses).
* ``gzip``: HDF5's built-in byte-shuffle (done with NumPy) then deflate via ``zlib``.
* ``None``: the raw bytes of the chunk.
"""
from __future__ import annotations

import functools
import glob
import os
import struct
import threading
import zlib
from typing import Any, Optional

import hdf5plugin
import numpy as np


class ChunkEncoder:
    """Base: no filter; the chunk's raw bytes. Each subclass names itself (``name``, what
    ``compression=`` takes) and the HDF5 filter that decodes its chunks (``filter_id``); the
    registry of names (``COMPRESSIONS``) is built from the subclasses."""

    name: Optional[str] = None
    filter_id: Optional[int] = None  # HDF5 filter id (None: no filter)
    label: str = "none"              # how ``info`` names the filter

    def dataset_options(self) -> dict[str, Any]:
        """Keywords for ``h5py.Group.create_dataset`` that declare the matching HDF5 filter."""
        return {}

    def encode(self, chunk: np.ndarray):
        """The bytes of ``chunk`` as stored on disk (any buffer ``write_direct_chunk`` takes)."""
        return np.ascontiguousarray(chunk).data

    def check_encoded(self, blob: Any, nbytes: int, itemsize: int):
        """``blob`` as a buffer to store as it is, if it can be this codec's encoding of a frame of
        ``nbytes`` bytes (the cheap checks; the body is not decoded); ValueError otherwise."""
        raise ValueError(f"compression {self.name!r} does not take frames compressed elsewhere; "
                         f"put_compressed takes bslz4 (HDF5 filter 32008) frames")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


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


class Zstd(ChunkEncoder):
    name, filter_id, label = "zstd", 32015, "zstd"

    def __init__(self, level: int = 3):
        from numcodecs import Zstd as _Zstd

        self.level = level
        self._codec = _Zstd(level=level)

    def dataset_options(self) -> dict[str, Any]:
        return dict(hdf5plugin.Zstd(clevel=self.level))

    def encode(self, chunk: np.ndarray) -> bytes:
        return self._codec.encode(np.ascontiguousarray(chunk))


class BloscLZ4(ChunkEncoder):
    name, filter_id, label = "blosc-lz4", 32001, "blosc"

    def __init__(self, level: int = 5):
        from numcodecs import Blosc

        self.level = level
        self._codec = Blosc(cname="lz4", clevel=level, shuffle=Blosc.SHUFFLE, blocksize=0)

    def dataset_options(self) -> dict[str, Any]:
        return dict(hdf5plugin.Blosc(cname="lz4", clevel=self.level,
                                     shuffle=hdf5plugin.Blosc.SHUFFLE))

    def encode(self, chunk: np.ndarray) -> bytes:
        return self._codec.encode(np.ascontiguousarray(chunk))


class GzipShuffle(ChunkEncoder):
    name, filter_id, label = "gzip", 1, "gzip"

    def __init__(self, level: int = 4):
        self.level = level

    def dataset_options(self) -> dict[str, Any]:
        return dict(compression="gzip", compression_opts=self.level, shuffle=True)

    def encode(self, chunk: np.ndarray) -> bytes:
        flat = np.ascontiguousarray(chunk).reshape(-1)
        # HDF5 shuffle filter: all first bytes of each element, then all second bytes, ...
        shuffled = flat.view(np.uint8).reshape(-1, flat.itemsize).T.copy()
        return zlib.compress(shuffled.data, self.level)


_ENCODERS: dict[Optional[str], type[ChunkEncoder]] = {
    cls.name: cls for cls in (ChunkEncoder, *ChunkEncoder.__subclasses__())}
COMPRESSIONS = tuple(name for name in _ENCODERS if name) + (None,)
_LABELS = {2: "shuffle", 32026: "blosc2", 32000: "lzf", 3: "fletcher32",
           **{cls.filter_id: cls.label for cls in _ENCODERS.values() if cls.filter_id}}


def get_encoder(compression) -> ChunkEncoder:
    """The encoder for ``compression``: a name in ``COMPRESSIONS`` ("none" = None) or an encoder
    object (e.g. ``Zstd(level=9)``), returned as it is. ValueError for anything else."""
    if isinstance(compression, ChunkEncoder):
        return compression
    if compression == "none":
        compression = None
    try:
        return _ENCODERS[compression]()
    except (KeyError, TypeError):
        raise ValueError(f"compression must be one of {COMPRESSIONS} ('none' = None) or an "
                         f"encoder object such as emdstream.encoders.Zstd(level=9), "
                         f"got {compression!r}") from None


def describe_filters(dataset) -> str:
    """Human-readable name of the filters of an h5py dataset, e.g. ``bitshuffle+lz4``."""
    plist = dataset.id.get_create_plist()
    found = [_LABELS.get(plist.get_filter(i)[0], str(plist.get_filter(i)[0]))
             for i in range(plist.get_nfilters())]
    return "+".join(found) if found else "none"
