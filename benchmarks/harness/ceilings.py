"""Compress-only ceilings: the same chunks compressed with no I/O, no copy, no hand-off.

Issue 17's ceiling is the best of two ways, each measured in the same run as what it bounds:

* ``compress_own_threads``: one thread compressing whole chunks, the library using every core
  itself: bslz4 through ``bitshuffle.compress_lz4`` (its OpenMP team; needs the bitshuffle
  package), blosc-lz4 with c-blosc's threads (``numcodecs.blosc.set_nthreads``); zstd and gzip
  have no threads of their own (one core).
* ``compress_threads``: one plain thread per core, each compressing every n-th chunk with
  emdstream's own encoder (bslz4: ``bshuf_compress_lz4`` through ctypes into a reused buffer).

Both compress the chunks as a stream of these frames does (``ChunkEncoder.for_frames``: bslz4 in
16 KiB blocks where the frames are whole ones, e.g. 256x256 uint16).

``threads_written`` is a floor, not a ceiling: ``compress_threads`` with each chunk's CRC-32
taken and the chunk written (``write_direct_chunk``, h5py serializing the writes) into a file, as
a writer that keeps a chunk log must, and for codecs other than bslz4 each chunk's frames copied
first (``put`` returns before their chunk is compressed; a bslz4 frame can be compressed where it
lies, so no copy there); no hand-off. A target above it is out of reach.

``compress_pool`` is the older ``ThreadPoolExecutor`` ceiling (a hand-off per chunk: it understates
the real one on a VM where a thread wake-up costs ~50-100 µs), kept for ``bench_write``.
"""
from __future__ import annotations

import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .frames import distinct_chunks
from .measure import cpu_seconds, peak_since_start, start_timing


def stream_encoder(job: dict, bank: np.ndarray):
    """The encoder a stream of ``bank``'s frames uses for ``job["compression"]``."""
    from emdstream.encoders import get_encoder
    return get_encoder(job["compression"]).for_frames(bank[0].nbytes, bank.itemsize)


def _sequence(job: dict, bank: np.ndarray) -> list[np.ndarray]:
    k = job["k"]
    chunks = [np.ascontiguousarray(c) for c in distinct_chunks(bank, k)]
    return [chunks[j % len(chunks)] for j in range(math.ceil(job["frames"] / k))]


def _timed(run) -> dict:
    rss0, cpu0 = start_timing()
    t0 = time.perf_counter()
    stored = run()
    t1 = time.perf_counter()
    cpu1, peak = cpu_seconds(), peak_since_start()
    return dict(seconds=t1 - t0, cpu=cpu1 - cpu0, rss0=rss0, peak_timed=peak, stored=stored)


def compress_threads(job: dict, bank: np.ndarray, path: str, write: bool = False) -> dict:
    """One plain thread per core (``job["threads"]``), no hand-off: thread i takes chunks i,
    i + n, ...; with ``write``, each chunk's CRC-32 taken and the chunk written into ``path``."""
    from emdstream.encoders import BitshuffleLZ4
    encoder = stream_encoder(job, bank)
    seq = _sequence(job, bank)
    n = job.get("threads") or os.cpu_count() or 1
    sizes = [0] * n
    store = _chunk_writer(job, bank, path, encoder) if write else None
    if isinstance(encoder, BitshuffleLZ4):
        outs = [np.empty(12 + encoder.bound(seq[0].nbytes, seq[0].itemsize), np.uint8)
                for _ in range(n)]
        header = encoder.header(seq[0].nbytes, seq[0].itemsize)
        for out in outs:
            out[:12] = np.frombuffer(header, np.uint8)

        def one(i):
            for j in range(i, len(seq), n):
                size = 12 + encoder.compress_into(seq[j], outs[i], 12)
                sizes[i] += size
                if store:
                    store(j, memoryview(outs[i])[:size])
    else:  # a writer must copy the frames first (put returns before the chunk is compressed)
        bufs = [np.empty_like(seq[0]) for _ in range(n)] if store else None

        def one(i):
            for j in range(i, len(seq), n):
                chunk = seq[j]
                if store:
                    np.copyto(bufs[i], chunk)
                    chunk = bufs[i]
                payload = encoder.encode(chunk)
                sizes[i] += memoryview(payload).nbytes
                if store:
                    store(j, payload)
    for i in range(n):  # warm up: library loaded, output buffers touched
        one_chunk = seq[i % len(seq)]
        encoder.encode(one_chunk)

    errors: list[BaseException] = []

    def guarded(i):  # a thread's exception reaches the measurement (a failed write is not fast)
        try:
            one(i)
        except BaseException as exc:
            errors.append(exc)

    def run():
        threads = [threading.Thread(target=guarded, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        if store:
            store.close()
        return sum(sizes)
    return dict(_timed(run), threads=n)


def threads_written(job: dict, bank: np.ndarray, path: str) -> dict:
    return compress_threads(job, bank, path, write=True)


def _chunk_writer(job: dict, bank: np.ndarray, path: str, encoder):
    """store(j, payload): CRC-32 of chunk j, then its direct write; store.close() closes the file."""
    import h5py

    from emdstream.safety.chunklog import crc32  # as the chunk log takes it
    k, shape = job["k"], bank.shape[1:]
    f = h5py.File(path, "w", libver="latest")
    d = f.create_dataset("d", (math.ceil(job["frames"] / k) * k,) + shape, bank.dtype,
                         chunks=(k,) + shape, **encoder.dataset_options())

    def store(j: int, payload) -> None:
        crc32(payload)
        d.id.write_direct_chunk((j * k,) + (0,) * len(shape), payload)
    store.close = f.close
    return store


def compress_own_threads(job: dict, bank: np.ndarray, path: str) -> dict:
    """One thread, whole chunks, the library's own threads on every core (None-like result with
    ``skipped`` when the library has none here: bslz4 without the bitshuffle package)."""
    seq = _sequence(job, bank)
    comp = job["compression"]
    if comp == "bslz4":
        try:
            import bitshuffle
        except ImportError:
            return dict(seconds=float("inf"), cpu=0.0, rss0=0, peak_timed=0, stored=0,
                        skipped="bitshuffle not installed")
        block = stream_encoder(job, bank).block_elems(seq[0].itemsize)

        def encode(c):
            return 12 + bitshuffle.compress_lz4(c.reshape(-1), block).nbytes
    else:
        from emdstream.encoders import get_encoder
        encoder = get_encoder(comp)
        if comp == "blosc-lz4":
            from numcodecs import blosc
            blosc.set_nthreads(os.cpu_count() or 1)
            blosc.use_threads = True

        def encode(c):
            return memoryview(encoder.encode(c)).nbytes
    encode(seq[0])
    return _timed(lambda: sum(encode(c) for c in seq))


def compress_pool(job: dict, bank: np.ndarray, path: str) -> dict:
    """The encoder on the chunks through a ``ThreadPoolExecutor`` of ``os.cpu_count()`` threads."""
    threads = job.get("threads") or os.cpu_count() or 1
    encoder = stream_encoder(job, bank)
    seq = _sequence(job, bank)

    def encode(chunk):
        return memoryview(encoder.encode(chunk)).nbytes

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(encode, seq[:threads]))  # warm up the threads and the codec
        result = _timed(lambda: sum(pool.map(encode, seq)))
    return dict(result, threads=threads)
