#!/usr/bin/env python
"""Throughput at the limit (project issue #10): each way of feeding frames against its ceiling.

    python benchmarks/bench_limits.py --markdown      # full run, 3 repeats (~1.5 min on 2 cores)
    python benchmarks/bench_limits.py --quick         # 1/8 of the sizes, 1 repeat (~10 s)
    python benchmarks/bench_limits.py --only 256x256-bslz4 --only /put_many

Cases (uint16 "detector" frames from ``harness.make_bank``, cycled from a bank of 64; each
method in a fresh subprocess, methods of a case interleaved repeat by repeat, median of repeats):

* ``put``: ``EMDWriter(n_frames=N)``, ``w.put(frame)`` for every frame, ``close()``.
* ``put_many``: ``w.put_many(block)`` with blocks of ``--block`` (256) frames.
* ``frame_buffer``: ``with w.frame_buffer() as buf: np.copyto(buf, frame)`` (what
  ``sock.recv_into(buf)`` does: the bytes land in the slot itself).
* ``put_compressed``: ``chunk_frames=1``, ``w.put_compressed(blob)`` of frames bslz4-encoded
  beforehand (``BitshuffleLZ4().encode(frame[None])``, as a Dectris detector sends them).
* ``put_paced``: ``put`` at ``--pace`` GB/s (well below what the writer keeps up with), so the
  queue has room: the latency of ``put`` itself.
* ``store_raw``: gzip (the slowest codec) at full producer speed with ``on_full="store_raw"``:
  chunks the encoder pool has no room for go to disk uncompressed.
* ``none``: ``compression=None`` (the uncompressed path, to hold against the I/O ceiling).
* ``compress``: the compress-only ceiling, ``harness.ceilings.compress_pool`` (the encoder on the same
  chunks on ``os.cpu_count()`` threads, no I/O, no assembly).
* ``io-*``: the I/O ceiling: the same raw bytes written to a file in several ways (chunk-sized
  ``write``, 32 MiB ``write``, ``os.pwrite`` of chunks from 2 threads, the same after
  ``ftruncate`` to the full size). The best median is the ceiling; no emdstream path may write
  stored bytes faster than it (by more than 10%), or it is not a ceiling.

Every emdstream run records CPU seconds per thread (producer: ``time.thread_time`` around the
loop; writer thread and encoder threads: their own ``thread_time`` when they end), so the table
says where the time goes. "CPU bound" = compress-only CPU seconds / emdstream CPU seconds: the
ratio to compress-only that 2 fully used cores allow, given the extra CPU emdstream spends.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
from typing import Optional

import harness as bw  # first: this checkout's src/ on sys.path
import numpy as np
from harness import GiB, MiB, fmt_table
from harness import fmt as _f
from harness.ceilings import compress_pool

IO_BIG = 32 * MiB
PACE_GBPS = 0.5
LAT_RING = bw.LAT_RING
# Raw bytes per case (full run; --quick divides by 8)
CASE_BYTES = {64: 256 * MiB, 256: 1 * GiB, 1024: 1 * GiB, "gzip": 256 * MiB}

# (case, frame size, compression, methods); method labels -> runner and job keys in VARIANTS
CASES = [
    ("256x256-bslz4", 256, "bslz4",
     ["put", "frame_buffer", "put_compressed", "put_paced", "none", "compress",
      "io-write-chunk", "io-write-32MiB", "io-pwrite-2t", "io-pwrite-2t-prealloc"]),
    ("64x64-bslz4", 64, "bslz4", ["put", "put_many", "compress"]),
    ("1024x1024-bslz4", 1024, "bslz4", ["put", "compress"]),
    ("256x256-gzip", 256, "gzip", ["put", "store_raw", "compress"]),
]
VARIANTS = {
    "put": dict(method="emd", api="put"),
    "put_many": dict(method="emd", api="put_many"),
    "frame_buffer": dict(method="emd", api="frame_buffer"),
    "put_compressed": dict(method="emd", api="put_compressed", chunk_frames=1),
    "put_paced": dict(method="emd", api="put", pace=True),
    "store_raw": dict(method="emd", api="put", on_full="store_raw"),
    "none": dict(method="emd", api="put", compression=None),
    "compress": dict(method="compress"),
    "io-write-chunk": dict(method="io", io="write", piece="chunk"),
    "io-write-32MiB": dict(method="io", io="write", piece="big"),
    "io-pwrite-2t": dict(method="io", io="pwrite", threads=2),
    "io-pwrite-2t-prealloc": dict(method="io", io="pwrite", threads=2, prealloc=True),
}
EMD_METHODS = [m for m, v in VARIANTS.items() if v["method"] == "emd"]


def api(w, name: str):
    """``w.<name>`` on the writer, or on its stream where the writer does not have it yet."""
    return getattr(w, name, None) or getattr(w._stream, name)


# ------------------------------------------------------------------------------------------------
# child side
# ------------------------------------------------------------------------------------------------
def run_emd(job: dict, bank: np.ndarray, path: str) -> dict:
    import _breakdown

    from emdstream import EMDWriter
    from emdstream.encoders import BitshuffleLZ4
    n, b, how = job["frames"], len(bank), job["api"]
    _breakdown.reset_thread_cpu()  # --in-process: earlier runs' threads are not this one's
    frame_bytes = bank[0].nbytes
    w = EMDWriter(path, bank.shape[1:], bank.dtype, n_frames=n, compression=job["compression"],
                  chunk_frames=job.get("chunk_frames"), on_full=job.get("on_full", "block"),
                  overwrite=True)
    lat = np.zeros(LAT_RING, dtype=np.int64)
    mask, clock = LAT_RING - 1, time.perf_counter_ns
    pace_ns = frame_bytes / (job["pace_gbps"] * 1e9) * 1e9 if job.get("pace") else 0.0
    if how == "put_compressed":
        enc = BitshuffleLZ4()
        blobs = [enc.encode(f[None]) for f in bank]  # as the detector sends them (not timed)
        feed = api(w, "put_compressed")
    elif how == "put_many":
        blocks = [np.ascontiguousarray(c) for c in bw.distinct_chunks(bank, job["block"])]
        feed = api(w, "put_many")
    elif how == "frame_buffer":
        fb = api(w, "frame_buffer")
    else:
        feed = w.put
    rss0, cpu0 = bw.start_timing()
    p0 = time.thread_time()
    t0 = time.perf_counter()
    if how == "put_many":
        k = job["block"]
        for j in range(n // k):
            a = clock()
            feed(blocks[j % len(blocks)])
            lat[j & mask] = clock() - a
        n_calls = n // k
    elif how == "frame_buffer":
        for i in range(n):
            a = clock()
            with fb() as buf:
                np.copyto(buf, bank[i % b])
            lat[i & mask] = clock() - a
        n_calls = n
    else:
        src = blobs if how == "put_compressed" else bank
        start = clock()
        for i in range(n):
            if pace_ns and i % 16 == 0:  # bursts of 16 frames on a fixed schedule
                ahead = start + i * pace_ns - clock()
                if ahead > 0:
                    time.sleep(ahead / 1e9)
            a = clock()
            feed(src[i % b])
            lat[i & mask] = clock() - a
        n_calls = n
    producer = time.thread_time() - p0
    t_loop = time.perf_counter() - t0
    w.close()
    t1 = time.perf_counter()
    cpu1, peak = bw.cpu_seconds(), bw.peak_since_start()
    w._thread.join(5)  # its CPU is recorded as run() returns, just after close() sees it finished
    threads = _breakdown.thread_cpu()
    lat = lat[:min(n_calls, LAT_RING)]
    stored, attrs = bw.check_written(path, n, bank)  # not timed: the file holds what was put
    raw_behind = int(attrs.get("raw_chunks_writer_behind", 0))
    raw_incompressible = int(attrs.get("raw_chunks_incompressible", 0))
    return dict(seconds=t1 - t0, cpu=cpu1 - cpu0, rss0=rss0, peak_timed=peak, stored=stored,
                loop_seconds=t_loop, put_p50_us=float(np.percentile(lat, 50)) / 1e3,
                put_p99_us=float(np.percentile(lat, 99)) / 1e3, put_max_us=float(lat.max()) / 1e3,
                calls=n_calls, cpu_producer=producer, cpu_writer=threads.get("writer"),
                cpu_encoders=threads.get("encoders"), queue_high_water=w.queue_high_water,
                queue_size=w.queue_size, dropped=w.frames_dropped, chunk_frames=w.geometry.k,
                raw_chunks_behind=raw_behind, raw_chunks_incompressible=raw_incompressible,
                n_chunks=-(-n // w.geometry.k))


def run_io(job: dict, bank: np.ndarray, path: str) -> dict:
    """The same raw bytes into a file: ``write`` of chunk-sized or 32 MiB pieces, or ``os.pwrite``
    of chunk-sized pieces from ``threads`` threads (each every threads-th piece), optionally into
    a file ``ftruncate``d to its size first. No fsync (emdstream does not fsync by default)."""
    n, k = job["frames"], job["k"]
    total = n * bank[0].nbytes
    piece = IO_BIG if job.get("piece") == "big" else k * bank[0].nbytes
    pattern = np.ascontiguousarray(bank[np.arange(max(1, math.ceil(piece / bank[0].nbytes))) % len(bank)])
    buf = memoryview(pattern).cast("B")[:piece]
    offsets = list(range(0, total, piece))
    rss0, cpu0 = bw.start_timing()
    t0 = time.perf_counter()
    if job["io"] == "write":
        with open(path, "wb") as fh:
            for off in offsets:
                fh.write(buf[:min(piece, total - off)])
    else:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        if job.get("prealloc"):
            os.ftruncate(fd, total)
        t = job["threads"]

        def part(i):
            for off in offsets[i::t]:
                os.pwrite(fd, buf[:min(piece, total - off)], off)
        ths = [threading.Thread(target=part, args=(i,)) for i in range(t)]
        for th in ths:
            th.start()
        for th in ths:
            th.join()
        os.close(fd)
    t1 = time.perf_counter()
    cpu1, peak = bw.cpu_seconds(), bw.peak_since_start()
    return dict(seconds=t1 - t0, cpu=cpu1 - cpu0, rss0=rss0, peak_timed=peak,
                stored=os.path.getsize(path))


def run_compress(job: dict, bank: np.ndarray, path: str) -> dict:
    return compress_pool(job, bank, path)


RUNNERS = {"emd": run_emd, "io": run_io, "compress": run_compress}


# ------------------------------------------------------------------------------------------------
# parent side
# ------------------------------------------------------------------------------------------------
def case_frames(size: int, comp: str, divide: int, k: int, block: int) -> int:
    total = CASE_BYTES["gzip" if comp == "gzip" else size] // divide
    step = math.lcm(k, block) if size == 64 else k
    return max(2 * step, total // (size * size * 2) // step * step)


def _selected(args: argparse.Namespace, name: str) -> bool:
    """``--only`` NAME: a part of ``case/method``; NAME$: its end (``--only 256x256-bslz4/put$``)."""
    return not args.only or any(name.endswith(o[:-1]) if o.endswith("$") else o in name
                                for o in args.only)


def run_all(bench: bw.Bench) -> list[dict]:
    args = bench.args
    rows = []
    for name, size, comp, methods in CASES:
        methods = [m for m in methods if _selected(args, f"{name}/{m}")]
        if not methods:
            continue
        shape = (size, size)
        k = bw.chunk_frames_for(shape, None)
        n = case_frames(size, comp, args.divide, k, args.block)
        base = dict(workload="detector", shape=list(shape), compression=comp, frames=n, k=k,
                    frame_bytes=size * size * 2, bank=bench.bank("detector", shape),
                    thread_cpu=True, block=args.block, pace_gbps=args.pace)
        bench.progress(f"{name}: {n} frames, {k} frames/chunk")
        res = bench.run_case(name, base, methods, VARIANTS)
        for m in methods:
            rows.append(dict(res[m], case=name, size=size, k=k, label=m))
    return rows


def analyse(rows: list[dict]) -> dict:
    """Ceilings, ratios and where the time goes."""
    by = {(r["case"], r["label"]): r for r in rows}
    io = [r for r in rows if r["label"].startswith("io-")]
    # the ceiling: the fastest run of any I/O method (a ceiling is what the file system allowed
    # at best, so no repeat of it is discarded as noise)
    io_best = None
    for r in io:
        r["best_gbps"] = r["raw_bytes"] / min(r["all_seconds"]) / 1e9
        if io_best is None or r["best_gbps"] > io_best["best_gbps"]:
            io_best = r
    for r in rows:
        comp = by.get((r["case"], "compress"))
        if r["label"] in EMD_METHODS:
            r["stored_gbps"] = r["stored"] / r["seconds"] / 1e9
            if comp and r["label"] not in ("none", "put_paced"):
                r["vs_compress"] = comp["seconds"] / r["seconds"]
                r["cpu_bound"] = comp["cpu"] / r["cpu"]  # the ratio 2 busy cores would allow
            if io_best:
                r["vs_io"] = r["stored_gbps"] / io_best["best_gbps"]
    return dict(by=by, io_best=io_best)


TARGETS = [  # (label, case, method, what, threshold, key)
    ("put 256x256 bslz4", "256x256-bslz4", "put", ">= 0.75x compress-only", 0.75, "vs_compress"),
    ("put_many 64x64 bslz4, blocks of 256", "64x64-bslz4", "put_many", ">= 0.75x compress-only",
     0.75, "vs_compress"),
    ("frame_buffer 256x256 bslz4", "256x256-bslz4", "frame_buffer", ">= 0.75x compress-only", 0.75,
     "vs_compress"),
    ("put_compressed 256x256 (detector bslz4)", "256x256-bslz4", "put_compressed",
     ">= 2.5x compress-only", 2.5, "vs_compress"),
    ("store_raw gzip 256x256, full speed", "256x256-gzip", "store_raw",
     ">= 1.5x gzip compress-only, 0 dropped", 1.5, "vs_compress"),
    ("put 1024x1024 bslz4", "1024x1024-bslz4", "put", ">= 0.85x compress-only", 0.85, "vs_compress"),
]


def where(r: dict) -> str:
    """CPU seconds per thread, as a share of the wall time (cores)."""
    s = r["seconds"]
    parts = [f"{name} {r[key] / s:.2f}" for name, key in
             (("producer", "cpu_producer"), ("writer", "cpu_writer"), ("encoders", "cpu_encoders"))
             if r.get(key) is not None]
    other = _other_cpu(r)
    if other is not None:
        parts.append(f"other {other / s:.2f}")
    return "cores: " + ", ".join(parts) + f" (process {r['cpu'] / s:.2f})"


def _other_cpu(r: dict) -> Optional[float]:
    """Process CPU outside the producer loop, the writer and the encoder threads: mostly the
    OpenMP threads bitshuffle's ``compress_lz4`` starts (libgomp), plus close() in the producer."""
    if r.get("cpu_writer") is None:
        return None
    return r["cpu"] - r["cpu_producer"] - r["cpu_writer"] - (r.get("cpu_encoders") or 0.0)


def target_rows(a: dict) -> list[list[str]]:
    by, io_best = a["by"], a["io_best"]
    out = []
    for label, case, method, what, thr, key in TARGETS:
        r = by.get((case, method))
        if r is None or key not in r:
            continue
        ok = r[key] >= thr and (method != "store_raw" or r["dropped"] == 0)
        measured = f"{r[key]:.2f}x ({r['gbps']:.2f} vs {by[(case, 'compress')]['gbps']:.2f} GB/s)"
        if method == "store_raw":
            measured += f", {r['dropped']} dropped, {r['raw_chunks_behind']}/{r['n_chunks']} chunks raw"
        note = where(r) + f"; CPU bound {r['cpu_bound']:.2f}x"
        out.append([label, what, measured, "met" if ok else "MISSED", note])
    r = by.get(("256x256-bslz4", "put_paced"))
    if r:
        room = r["queue_high_water"] < r["queue_size"]
        ok = r["put_p99_us"] <= 1000 and room
        out.append(["put p99 latency 256x256 bslz4, queue with room", "<= 1 ms",
                    f"p99 {r['put_p99_us']:.0f} us, p50 {r['put_p50_us']:.1f} us, max "
                    f"{r['put_max_us']:.0f} us at {r['gbps']:.2f} GB/s",
                    "met" if ok else "MISSED",
                    f"queue high water {r['queue_high_water']} of {r['queue_size']} frames"])
    if io_best:
        worst = max((r for r in by.values() if "vs_io" in r), key=lambda r: r["vs_io"], default=None)
        if worst:
            ok = worst["vs_io"] <= 1.10
            out.append(["I/O ceiling holds", "no emdstream path > 1.10x of it (stored bytes)",
                        f"ceiling {io_best['best_gbps']:.2f} GB/s (fastest run, {io_best['label']}); "
                        f"highest: "
                        f"{worst['case']}/{worst['label']} {worst['stored_gbps']:.2f} GB/s stored = "
                        f"{worst['vs_io']:.2f}x", "met" if ok else "MISSED",
                        "I/O methods, median (fastest) GB/s: " + ", ".join(
                            f"{r['label']} {r['gbps']:.2f} ({r['best_gbps']:.2f})"
                            for r in by.values() if r['label'].startswith('io-'))])
    return out


def print_rows(rows: list[dict], markdown: bool) -> None:
    headers = ["case", "method", "frames", "GB/s", "spread", "stored GB/s", "ratio", "vs compress",
               "CPU bound", "vs I/O ceil", "cores", "producer", "writer", "encoders", "other",
               "call p50 us", "call p99 us", "queue hw", "peak RSS MiB"]
    out = []
    for r in rows:
        s = r["seconds"]

        def c(key, r=r, s=s):
            return _f(r.get(key) / s if r.get(key) is not None else None, ".2f")

        out.append([r["case"], r["label"], str(r["frames"]), _f(r["gbps"], ".3f"),
                    _f(100 * r["spread"], ".0f") + "%" if len(r["all_seconds"]) > 1 else "",
                    _f(r.get("stored_gbps"), ".3f"), bw.ratio_text(r["ratio"]),
                    _f(r.get("vs_compress"), ".2f"), _f(r.get("cpu_bound"), ".2f"),
                    _f(r.get("vs_io"), ".2f"), _f(r["cores"], ".2f"),
                    c("cpu_producer"), c("cpu_writer"), c("cpu_encoders"),
                    _f(_other_cpu(r) / s if _other_cpu(r) is not None else None, ".2f"),
                    _f(r.get("put_p50_us"), ".1f"), _f(r.get("put_p99_us"), ".1f"),
                    f"{r['queue_high_water']}/{r['queue_size']}" if "queue_size" in r else "",
                    _f(r["peak_rss"] / MiB, ".0f")])
    print(fmt_table(headers, out, markdown))


def print_all(rows: list[dict], markdown: bool) -> None:
    a = analyse(rows)
    print("Throughput at the limit (cores = CPU seconds / wall seconds of the whole timed part; "
          "producer, writer, encoders: those threads; other: the rest of the process, mostly "
          "bitshuffle's OpenMP threads)")
    print_rows(rows, markdown)
    print("\nTargets (issue #10)")
    print(fmt_table(["target", "wanted", "measured", "", "where the time goes"],
                    target_rows(a), markdown))


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1/8 of the sizes, 1 repeat")
    p.add_argument("--only", action="append", default=[],
                   help="run only case/method names containing NAME (repeatable), e.g. 64x64, /put_many")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--repeats", type=int, default=None, help="default 3 (--quick: 1)")
    p.add_argument("--divide", type=int, default=None, help="divide the sizes by this (--quick: 8)")
    p.add_argument("--block", type=int, default=256, help="frames per put_many call (default 256)")
    p.add_argument("--pace", type=float, default=PACE_GBPS,
                   help=f"GB/s of the put_paced run (default {PACE_GBPS})")
    p.add_argument("--dir", default=None)
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--from-json", default=None, help="print the tables of a saved --json run")
    p.add_argument("--in-process", action="store_true", help="measure in this process (profilers)")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    bw.quick_or_full(args)
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if bw.run_child(args, RUNNERS):
        return 0
    if args.from_json:
        with open(args.from_json) as f:
            saved = json.load(f)
        fence = "```\n" if args.markdown else ""
        print(fence + saved["info"] + f"\n{fence}")
        print_all(saved["results"], args.markdown)
        return 0
    return bw.run_suite(args, __file__, RUNNERS,
                        f"repeats: {args.repeats} (median reported), detector frames, GB = 1e9 bytes, "
                        f"GB/s of raw frame bytes unless 'stored'", run_all, print_all)

if __name__ == "__main__":
    sys.exit(main())
