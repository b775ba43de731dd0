#!/usr/bin/env python
"""Write-throughput benchmark for emdstream (project issue #3).

    python benchmarks/bench_write.py                  # main table (about 5 min on 2 cores)
    python benchmarks/bench_write.py --quick          # small sizes, 1 repeat (about 30 s)
    python benchmarks/bench_write.py --all            # main table + chunk sweep + scaling (~8 min)
    python benchmarks/bench_write.py --scaling        # per-frame cost and peak RSS vs frame count
    python benchmarks/bench_write.py --chunk-sweep    # emdstream throughput vs chunk size
    python benchmarks/bench_write.py --breakdown      # where the writer's threads spend their time
    python benchmarks/bench_write.py --only detector-256x256-bslz4 --markdown

For every case (workload x frame size x compression) it measures, each in a fresh subprocess (so
that peak RSS belongs to that measurement only) and repeated ``--repeats`` times (median reported;
the methods of a case are interleaved repeat by repeat so that slow phases of a noisy machine hit
all of them alike):

* ``naive``: h5py, one frame per chunk, ``d[i] = frame`` into a pre-allocated chunked dataset with
  the same HDF5 filter (``encoder.dataset_options()``), ``libver=("v110", "v110")``; timed from the
  first write to ``File.close()`` returning.
* ``emdstream``: ``EMDWriter(n_frames=N)``, ``put`` of every frame, ``close()``; timed from the
  first ``put`` to ``close()`` returning; ``put`` latency measured per call.
* ``raw-write``: ceiling for I/O: the same (uncompressed) bytes written with ``open(path, "wb")``
  in chunk-sized pieces, then flush + close. No fsync (neither h5py nor emdstream fsyncs).
* ``compress``: ceiling for compression: the same encoder encoding the same chunks on a thread
  pool of ``os.cpu_count()`` threads, no I/O, no chunk assembly (chunks pre-built).

Frames come from a pre-generated bank of 64 distinct frames (cycled), so generation is not timed.
GB/s is of raw frame bytes, GB = 1e9 bytes. Compression ratio = raw bytes / stored bytes
(``Dataset.id.get_storage_size()`` for HDF5 files). Peak RSS = VmHWM of the measuring process
over its life (imports, frame bank, and the timed part; not ``ru_maxrss``, which after fork+exec
also counts the parent's peak); dRSS = peak RSS during the timed
part (VmHWM, reset through /proc/self/clear_refs just before it) minus the RSS just before it.
"cores" = process CPU time / wall time during the timed part; faults/MiB = minor + major page
faults during the timed part per MiB of raw frames (256/MiB = every byte landed in fresh memory
once); spread = (slowest - fastest) / median of the repeats.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Optional

import harness  # first: this checkout's src/ on sys.path
import numpy as np
from harness import (
    BANK_FRAMES,
    LAT_RING,
    GiB,
    MiB,
    check_written,
    chunk_frames_for,
    cpu_seconds,
    distinct_chunks,
    fmt,
    fmt_table,
    machine_info,
    peak_since_start,
    ratio_text,
    start_timing,
)
from harness.ceilings import compress_pool

WORKLOADS = ("detector", "noise", "zeros")
FRAME_SIZES = (64, 256, 1024)
METHODS = ("naive", "emdstream", "raw-write", "compress")
SCALING_NS = (1_000, 10_000, 100_000, 1_000_000)
SWEEP_MIB = (0.25, 0.5, 1, 2, 4, 8)

# Raw bytes per case (full run); --quick divides by 8. Sized for ~1-3 s per measurement on 2 cores.
CASE_BYTES = {64: 256 * MiB, 256: 1 * GiB, 1024: 1 * GiB}
SLOW_CODEC_BYTES = {"gzip": 256 * MiB}  # deflate runs at ~0.1-0.2 GB/s per core


def _storage_size(path: str, dset: str) -> int:
    import h5py
    with h5py.File(path, "r") as f:
        return int(f[dset].id.get_storage_size())


def run_naive(job: dict, bank: np.ndarray, path: str) -> dict:
    import h5py

    from emdstream.encoders import get_encoder
    n = job["frames"]
    b = len(bank)
    options = get_encoder(job["compression"]).dataset_options()
    f = h5py.File(path, "w", libver=("v110", "v110"))
    d = f.create_dataset("data", shape=(n,) + bank.shape[1:], dtype=bank.dtype,
                         chunks=(1,) + bank.shape[1:], **options)
    rss0, cpu0 = start_timing()
    t0 = time.perf_counter()
    for i in range(n):
        d[i] = bank[i % b]
    f.close()
    t1 = time.perf_counter()
    cpu1, peak = cpu_seconds(), peak_since_start()
    stored = _storage_size(path, "data")
    return dict(seconds=t1 - t0, cpu=cpu1 - cpu0, rss0=rss0, peak_timed=peak, stored=stored)


def run_emdstream(job: dict, bank: np.ndarray, path: str) -> dict:

    from emdstream import EMDWriter
    n = job["frames"]
    b = len(bank)
    lat = np.zeros(LAT_RING, dtype=np.int64)
    mask = LAT_RING - 1
    w = EMDWriter(path, bank.shape[1:], bank.dtype, n_frames=None if job.get("open_ended") else n,
                  compression=job["compression"], chunk_frames=job.get("chunk_frames"),
                  overwrite=True)
    put = w.put
    clock = time.perf_counter_ns
    rss0, cpu0 = start_timing()
    t0 = time.perf_counter()
    for i in range(n):
        a = clock()
        put(bank[i % b])
        lat[i & mask] = clock() - a
    w.close()
    t1 = time.perf_counter()
    cpu1, peak = cpu_seconds(), peak_since_start()
    breakdown = None
    if job.get("breakdown"):
        import _breakdown
        breakdown = _breakdown.report(t1 - t0)  # before the read-back below
    lat = lat[:min(n, LAT_RING)]
    stored, _ = check_written(path, n, bank)  # not timed: the file holds what was put
    return dict(seconds=t1 - t0, cpu=cpu1 - cpu0, rss0=rss0, peak_timed=peak, stored=stored,
                put_p50_us=float(np.percentile(lat, 50)) / 1e3,
                put_p99_us=float(np.percentile(lat, 99)) / 1e3,
                put_max_us=float(lat.max()) / 1e3,
                queue_high_water=w.queue_high_water, queue_size=w.queue_size,
                chunk_frames=w.geometry.k, breakdown=breakdown)


def run_raw_write(job: dict, bank: np.ndarray, path: str) -> dict:
    n, k = job["frames"], job["k"]
    chunks = [np.ascontiguousarray(c) for c in distinct_chunks(bank, k)]  # written via the buffer protocol
    n_chunks, rest = divmod(n, k)
    tail = np.ascontiguousarray(bank[np.arange(n - rest, n) % len(bank)])
    rss0, cpu0 = start_timing()
    t0 = time.perf_counter()
    fh = open(path, "wb")
    for j in range(n_chunks):
        fh.write(chunks[j % len(chunks)])
    if rest:
        fh.write(tail)
    fh.flush()
    fh.close()  # no fsync: h5py and emdstream do not fsync either
    t1 = time.perf_counter()
    cpu1, peak = cpu_seconds(), peak_since_start()
    return dict(seconds=t1 - t0, cpu=cpu1 - cpu0, rss0=rss0, peak_timed=peak, stored=os.path.getsize(path))


RUNNERS = {"naive": run_naive, "emdstream": run_emdstream, "raw-write": run_raw_write,
           "compress": compress_pool}


# ------------------------------------------------------------------------------------------------
# cases, repeats, summaries
# ------------------------------------------------------------------------------------------------
def _selected(args: argparse.Namespace, name: str) -> bool:
    return not args.only or any(o in name for o in args.only)


def main_cases(quick: bool) -> list[tuple[str, str, tuple[int, int], Optional[str]]]:
    cases = []
    for size in FRAME_SIZES:
        for workload in WORKLOADS:
            cases.append((workload, size, "bslz4"))
        cases.append(("detector", size, None))
        if size == 256:
            for comp in ("zstd", "blosc-lz4", "gzip"):
                cases.append(("detector", size, comp))
    return [(f"{wl}-{s}x{s}-{c if c else 'none'}", wl, (s, s), c) for wl, s, c in cases]


def frames_for(shape, compression, quick: bool, k: int) -> int:
    frame_bytes = shape[0] * shape[1] * 2
    total = SLOW_CODEC_BYTES.get(compression, CASE_BYTES[shape[0]])
    if quick:
        total //= 8
    n = max(2 * k, total // frame_bytes)
    return (n + k - 1) // k * k  # whole chunks, as in an acquisition of whole chunks


def run_main(bench: harness.Bench) -> list[dict]:
    args = bench.args
    rows = []
    for name, workload, shape, comp in main_cases(args.quick):
        methods = [m for m in METHODS if _selected(args, f"{name}/{m}")
                   and not (m == "compress" and comp is None)]
        if not methods:
            continue
        k = chunk_frames_for(shape, None)
        n = frames_for(shape, comp, args.quick, k)
        base = dict(workload=workload, shape=list(shape), compression=comp, frames=n, k=k,
                    frame_bytes=shape[0] * shape[1] * 2, bank=bench.bank(workload, shape))
        bench.progress(f"{name}: {n} frames, {k} frames/chunk")
        res = bench.run_case(name, base, methods)
        ceiling = res.get("compress" if comp else "raw-write")
        for m in methods:
            r = res[m]
            row = dict(r, case=name, k=k)
            if m == "emdstream":
                if "naive" in res:
                    row["vs_naive"] = res["naive"]["seconds"] / r["seconds"]
                if ceiling:
                    row["vs_ceiling"] = ceiling["seconds"] / r["seconds"]
            rows.append(row)
    return rows


def run_scaling(bench: harness.Bench) -> list[dict]:
    args = bench.args
    shape = (64, 64)
    k = chunk_frames_for(shape, None)
    rows = []
    for n in args.scaling_ns:
        name = f"scaling-{n}"
        if not _selected(args, name):
            continue
        base = dict(workload="detector", shape=list(shape), compression="bslz4", frames=int(n),
                    k=k, frame_bytes=shape[0] * shape[1] * 2, open_ended=True,
                    bank=bench.bank("detector", shape))
        bench.progress(f"{name}: open-ended, {n} frames")
        r = bench.run_case(name, base, ["emdstream"])["emdstream"]
        rows.append(dict(r, case=name, us_per_frame=r["seconds"] / n * 1e6))
    return rows


def run_sweep(bench: harness.Bench) -> list[dict]:
    args = bench.args
    shape = (256, 256)
    frame_bytes = shape[0] * shape[1] * 2
    rows = []
    n_total = (1 * GiB // (8 if args.quick else 1)) // frame_bytes
    for mib in SWEEP_MIB:
        k = max(1, round(mib * MiB / frame_bytes))
        name = f"chunk-{mib:g}MiB"
        if not _selected(args, name):
            continue
        n = max(2 * k, n_total // k * k)
        base = dict(workload="detector", shape=list(shape), compression="bslz4", frames=n, k=k,
                    chunk_frames=k, frame_bytes=frame_bytes, bank=bench.bank("detector", shape))
        bench.progress(f"{name}: {k} frames/chunk, {n} frames")
        res = bench.run_case(name, base, ["emdstream", "compress"])
        e, c = res["emdstream"], res["compress"]
        rows.append(dict(e, case=name, chunk_mib=k * frame_bytes / MiB, k=k,
                         ceiling_gbps=c["gbps"], vs_ceiling=c["seconds"] / e["seconds"]))
    return rows


def run_breakdown(bench: harness.Bench) -> dict:
    args = bench.args
    shape = (256, 256)
    k = chunk_frames_for(shape, None)
    n = frames_for(shape, "bslz4", args.quick, k)
    job = dict(workload="detector", shape=list(shape), compression="bslz4", frames=n, k=k,
               frame_bytes=shape[0] * shape[1] * 2, bank=bench.bank("detector", shape),
               method="emdstream", name="breakdown", tmpdir=bench.tmpdir, breakdown=True)
    return harness.measure(job, __file__, RUNNERS, args.in_process)


# ------------------------------------------------------------------------------------------------
# output
# ------------------------------------------------------------------------------------------------
def print_main(rows: list[dict], markdown: bool) -> None:
    headers = ["case", "method", "frames", "GB/s", "spread", "frames/s", "ratio", "peak RSS MiB",
               "dRSS MiB", "cores", "faults/MiB", "put p50 us", "put p99 us", "emd/naive",
               "emd/ceiling"]
    out = []
    for r in rows:
        out.append([r["case"], r["method"], str(r["frames"]), fmt(r["gbps"], ".3f"),
                    fmt(100 * r["spread"], ".0f") + "%" if len(r["all_seconds"]) > 1 else "",
                    fmt(r["fps"], ",.0f"), ratio_text(r["ratio"]), fmt(r["peak_rss"] / MiB, ".0f"),
                    fmt(r["drss"] / MiB, ".0f"), fmt(r["cores"], ".2f"), fmt(r["faults_per_mib"], ".0f"),
                    fmt(r.get("put_p50_us"), ".1f"), fmt(r.get("put_p99_us"), ".1f"),
                    fmt(r.get("vs_naive"), ".2f") + ("x" if "vs_naive" in r else ""),
                    fmt(r.get("vs_ceiling"), ".2f") + ("x" if "vs_ceiling" in r else "")])
    print(fmt_table(headers, out, markdown))


def print_scaling(rows: list[dict], markdown: bool) -> None:
    ref = next((r for r in rows if r["frames"] == 10_000), None)
    headers = ["frames", "raw GB", "seconds", "us/frame", "vs 1e4", "marginal us/frame",
               "frames/s", "peak RSS MiB", "dRSS MiB", "queue high water", "put p50 us", "put p99 us"]
    out = []
    prev = None
    for r in rows:
        # marginal: extra time per extra frame from the previous N (fixed costs such as pool start,
        # final flush and finalize cancel out)
        marginal = ((r["seconds"] - prev["seconds"]) / (r["frames"] - prev["frames"]) * 1e6
                    if prev else None)
        prev = r
        out.append([f"{r['frames']:,}", fmt(r["raw_bytes"] / 1e9, ".3f"), fmt(r["seconds"], ".3f"),
                    fmt(r["us_per_frame"], ".2f"),
                    fmt(r["us_per_frame"] / ref["us_per_frame"], ".2f") + "x" if ref else "",
                    fmt(marginal, ".2f"),
                    fmt(r["fps"], ",.0f"), fmt(r["peak_rss"] / MiB, ".0f"), fmt(r["drss"] / MiB, ".0f"),
                    f"{r['queue_high_water']:,.0f} / {r['queue_size']:,}",
                    fmt(r["put_p50_us"], ".1f"), fmt(r["put_p99_us"], ".1f")])
    print(fmt_table(headers, out, markdown))


def print_sweep(rows: list[dict], markdown: bool) -> None:
    headers = ["chunk", "frames/chunk", "frames", "emdstream GB/s", "compress-only GB/s",
               "emd/ceiling", "ratio", "peak RSS MiB", "cores", "put p50 us", "put p99 us"]
    out = []
    for r in rows:
        out.append([f"{r['chunk_mib']:g} MiB", str(r["k"]), str(r["frames"]), fmt(r["gbps"], ".3f"),
                    fmt(r["ceiling_gbps"], ".3f"), fmt(r["vs_ceiling"], ".2f") + "x",
                    ratio_text(r["ratio"]), fmt(r["peak_rss"] / MiB, ".0f"), fmt(r["cores"], ".2f"),
                    fmt(r["put_p50_us"], ".1f"), fmt(r["put_p99_us"], ".1f")])
    print(fmt_table(headers, out, markdown))


def print_breakdown(result: dict, markdown: bool) -> None:
    headers = ["thread", "section", "calls", "total s", "% of wall", "us/call"]
    out = [[b["thread"], b["section"], f"{b['calls']:,}", fmt(b["seconds"], ".3f"),
            fmt(100 * b["seconds"] / result["seconds"], ".1f"), fmt(b["us_per_call"], ".1f")]
           for b in result["breakdown"]]
    print(f"emdstream, detector 256x256 bslz4, {result['chunk_frames']} frames/chunk: "
          f"{result['seconds']:.3f} s wall, {result['cpu']:.3f} s CPU "
          f"({result['cpu'] / result['seconds']:.2f} cores)")
    print(fmt_table(headers, out, markdown))


def print_targets(main: list[dict], scaling: list[dict]) -> None:
    lines = []
    by = {(r["case"], r["method"]): r for r in main}
    e = by.get(("detector-256x256-bslz4", "emdstream"))
    if e and "vs_naive" in e:
        lines.append(f"bslz4 256x256 detector: emdstream/naive = {e['vs_naive']:.2f}x (target >= 3.0x) "
                     f"{'OK' if e['vs_naive'] >= 3.0 else 'MISSED'}")
    if e and "vs_ceiling" in e:
        lines.append(f"bslz4 256x256 detector: emdstream/compress-only = {e['vs_ceiling']:.2f}x "
                     f"(target >= 0.85x) {'OK' if e['vs_ceiling'] >= 0.85 else 'MISSED'}")
    for r in main:
        if r["method"] == "emdstream" and r["case"].endswith("-none") and "vs_ceiling" in r:
            lines.append(f"no compression {r['case']}: emdstream/raw-write = {r['vs_ceiling']:.2f}x "
                         f"(target >= 0.9x) {'OK' if r['vs_ceiling'] >= 0.9 else 'MISSED'}")
    s = {r["frames"]: r for r in scaling}
    if 10_000 in s:
        top = max(s)
        if top > 10_000:
            rel = s[top]["us_per_frame"] / s[10_000]["us_per_frame"]
            lines.append(f"scaling: us/frame at {top:,} = {rel:.2f}x of 10,000 (target <= 1.10x) "
                         f"{'OK' if rel <= 1.10 else 'MISSED'}")
    if s:
        lines.append("scaling: peak RSS MiB (dRSS) by frame count: " + ", ".join(
            f"{n:,}: {s[n]['peak_rss'] / MiB:.0f} ({s[n]['drss'] / MiB:.0f})" for n in sorted(s)))
        top = s[max(s)]
        cap = top["queue_size"] * top["frame_bytes"] / MiB
        lines.append(f"scaling: queue capacity {top['queue_size']:,} frames = {cap:.0f} MiB of frames; "
                     f"high water at {max(s):,} frames: {top['queue_high_water']:,.0f} frames")
    if lines:
        print("\nTargets")
        print("\n".join("  " + x for x in lines))


# ------------------------------------------------------------------------------------------------
def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1/8 of the sizes, 1 repeat, scaling up to 1e5")
    p.add_argument("--scaling", action="store_true", help="per-frame cost and RSS vs frame count")
    p.add_argument("--chunk-sweep", action="store_true", help="throughput vs chunk size")
    p.add_argument("--breakdown", action="store_true",
                   help="time per section of the writer's threads (bslz4 256x256 detector)")
    p.add_argument("--all", action="store_true", help="main table, chunk sweep and scaling")
    p.add_argument("--only", action="append", default=[],
                   help="run only cases whose name contains NAME (repeatable), e.g. "
                        "detector-256x256-bslz4, 256x256, /emdstream, scaling-100000, chunk-2MiB")
    p.add_argument("--markdown", action="store_true", help="print Markdown tables")
    p.add_argument("--repeats", type=int, default=None, help="repeats per measurement (default 3; --quick 1)")
    p.add_argument("--scaling-max", type=float, default=None,
                   help="largest frame count for --scaling (default 1e6; --quick 1e5)")
    p.add_argument("--dir", default=None, help="where to write files (default: a new dir in /tmp)")
    p.add_argument("--json", default=None, help="also write all results to this JSON file")
    p.add_argument("--in-process", action="store_true",
                   help="measure in this process (for profilers; peak RSS is then not per case)")
    p.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    harness.quick_or_full(args, divide=False)
    top = args.scaling_max or (1e5 if args.quick else 1e6)
    args.scaling_ns = [n for n in SCALING_NS if n <= top]
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if harness.run_child(args, RUNNERS):
        return 0
    do_main = args.all or not (args.scaling or args.chunk_sweep or args.breakdown)
    bench = harness.Bench(args, __file__, RUNNERS)
    try:
        fence = "```\n" if args.markdown else ""
        print(fence + machine_info(bench.tmpdir))
        print(f"repeats: {args.repeats} (median reported), frame bank: {BANK_FRAMES} distinct "
              f"frames cycled, GB = 1e9 bytes, ratio = raw / stored bytes\n{fence}", flush=True)
        t0 = time.perf_counter()
        main_rows, scaling_rows, sweep_rows = [], [], []
        if do_main:
            main_rows = run_main(bench)
            print("Write throughput (uint16 frames; ceiling = compress-only for compressed cases, "
                  "raw-write for none)")
            print_main(main_rows, args.markdown)
            print(flush=True)
        if args.chunk_sweep or args.all:
            sweep_rows = run_sweep(bench)
            print("Chunk-size sweep: detector 256x256 uint16, bslz4, emdstream vs compress-only "
                  "at the same chunk size")
            print_sweep(sweep_rows, args.markdown)
            print(flush=True)
        if args.scaling or args.all:
            scaling_rows = run_scaling(bench)
            print("Scaling: detector 64x64 uint16, bslz4, open-ended writer, default queue and chunks")
            print_scaling(scaling_rows, args.markdown)
            print(flush=True)
        if args.breakdown:
            result = run_breakdown(bench)
            print_breakdown(result, args.markdown)
            print(flush=True)
        print_targets(main_rows, scaling_rows)
        print(f"\ntotal benchmark time {time.perf_counter() - t0:.0f} s")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(dict(info=machine_info(bench.tmpdir), results=bench.results), f, indent=1)
    finally:
        bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
