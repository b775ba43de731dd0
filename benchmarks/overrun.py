"""A long overrun: a producer far faster than the writer, ``on_full="drop"``.

What a detector that outruns the disk sees over time: the longest ``put`` (a dropping put must
stay short however many frames were dropped before) and the process's memory, every sixth of the
run, then the close. The writer is made slow on purpose (gzip, one compression thread, 32x32
frames, a queue of 64 frames), so nearly every frame is dropped.

    python benchmarks/overrun.py [--frames 6000000]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import psutil
from harness import _paths  # noqa: F401  (this checkout's src first)

from emdstream import EMDWriter


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=6_000_000)
    args = ap.parse_args()
    n, process = args.frames, psutil.Process()
    frame = np.random.default_rng(0).integers(0, 50, (32, 32), dtype=np.uint16)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "overrun.emd")
        w = EMDWriter(path, (32, 32), "uint16", compression="gzip", on_full="drop",
                      queue_frames=64, workers=1)
        print("frames put | dropped | written | longest put ms | RSS MiB | seconds")
        last, longest = time.perf_counter(), 0.0
        for i in range(n):
            t = time.perf_counter()
            w.put(frame)
            longest = max(longest, time.perf_counter() - t)
            if (i + 1) % (n // 6) == 0:
                now = time.perf_counter()
                print(f"{i + 1} | {w.frames_dropped} | {w.frames_written} | {longest * 1e3:.1f} | "
                      f"{process.memory_info().rss / 2**20:.0f} | {now - last:.1f}", flush=True)
                last, longest = now, 0.0
        t = time.perf_counter()
        w.close()
        print(f"close {time.perf_counter() - t:.1f} s; file {os.path.getsize(path) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
