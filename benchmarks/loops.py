"""The loops a detector engineer writes by hand (issue 17), to hold emdstream against.

* ``hand``: raw frames. Copy each frame into one ``(k, h, w)`` chunk buffer; when it is full,
  compress the whole chunk with one call whose OpenMP team uses every core
  (``bitshuffle.compress_lz4(buf.reshape(-1), block)``; without the bitshuffle package, emdstream's
  own ``BitshuffleLZ4.encode``, one core), prepend the 12-byte header, ``write_direct_chunk``; all
  in the producer's thread; timed to ``File.close()``.
  Its block size is bitshuffle's default (8 KiB), what such a loop passes; ``hand_stream_blocks``
  is the same loop in the block size the stream uses (16 KiB for frames of whole 16 KiB blocks).
* ``bare``: detector-compressed frames. ``dset.id.write_direct_chunk((i, 0, 0), blob)`` per frame
  into a ``chunks=(1, h, w)`` bslz4 dataset; timed to ``File.close()``.

Floors: the least any writer pays that checks each detector frame's block lengths (the check
``put_compressed`` makes: a malformed frame would spoil a whole gathered chunk) and records each
chunk's CRC-32 (the chunk log that ``recover`` relies on; computed as the chunk log computes it).
Not emdstream: loops, to show what bounds a target.

* ``bare_checked``: the bare loop, each frame checked (``BitshuffleLZ4.check_encoded``) and its
  CRC-32 taken before its write.
* ``gathered``: the bare loop's file with the stream's multi-frame chunks; each frame checked,
  its body copied into a chunk buffer under one header; each full chunk's CRC-32, then its write.
* ``hand_crc``: the hand loop in the stream's block size, each chunk's CRC-32 taken before its
  write.
"""
from __future__ import annotations

import struct
import time

import numpy as np
from harness import cpu_seconds, distinct_chunks, peak_since_start, start_timing
from harness.ceilings import stream_encoder

from emdstream.safety.chunklog import crc32  # the CRC-32 the chunk log takes (ISA-L's or zlib's)


def _file(path: str, shape: tuple, n: int, k: int):
    import h5py
    import hdf5plugin

    f = h5py.File(path, "w", libver="latest")
    d = f.create_dataset("d", (n,) + shape, "uint16", chunks=(k,) + shape,
                         **hdf5plugin.Bitshuffle(cname="lz4"))
    return f, d


def _closed(f, d, t0: float, cpu0: float, rss0: int) -> dict:
    """Close the file (timed, as emdstream's close is) and the measurement of a loop."""
    stored = d.id.get_storage_size()
    f.close()
    t1 = time.perf_counter()
    return dict(seconds=t1 - t0, cpu=cpu_seconds() - cpu0, rss0=rss0,
                peak_timed=peak_since_start(), stored=int(stored))


def hand(job: dict, bank: np.ndarray, path: str, crc: bool = False,
         stream_blocks: bool = False) -> dict:
    from emdstream.encoders import BitshuffleLZ4
    n, k, shape = job["frames"], job["k"], bank.shape[1:]
    encoder = stream_encoder(job, bank) if stream_blocks else BitshuffleLZ4()
    block = encoder.block_elems(bank.itemsize)
    try:
        import bitshuffle
        compress = lambda buf: bitshuffle.compress_lz4(buf.reshape(-1), block)  # noqa: E731
        header = struct.pack(">QI", k * bank[0].nbytes, block * bank.itemsize)
    except ImportError:
        compress, header = encoder.encode, b""
    f, d = _file(path, shape, n, k)
    buf = np.empty((k,) + shape, bank.dtype)
    b = len(bank)
    rss0, cpu0 = start_timing()
    t0 = time.perf_counter()
    for i in range(n):
        buf[i % k] = bank[i % b]
        if i % k == k - 1:
            blob = header + compress(buf).tobytes()
            if crc:
                crc32(blob)
            d.id.write_direct_chunk((i - k + 1, 0, 0), blob)
    return _closed(f, d, t0, cpu0, rss0)


def hand_crc(job: dict, bank: np.ndarray, path: str) -> dict:
    return hand(job, bank, path, crc=True, stream_blocks=True)


def hand_stream_blocks(job: dict, bank: np.ndarray, path: str) -> dict:
    return hand(job, bank, path, stream_blocks=True)


def bare(job: dict, bank: np.ndarray, path: str, checked: bool = False) -> dict:
    from emdstream.encoders import BitshuffleLZ4
    n, shape = job["frames"], bank.shape[1:]
    encoder = BitshuffleLZ4()
    blobs = [np.asarray(encoder.encode(c)).tobytes() for c in distinct_chunks(bank, 1)]
    f, d = _file(path, shape, n, 1)
    b, nbytes, itemsize = len(blobs), bank[0].nbytes, bank.itemsize
    rss0, cpu0 = start_timing()
    t0 = time.perf_counter()
    for i in range(n):
        blob = blobs[i % b]
        if checked:
            encoder.check_encoded(blob, nbytes, itemsize)
            crc32(blob)
        d.id.write_direct_chunk((i, 0, 0), blob)
    return _closed(f, d, t0, cpu0, rss0)


def bare_checked(job: dict, bank: np.ndarray, path: str) -> dict:
    return bare(job, bank, path, checked=True)


def gathered(job: dict, bank: np.ndarray, path: str) -> dict:
    from emdstream.encoders import BitshuffleLZ4
    n, k, shape = job["frames"], job["k"], bank.shape[1:]
    encoder = BitshuffleLZ4()
    blobs = [np.asarray(encoder.encode(c)).tobytes() for c in distinct_chunks(bank, 1)]
    f, d = _file(path, shape, n, k)
    b, nbytes, itemsize = len(blobs), bank[0].nbytes, bank.itemsize
    out = np.empty(12 + k * encoder.bound(nbytes, itemsize), np.uint8)
    out[:12] = np.frombuffer(encoder.header(k * nbytes, itemsize), np.uint8)
    chunk, at = memoryview(out), 12
    rss0, cpu0 = start_timing()
    t0 = time.perf_counter()
    for i in range(n):
        body = encoder.check_encoded(blobs[i % b], nbytes, itemsize, True)[12:]
        chunk[at:at + body.nbytes] = body
        at += body.nbytes
        if i % k == k - 1:
            crc32(chunk[:at])
            d.id.write_direct_chunk((i - k + 1, 0, 0), chunk[:at])
            at = 12
    return _closed(f, d, t0, cpu0, rss0)
