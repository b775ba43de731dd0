#!/usr/bin/env python
"""Past one machine (issue 11): aggregate throughput of 1 vs 2 part-writer processes and of
write_dask with 1 vs 2 Dask workers.

    python benchmarks/bench_scaling.py                 # both, 3 repeats, median (~1-2 min)
    python benchmarks/bench_scaling.py --only parts    # or --only dask
    python benchmarks/bench_scaling.py --frames 2048 --repeats 1   # quick

Parts: ``P`` processes (spawned, each with the default encoder threads), each
``EMDWriter(..., scan_shape=S, part=(rank, P), block_frames=B)`` putting the frames of its
blocks; all start together at a barrier. Aggregate GB/s = raw frame bytes of the whole scan /
(last close() returned - first put), from the processes' own clocks (same host). Then
``write_master`` joins the parts (its time reported apart). Frames are cycled from a bank of 64
pre-generated detector-like frames (Poisson counts, a bright disk), so generation is not timed.

Dask: ``distributed.LocalCluster(n_workers=W, threads_per_worker=1, processes=True)``, started
before the clock; the array is made on the workers (``map_blocks`` taking frames from a per-worker
bank of 64 frames), compressed there, and written by ``write_dask`` in this process. GB/s = raw
bytes / time of the ``write_dask`` call. Both numbers include writing the file (page cache, no
fsync).

On a 2-core machine the CPUs bound everything: one writer already keeps both cores busy
compressing (see bench_write.py --breakdown), so a second process or worker can at best share
them; the point of the measurement is that splitting costs little, not that it speeds up.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))

FRAME = (256, 256)
BANK = 64


def frame_bank(seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.ogrid[: FRAME[0], : FRAME[1]]
    out = []
    for i in range(BANK):
        cy, cx = FRAME[0] / 2 + rng.normal(0, 3), FRAME[1] / 2 + rng.normal(0, 3)
        disk = ((yy - cy) ** 2 + (xx - cx) ** 2) < (FRAME[0] / 6) ** 2
        out.append(rng.poisson(np.where(disk, 20.0 + i % 7, 0.2)).astype(np.uint16))
    return np.stack(out)


# --- part writers ------------------------------------------------------------------------------------
def _part_writer(rank, n, path, scan, block, barrier, results):
    import numpy as np  # noqa: F401

    from emdstream import EMDWriter
    from emdstream.format.parts import Part

    bank = frame_bank(rank)
    slots = Part(rank, n, block).slots(scan[0] * scan[1])
    w = EMDWriter(path, FRAME, "uint16", scan_shape=scan, part=(rank, n), block_frames=block)
    barrier.wait()
    start = time.time()
    for i in range(slots.size):
        w.put(bank[i % BANK])
    w.close()
    results.put((rank, start, time.time(), w.frames_written))


def run_parts(n: int, scan, block: int, folder: str) -> tuple[float, float]:
    """(aggregate GB/s, write_master seconds) for ``n`` part-writer processes."""
    from emdstream import write_master

    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(n), ctx.Queue()
    paths = [os.path.join(folder, f"run.part{r}.emd") for r in range(n)]
    for p in paths + [os.path.join(folder, "run.emd")]:
        if os.path.exists(p):
            os.remove(p)
    procs = [ctx.Process(target=_part_writer, args=(r, n, paths[r], scan, block, barrier, results))
             for r in range(n)]
    for p in procs:
        p.start()
    got = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode:
            raise RuntimeError(f"part writer exited with {p.exitcode}")
    frames = scan[0] * scan[1]
    assert sum(g[3] for g in got) == frames
    seconds = max(g[2] for g in got) - min(g[1] for g in got)
    t = time.perf_counter()
    write_master(os.path.join(folder, "run.emd"), paths)
    master_s = time.perf_counter() - t
    return frames * FRAME[0] * FRAME[1] * 2 / seconds / 1e9, master_s


# --- Dask workers ------------------------------------------------------------------------------------
def _frames_block(block_info=None):
    """Frames for one block, taken from this worker's bank (made once per worker process: kept
    on the sys module, since this function travels by value to the workers)."""
    import numpy as np

    bank = getattr(sys, "_emdstream_bench_bank", None)
    if bank is None:
        bank = sys._emdstream_bench_bank = frame_bank(os.getpid() % 1000)
    (y0, y1), (x0, x1) = block_info[None]["array-location"][:2]
    idx = (np.arange(y0, y1)[:, None] * 7919 + np.arange(x0, x1)[None, :]) % BANK
    return bank[idx]


def run_dask(workers: int, scan, rows_per_block: int, folder: str, repeats: int) -> list[float]:
    import dask.array as da
    from distributed import Client, LocalCluster

    import emdstream

    shape = tuple(scan) + FRAME
    chunks = ((rows_per_block,) * (scan[0] // rows_per_block), (scan[1],)) + tuple((n,) for n in FRAME)
    out = []
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.wait_for_workers(workers)
        for _ in range(repeats):
            arr = da.map_blocks(_frames_block, dtype="uint16", chunks=chunks,
                                meta=__import__("numpy").empty((0,) * 4, "uint16"))
            assert arr.shape == shape
            path = os.path.join(folder, "sim.emd")
            t = time.perf_counter()
            emdstream.write_dask(arr, path, client=client, overwrite=True)
            seconds = time.perf_counter() - t
            out.append(scan[0] * scan[1] * FRAME[0] * FRAME[1] * 2 / seconds / 1e9)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["parts", "dask"])
    ap.add_argument("--frames", type=int, default=8192, help="scan frames (rows of 64; default "
                    "8192 = 1 GiB of 256x256 uint16)")
    ap.add_argument("--block", type=int, default=100, help="block_frames of the part writers")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    scan = (args.frames // 64, 64)
    print(f"$ python {' '.join(sys.argv)}")
    import dask
    import h5py
    import numpy

    print(f"# {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}, "
          f"numpy {numpy.__version__}, h5py {h5py.__version__} (HDF5 {h5py.version.hdf5_version}), "
          f"dask {dask.__version__}")
    print(f"# scan {scan[0]}x{scan[1]} of {FRAME[0]}x{FRAME[1]} uint16 = "
          f"{scan[0] * scan[1] * FRAME[0] * FRAME[1] * 2 / 2**30:.2f} GiB raw, bslz4, "
          f"median of {args.repeats}")
    folder = tempfile.mkdtemp(prefix="emdstream-scaling-", dir=os.environ.get("BENCH_DIR"))
    try:
        if args.only in (None, "parts"):
            print("\n| part writers | aggregate GB/s (median) | runs | write_master s |")
            print("|---:|---:|---|---:|")
            runs = {1: [], 2: []}
            masters = {1: [], 2: []}
            for _ in range(args.repeats):  # interleaved, so slow phases hit both alike
                for n in (1, 2):
                    gbs, ms = run_parts(n, scan, args.block, folder)
                    runs[n].append(gbs)
                    masters[n].append(ms)
            for n in (1, 2):
                print(f"| {n} | {statistics.median(runs[n]):.2f} | "
                      f"{', '.join(f'{x:.2f}' for x in runs[n])} | "
                      f"{statistics.median(masters[n]):.3f} |")
        if args.only in (None, "dask"):
            print("\n| Dask workers | write_dask GB/s (median) | runs |")
            print("|---:|---:|---|")
            for w in (1, 2):
                r = run_dask(w, scan, 4, folder, args.repeats)
                print(f"| {w} | {statistics.median(r):.2f} | {', '.join(f'{x:.2f}' for x in r)} |")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
