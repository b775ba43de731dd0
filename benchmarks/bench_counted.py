#!/usr/bin/env python
"""Counted streams (issue #20): write speed and the size of event data per codec, side by side.

    python benchmarks/bench_counted.py              # about 1 min on 2 cores
    python benchmarks/bench_counted.py --quick      # smaller, about 15 s

Events: a 576x576 detector (the NCEM 4D Camera), ~1,000 electrons per frame (Poisson), 70 % in a
bright-field disk of radius 60 px at the centre and the rest spread over the frame, flat indices
``ky * 576 + kx`` sorted within each frame (as a CSR row is), uint32. Generated before timing.

Measured, in one run:

* ``compress-only``: the stream's codec encoding the same index arrays in chunks of the stream's
  ``chunk_events``, one thread, no HDF5, no checks: the bar ``put_csr`` is held to (>= 0.8x).
* ``put_csr``: an open-ended ``CountedStream`` fed 1,000-frame CSR blocks (the events put
  ``--cycles`` times over, default 5: 200 M events), timed from the first put to ``close()``
  returning (checks, copies, counts image, writing, finalize and the summed
  pattern included); events/s.
* ``put_events``: 100 events a frame, one call per frame, timed the same way; frames/s.
* ``floor``: loops doing only what any counted writer must (range check, encode, summed pattern,
  CRC-32 for the chunk log, direct chunk write), on one thread and on one thread per core with
  no hand-off; and the encoder pool alone (encode + summed pattern on the pool's threads, no
  file): together they show how far below compress-only the must-dos are.
* sizes: bytes per event of the same events with each codec and pre-filter (none; delta of the
  sorted indices within each frame; delta over the whole stream), chunks of ``chunk_events``.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
from emdstream import Acquisition, CountedStream  # noqa: E402
from emdstream.encoders import get_encoder  # noqa: E402
from emdstream.format.counted import DEFAULT_CHUNK_EVENTS  # noqa: E402

SHAPE = (576, 576)
CODECS = ["bslz4", "zstd", "blosc-lz4", "gzip", None]


def make_events(n_frames: int, per_frame: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(indptr, indices) of ``n_frames`` frames of about ``per_frame`` electrons each."""
    rng = np.random.default_rng(seed)
    lengths = rng.poisson(per_frame, n_frames)
    total = int(lengths.sum())
    disk = rng.random(total) < 0.7
    r = 60 * np.sqrt(rng.random(total))
    phi = 2 * np.pi * rng.random(total)
    ky = np.where(disk, 288 + r * np.sin(phi), rng.random(total) * 576).astype(np.int64)
    kx = np.where(disk, 288 + r * np.cos(phi), rng.random(total) * 576).astype(np.int64)
    flat = (np.clip(ky, 0, 575) * 576 + np.clip(kx, 0, 575)).astype(np.uint32)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    rows = np.repeat(np.arange(n_frames), lengths)
    order = np.lexsort((flat, rows))  # sorted within each frame
    return indptr, flat[order]


def compress_only(indices: np.ndarray, codec, chunk: int) -> float:
    """Events per second encoding ``indices`` chunk by chunk, one thread."""
    encoder = get_encoder(codec)
    start = time.perf_counter()
    for first in range(0, indices.size, chunk):
        piece = indices[first:first + chunk]
        if piece.size < chunk:
            piece = np.concatenate([piece, np.zeros(chunk - piece.size, piece.dtype)])
        encoder.encode(piece)
    return indices.size / (time.perf_counter() - start)


def pool_ceiling(indices: np.ndarray, codec, chunk: int, workers: int = 0) -> float:
    """Events per second of what the encoder pool does for ``put_csr``'s event chunks (encode
    and add into the summed pattern, on the pool's threads; no copies, no file): the most
    ``put_csr`` could reach on this machine."""
    from emdstream.write.encoder_pool import EncoderPool
    from emdstream.write.events import _encode
    from emdstream.write.summed import SummedPattern
    encoder, summed = get_encoder(codec), SummedPattern(SHAPE[0] * SHAPE[1], np.uint16)
    pieces = [indices[first:first + chunk] for first in range(0, indices.size, chunk)]
    pool = EncoderPool(workers or None)
    start = time.perf_counter()
    for fut in [pool.submit(_encode, encoder, piece, summed, None) for piece in pieces]:
        fut.result()
    elapsed = time.perf_counter() - start
    pool.shutdown()
    return indices.size / elapsed


def floor_loop(path: str, indices: np.ndarray, codec, chunk: int, threads: int = 1,
               cycles: int = 1) -> float:
    """Events per second of the least a counted writer must do, on ``threads`` plain threads
    (0: one per core), each taking every n-th chunk of events, with no hand-off: check its range
    (one pass), encode it straight from the caller's array (only the last, short chunk is copied
    and padded), add it into the summed pattern (emdstream's ``SummedPattern``: a part per
    thread, the GIL released), take its CRC-32 (the chunk log) and write it
    (``write_direct_chunk``; h5py serializes the writes); the events ``cycles`` times over, as
    ``write_csr``. The file is made before the clock starts and closed before it stops, as
    ``put_csr`` is timed from its first put to ``close()``. No counts image, no indptr, no
    values. A target above the best of these is out of reach here."""
    import threading
    import zlib

    import h5py

    from emdstream.write.summed import SummedPattern
    n = threads or os.cpu_count() or 1
    encoder = get_encoder(codec)
    pixels = SHAPE[0] * SHAPE[1]
    summed = SummedPattern(pixels, np.uint16)
    starts = list(range(0, indices.size, chunk)) * cycles
    errors: list[BaseException] = []
    f = h5py.File(path, "w", libver=("v110", "v110"))
    ds = f.create_dataset("indices", (len(starts) * chunk,), np.uint32, maxshape=(None,),
                          chunks=(chunk,), **encoder.dataset_options())

    def one(i: int) -> None:
        try:
            for j in range(i, len(starts), n):
                first = starts[j]
                events = indices[first:first + chunk]
                if int(events.max()) >= pixels:
                    raise ValueError("index outside the frame")
                piece = events if events.size == chunk else \
                    np.concatenate([events, np.zeros(chunk - events.size, events.dtype)])
                payload = encoder.encode(piece)
                summed.add(events)
                zlib.crc32(payload)
                ds.id.write_direct_chunk((j * chunk,), payload)
        except BaseException as exc:  # reported, not lost with the thread
            errors.append(exc)

    start = time.perf_counter()
    workers = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    summed.total()
    f.close()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return cycles * indices.size / elapsed


def file_cost(path: str, codec) -> float:
    """Seconds from one small put to ``close()`` returning (the part of ``put_csr``'s time that
    does not grow with the events: finalize, fsyncs, rename)."""
    with Acquisition(path, [CountedStream("electrons", SHAPE, open_ended=True, compression=codec)],
                     overwrite=True) as acq:
        start = time.perf_counter()
        acq["electrons"].put_csr(np.array([0, 2]), np.array([1, 2], np.uint32))
    return time.perf_counter() - start


def write_csr(path: str, indptr: np.ndarray, indices: np.ndarray, codec, block: int,
              cycles: int = 1) -> float:
    """Events per second through put_csr in blocks of ``block`` frames, the events ``cycles``
    times over, from the first put until close returns (the file is made before)."""
    n = indptr.size - 1
    with Acquisition(path, [CountedStream("electrons", SHAPE, open_ended=True, compression=codec)],
                     overwrite=True) as acq:
        ev = acq["electrons"]
        start = time.perf_counter()
        for _ in range(cycles):
            for first in range(0, n, block):
                last = min(n, first + block)
                lo, hi = indptr[first], indptr[last]
                ev.put_csr(indptr[first:last + 1] - lo, indices[lo:hi])
    return cycles * indices.size / (time.perf_counter() - start)


def write_events(path: str, frames: list[np.ndarray], codec) -> float:
    """Frames per second through put_events, one call per frame (until close returns)."""
    start = time.perf_counter()
    with Acquisition(path, [CountedStream("electrons", SHAPE, open_ended=True, compression=codec)],
                     overwrite=True) as acq:
        put = acq["electrons"].put_events
        for frame in frames:
            put(frame)
    return len(frames) / (time.perf_counter() - start)


def sizes(indptr: np.ndarray, indices: np.ndarray, chunk: int) -> dict:
    """Bytes per event by (codec, pre-filter)."""
    lengths = np.diff(indptr)
    starts = np.repeat(indptr[:-1], lengths)
    within = indices.astype(np.int64)
    delta_frame = np.diff(within, prepend=0)
    delta_frame[indptr[:-1][lengths > 0]] = within[indptr[:-1][lengths > 0]]  # first of each frame
    del starts
    filters = {"none": indices, "delta in frame": delta_frame.astype(np.uint32),
               "delta (all)": np.diff(within, prepend=0).astype(np.int32).view(np.uint32)}
    out = {}
    for codec in CODECS:
        encoder = get_encoder(codec)
        for label, data in filters.items():
            total = 0
            for first in range(0, data.size, chunk):
                total += memoryview(encoder.encode(data[first:first + chunk])).nbytes
            out[(codec or "none", label)] = total / data.size
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--codec", default="bslz4", help="the stream's codec (default bslz4)")
    parser.add_argument("--cycles", type=int, default=5,
                        help="put_csr and the floors put the events this many times over "
                             "(default 5: 200 M events, so close's fixed cost weighs as in a "
                             "longer acquisition)")
    args = parser.parse_args()
    n_frames = 10_000 if args.quick else 40_000
    chunk = DEFAULT_CHUNK_EVENTS
    indptr, indices = make_events(n_frames, 1000)
    small_ptr, small = make_events(20_000 if args.quick else 100_000, 100, seed=1)
    frames = [small[small_ptr[i]:small_ptr[i + 1]] for i in range(small_ptr.size - 1)]
    print(f"{os.cpu_count()} cores; {n_frames} frames of ~1000 events ({indices.size / 1e6:.1f} M "
          f"events, {indices.nbytes / 1e6:.0f} MB of uint32 indices); codec {args.codec}, "
          f"chunks of {chunk} events")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.emd")
        results = {"compress": [], "csr": [], "events": [], "pool": [], "file": [], "floor": [],
                   "floor_threads": []}
        for _ in range(3):  # interleaved, best of three
            results["compress"].append(compress_only(indices, args.codec, chunk))
            results["csr"].append(write_csr(path, indptr, indices, args.codec, 1000, args.cycles))
            results["events"].append(write_events(path, frames, args.codec))
            results["pool"].append(pool_ceiling(indices, args.codec, chunk))
            results["file"].append(-file_cost(path + ".small", args.codec))
            results["floor"].append(floor_loop(path + ".floor", indices, args.codec, chunk,
                                               cycles=args.cycles))
            results["floor_threads"].append(floor_loop(path + ".floor", indices, args.codec, chunk,
                                                       threads=0, cycles=args.cycles))
        stored = os.path.getsize(path)
    compress, csr, events, pool, file, floor, threaded = (max(results[k]) for k in results)
    total = args.cycles * indices.size
    streaming = total / (total / csr + file)  # close's fixed cost taken out
    print(f"compress-only ({args.codec}, 1 thread): {compress / 1e6:8.1f} M events/s")
    print(f"put_csr, 1000-frame blocks, {args.cycles} times over: {csr / 1e6:8.1f} M events/s  "
          f"= {csr / compress:.2f}x compress-only  (target >= 0.8x and >= 30 M/s)")
    print(f"  of which close's fixed cost (one small put to close): {-file * 1e3:.0f} ms; "
          f"without it {streaming / 1e6:.1f} M events/s = {streaming / compress:.2f}x")
    print(f"  the encoder pool alone (encode + summed pattern, {os.cpu_count()} threads, no "
          f"file): {pool / 1e6:.1f} M events/s = {pool / compress:.2f}x (put_csr's ceiling)")
    print(f"  floor, one thread that checks, encodes, adds into the summed pattern, takes a CRC-32 "
          f"and writes each chunk: {floor / 1e6:.1f} M events/s = {floor / compress:.2f}x")
    print(f"  floor, the same on {os.cpu_count()} threads: {threaded / 1e6:.1f} M events/s = "
          f"{threaded / compress:.2f}x")
    print(f"put_events, 100 events a frame:        {events / 1e3:8.1f} k frames/s "
          f"(target >= 50 k/s; file {stored / 1e6:.1f} MB)")
    print("\nbytes per event (4 = raw uint32), by codec and pre-filter:")
    table = sizes(indptr, indices, chunk)
    labels = ["none", "delta in frame", "delta (all)"]
    print(f"{'codec':<10}" + "".join(f"{label:>16}" for label in labels))
    for codec in CODECS:
        print(f"{codec or 'none':<10}" + "".join(f"{table[(codec or 'none', lab)]:>16.3f}"
                                                 for lab in labels))


if __name__ == "__main__":
    main()
