#!/usr/bin/env python
"""Issue 17's rows, each against the hand loop, the bare loop and the best-of ceilings, in one run.

    python benchmarks/bench_targets.py --markdown          # 3 repeats (~4 min on 2 cores)
    python benchmarks/bench_targets.py --quick             # 1/8 of the sizes, 1 repeat
    python benchmarks/bench_targets.py --only 256x256-bslz4

Every measurement runs in a fresh interpreter (``harness``), the methods of a case interleaved
repeat by repeat, medians reported. Methods: emdstream's APIs (``put``, ``put_many`` in blocks of
256, ``frame_buffer``, ``put_compressed``/``put_compressed_many`` of detector-compressed frames,
an ``Acquisition`` of diffraction + HAADF + two per-frame values, ``put`` paced at 0.5 GB/s for
latency), the hand and bare loops (``loops.py``) and the two compress-only ceilings
(``harness.ceilings``: one thread with the library's own threads, one plain thread per core; the
ceiling is the faster). emdstream's time runs from its first call to ``close()`` returning; "loop"
columns leave out ``close()`` (a fixed cost per file: finalize).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Optional

import harness  # first: this checkout's src/ on sys.path
import loops
import numpy as np
from harness import LAT_RING, MiB, fmt, fmt_table
from harness.ceilings import compress_own_threads, compress_threads, threads_written

BSLZ4 = ["own", "threads"]
FLOOR = ["threads_written"]  # the ceiling's threads, each chunk's CRC-32 taken and written
BSLZ4_FLOORS = ["threads_written", "hand_crc"]  # the fastest of the two designs
# (case, frame size, compression, raw MiB, methods)
CASES = [
    ("256x256-bslz4", 256, "bslz4", 1500,
     ["put", "frame_buffer", "acquisition", "acquisition_narrow", "put_paced", "hand",
      "hand_stream_blocks", "hand_crc"] + BSLZ4 + FLOOR),
    ("64x64-bslz4", 64, "bslz4", 256, ["put_many", "hand", "hand_crc"] + BSLZ4 + FLOOR),
    ("1024x1024-bslz4", 1024, "bslz4", 1024, ["put", "hand", "hand_crc"] + BSLZ4 + FLOOR),
    ("256x256-detector-compressed", 256, "bslz4", 1000,
     ["put_compressed_k1", "put_compressed", "put_compressed_many", "bare", "bare_checked",
      "gathered"]),
    ("256x256-zstd", 256, "zstd", 512, ["put"] + BSLZ4 + FLOOR),
    ("256x256-blosc-lz4", 256, "blosc-lz4", 1024, ["put"] + BSLZ4 + FLOOR),
    ("256x256-gzip", 256, "gzip", 128, ["put"] + BSLZ4 + FLOOR),
]
VARIANTS = {
    "put": dict(method="emd", api="put"), "put_many": dict(method="emd", api="put_many"),
    "frame_buffer": dict(method="emd", api="frame_buffer"),
    "acquisition": dict(method="emd", api="acquisition", scan_width=96),
    "acquisition_narrow": dict(method="emd", api="acquisition", scan_width=16),
    "put_paced": dict(method="emd", api="put", pace_gbps=0.5),
    "put_compressed_k1": dict(method="emd", api="put_compressed", chunk_frames=1),
    "put_compressed": dict(method="emd", api="put_compressed"),
    "put_compressed_many": dict(method="emd", api="put_compressed_many"),
    "hand": dict(method="hand"), "bare": dict(method="bare"), "hand_crc": dict(method="hand_crc"),
    "hand_stream_blocks": dict(method="hand_stream_blocks"),
    "bare_checked": dict(method="bare_checked"), "gathered": dict(method="gathered"),
    "own": dict(method="own"), "threads": dict(method="threads"),
    "threads_written": dict(method="threads_written"),
}
BLOCK = 256  # frames per put_many / put_compressed_many call


def _writer(job: dict, bank: np.ndarray, path: str):
    """(the object whose methods are timed, the stream) for ``job``."""
    from emdstream import Acquisition, EMDWriter, Stream
    n, comp = job["frames"], job["compression"]
    if job["api"] == "acquisition":
        acq = Acquisition(path, [Stream("diffraction", bank.shape[1:], compression=comp),
                                 Stream("haadf", (), "float32", compression=None)],
                          scan_shape=(n // job["scan_width"], job["scan_width"]), overwrite=True)
        return acq, acq["diffraction"]
    w = EMDWriter(path, bank.shape[1:], bank.dtype, n_frames=n, compression=comp,
                  chunk_frames=job.get("chunk_frames"), overwrite=True)
    return w, w._stream


def run_emd(job: dict, bank: np.ndarray, path: str) -> dict:
    import _breakdown

    from emdstream.encoders import BitshuffleLZ4
    n, b, how = job["frames"], len(bank), job["api"]
    w, stream = _writer(job, bank, path)
    lat = np.zeros(LAT_RING, dtype=np.int64)
    mask, clock = LAT_RING - 1, time.perf_counter_ns
    blobs = [np.asarray(BitshuffleLZ4().encode(f)).tobytes() for f in bank] \
        if how.startswith("put_compressed") else None
    blocks = [np.ascontiguousarray(c) for c in harness.distinct_chunks(bank, BLOCK)]
    pace_ns = bank[0].nbytes / job["pace_gbps"] if job.get("pace_gbps") else 0.0
    haadf = w["haadf"] if how == "acquisition" else None  # scan rows of job["scan_width"]
    rss0, cpu0 = harness.start_timing()
    p0, t0, start = time.thread_time(), time.perf_counter(), clock()
    calls = 0
    if how in ("put_many", "put_compressed_many"):
        feed = stream.put_many if how == "put_many" else stream.put_compressed_many
        for j in range(n // BLOCK):
            a = clock()
            feed(blocks[j % len(blocks)] if how == "put_many" else
                 [blobs[(j * BLOCK + i) % b] for i in range(BLOCK)])
            lat[j & mask] = clock() - a
        calls = n // BLOCK
    else:
        for i in range(n):
            if pace_ns and i % 16 == 0:  # bursts of 16 frames on a fixed schedule
                ahead = start + i * pace_ns - clock()
                if ahead > 0:
                    time.sleep(ahead / 1e9)
            a = clock()
            if how == "frame_buffer":
                with stream.frame_buffer() as buf:
                    np.copyto(buf, bank[i % b])
            elif how == "acquisition":
                stream.put(bank[i % b], stage_x=0.5 * i, stage_y=0.25 * i)
                haadf.put(float(i % 977))
            elif how == "put_compressed":
                stream.put_compressed(blobs[i % b])
            else:
                stream.put(bank[i % b])
            lat[i & mask] = clock() - a
        calls = n
    producer, t_loop = time.thread_time() - p0, time.perf_counter() - t0
    w.close()
    t1 = time.perf_counter()
    cpu1, peak = harness.cpu_seconds(), harness.peak_since_start()
    w._thread.join(5)
    threads = _breakdown.thread_cpu()
    lat = lat[:min(calls, LAT_RING)]
    _check(path, n, bank, "diffraction" if how == "acquisition" else "dataset_1")
    asm = stream.assembler
    return dict(seconds=t1 - t0, loop_seconds=t_loop, cpu=cpu1 - cpu0, rss0=rss0, peak_timed=peak,
                stored=_stored(path), put_p50_us=float(np.percentile(lat, 50)) / 1e3,
                put_p99_us=float(np.percentile(lat, 99)) / 1e3, put_max_us=float(lat.max()) / 1e3,
                cpu_producer=producer, cpu_writer=threads.get("writer"),
                cpu_encoders=threads.get("encoders"), queue_high_water=stream.queue_high_water,
                queue_bytes=stream.queue_size * bank[0].nbytes, chunk_frames=stream.geometry.k,
                writer_share=asm.raw_done / max(1, asm.raw_done + _pieces(stream, n) - asm.raw_done))


def _pieces(stream, n: int) -> int:
    layout = stream.assembler.layout
    return 0 if layout is None else -(-n // layout.k) * layout.n_pieces


def _check(path: str, n: int, bank: np.ndarray, name: str) -> None:
    import emdstream
    with emdstream.open(path) as f:
        data = f[name].data
        scan = data.shape[:data.ndim - 2]
        for i in (0, n // 2, n - 1):
            frame = data[np.unravel_index(i, scan)]
            assert np.array_equal(frame, bank[i % len(bank)]), f"frame {i} differs"


def _stored(path: str) -> int:
    import h5py
    with h5py.File(path, "r") as f:
        return sum(int(f[f"data/{g}/data"].id.get_storage_size()) for g in f["data"])


RUNNERS = {"emd": run_emd, "hand": loops.hand, "bare": loops.bare, "hand_crc": loops.hand_crc,
           "hand_stream_blocks": loops.hand_stream_blocks,
           "bare_checked": loops.bare_checked, "gathered": loops.gathered,
           "own": compress_own_threads, "threads": compress_threads,
           "threads_written": threads_written}


# ------------------------------------------------------------------------------------------------
def run_all(bench: harness.Bench) -> list[dict]:
    args, rows = bench.args, []
    for name, size, comp, mib, methods in CASES:
        methods = [m for m in methods if not args.only or any(o in f"{name}/{m}" for o in args.only)]
        if not methods:
            continue
        shape = (size, size)
        k = harness.chunk_frames_for(shape, None)
        step = math.lcm(k, BLOCK) if any(m.endswith("_many") for m in methods) else k
        for m in methods:  # whole scan rows
            step = math.lcm(step, VARIANTS[m].get("scan_width", 1))
        n = max(step, (mib * MiB // args.divide) // (size * size * 2) // step * step)
        base = dict(workload="detector", shape=list(shape), compression=comp, frames=n, k=k,
                    frame_bytes=size * size * 2, bank=bench.bank("detector", shape),
                    thread_cpu=True)
        bench.progress(f"{name}: {n} frames, {k} frames/chunk")
        res = bench.run_case(name, base, methods, VARIANTS)
        for m in methods:
            rows.append(dict(res[m], case=name, label=m))
    return rows


TARGETS = [  # (label, case, method, reference methods, threshold, floor method(s): the fastest)
    ("put 256x256 bslz4 vs ceiling", "256x256-bslz4", "put", BSLZ4, 0.9, BSLZ4_FLOORS),
    ("put 256x256 bslz4 vs hand loop", "256x256-bslz4", "put", ["hand"], 0.95, BSLZ4_FLOORS),
    ("put 256x256 bslz4 vs hand loop in 16 KiB blocks", "256x256-bslz4", "put",
     ["hand_stream_blocks"], 0.95, BSLZ4_FLOORS),
    ("frame_buffer 256x256 vs ceiling", "256x256-bslz4", "frame_buffer", BSLZ4, 0.9,
     BSLZ4_FLOORS),
    ("put_many 64x64 (blocks of 256) vs ceiling", "64x64-bslz4", "put_many", BSLZ4, 0.85,
     BSLZ4_FLOORS),
    ("put 1024x1024 vs ceiling", "1024x1024-bslz4", "put", BSLZ4, 0.9, BSLZ4_FLOORS),
    ("acquisition (+HAADF, 2 values) vs plain put", "256x256-bslz4", "acquisition", ["put"], 0.9,
     None),  # a scan 96 positions wide (125 rows of 6 chunks)
    ("acquisition, scan 16 wide (a chunk a row) vs plain put", "256x256-bslz4",
     "acquisition_narrow", ["put"], 0.9, None),
    ("put_compressed chunk_frames=1 vs bare loop", "256x256-detector-compressed",
     "put_compressed_k1", ["bare"], 0.8, "bare_checked"),
    ("put_compressed default chunks vs bare loop", "256x256-detector-compressed",
     "put_compressed", ["bare"], 2.0, "gathered"),
    ("put_compressed_many default chunks vs bare loop", "256x256-detector-compressed",
     "put_compressed_many", ["bare"], 2.0, "gathered"),
    ("zstd put vs its ceiling", "256x256-zstd", "put", BSLZ4, 0.85,
     "threads_written"),
    ("blosc-lz4 put vs its ceiling", "256x256-blosc-lz4", "put", BSLZ4, 0.85,
     "threads_written"),
    ("gzip put vs its ceiling", "256x256-gzip", "put", BSLZ4, 0.85,
     "threads_written"),
]


def target_rows(rows: list[dict]) -> list[list[str]]:
    by = {(r["case"], r["label"]): r for r in rows}
    out = []
    for label, case, method, refs, thr, floor_method in TARGETS:
        r = by.get((case, method))
        ref = [by[(case, m)] for m in refs if (case, m) in by and by[(case, m)]["seconds"] < math.inf]
        if r is None or not ref:
            continue
        best = min(ref, key=lambda x: x["seconds"])
        x = best["seconds"] / r["seconds"]
        loop = best["seconds"] / r["loop_seconds"] if r.get("loop_seconds") else None
        floors = [by[(case, m)] for m in ([floor_method] if isinstance(floor_method, str) else
                                          floor_method or []) if (case, m) in by]
        floors = [f for f in floors if f["seconds"] < math.inf]
        floor_x = best["seconds"] / min(f["seconds"] for f in floors) if floors else None
        out.append([label, f">= {thr}x", f"{x:.2f}x", fmt(loop, ".2f") + ("x" if loop else ""),
                    fmt(floor_x, ".2f") + ("x" if floor_x else ""),
                    "met" if x >= thr else "MISSED",
                    f"{_rate(r)} vs {_rate(best)} ({best['label']}); {where(r)}"])
    r = by.get(("256x256-bslz4", "put_paced"))
    if r:
        ok = r["put_p99_us"] <= 1000 and r["queue_high_water"] * r["frame_bytes"] < r["queue_bytes"]
        out.append(["put p99 latency, queue with room", "<= 1 ms", f"{r['put_p99_us']:.0f} us", "", "",
                    "met" if ok else "MISSED", f"p50 {r['put_p50_us']:.1f} us, max "
                    f"{r['put_max_us']:.0f} us at {r['gbps']:.2f} GB/s"])
    for r in rows:
        if r["label"] in ("put", "put_many") and "queue_bytes" in r:
            out.append([f"memory, {r['case']} {r['label']}", "bounded by queue_frames",
                        f"dRSS {r['drss'] / MiB:.0f} MiB", "", "", "",
                        f"queue {r['queue_bytes'] / MiB:.0f} MiB of frames, high water "
                        f"{r['queue_high_water']} frames"])
    return out


def _rate(r: dict) -> str:
    return f"{r['fps']:,.0f} frames/s" if "compressed" in r["case"] else f"{r['gbps']:.2f} GB/s"


def where(r: dict) -> str:
    s = r["seconds"]
    parts = [f"{name} {r[key] / s:.2f}" for name, key in
             (("producer", "cpu_producer"), ("writer", "cpu_writer"), ("encoders", "cpu_encoders"))
             if r.get(key) is not None]
    close = s - r["loop_seconds"] if r.get("loop_seconds") else None
    share = f", writer thread compressed {100 * r['writer_share']:.0f}% of pieces" \
        if r.get("writer_share") else ""
    return (f"cores: {', '.join(parts)} (process {r['cpu'] / s:.2f}); close {fmt(close, '.3f')} s"
            f"{share}")


def print_all(rows: list[dict], markdown: bool) -> None:
    headers = ["case", "method", "frames", "GB/s", "frames/s", "loop GB/s", "spread", "ratio",
               "cores", "producer", "writer", "call p99 us", "peak RSS MiB"]
    out = []
    for r in rows:
        loop = r["raw_bytes"] / r["loop_seconds"] / 1e9 if r.get("loop_seconds") else None
        skipped = r["seconds"] == math.inf
        out.append([r["case"], r["label"], str(r["frames"]),
                    "skipped" if skipped else fmt(r["gbps"], ".3f"), fmt(r["fps"], ",.0f"),
                    fmt(loop, ".3f"), "" if skipped else f"{100 * r['spread']:.0f}%",
                    harness.ratio_text(r["ratio"]), fmt(r["cores"], ".2f"),
                    fmt(r["cpu_producer"] / r["seconds"] if r.get("cpu_producer") else None, ".2f"),
                    fmt(r["cpu_writer"] / r["seconds"] if r.get("cpu_writer") else None, ".2f"),
                    fmt(r.get("put_p99_us"), ".1f"), fmt(r["peak_rss"] / MiB, ".0f")])
    print(fmt_table(headers, out, markdown))
    print("\nTargets (issue 17; x = reference time / emdstream time, > 1: emdstream faster; "
          "ceiling = the faster of own/threads; floor = the same ratio for the fastest loop that "
          "does only the checks, copies and CRC-32s emdstream must (loops.py, "
          "harness/ceilings.py): a target above it is out of reach for a writer of that design)")
    print(fmt_table(["target", "wanted", "measured", "loop only", "floor", "",
                     "rates; where the time goes"],
                    target_rows(rows), markdown))


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1/8 of the sizes, 1 repeat")
    p.add_argument("--only", action="append", default=[], help="case/method names containing NAME")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--repeats", type=int, default=None, help="default 3 (--quick: 1)")
    p.add_argument("--divide", type=int, default=None, help="divide the sizes (--quick: 8)")
    p.add_argument("--dir", default=None)
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--in-process", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    harness.quick_or_full(args)
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if harness.run_child(args, RUNNERS):
        return 0
    return harness.run_suite(args, __file__, RUNNERS,
                             f"repeats: {args.repeats} (median), detector frames, GB = 1e9 bytes",
                             run_all, print_all)

if __name__ == "__main__":
    sys.exit(main())
