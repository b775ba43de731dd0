#!/usr/bin/env python
"""Two or more checkouts of emdstream side by side: the same workloads, each measurement in a fresh
interpreter on that checkout's own ``src/``, the checkouts interleaved round by round, medians.

    git worktree add /tmp/before <rev>
    python benchmarks/ab_checkouts.py --rounds 6 /tmp/before .

Workloads (GB/s of raw frames, first put to ``close()`` returning): ``put`` of 12,000 256x256
bslz4 detector frames; an acquisition of the same frames on a scan 96 wide with a HAADF value and
two per-frame values; ``put_many`` of 65,536 64x64 frames in blocks of 256. On a shared 2-core VM
one run of each moves by 5-10 %: use five or more rounds, and trust a difference only when it
repeats.

Each child imports the bank of frames from its own checkout's ``benchmarks/harness``, which puts
that checkout's ``src/`` first on ``sys.path``: a script that imports one checkout's harness
measures that checkout whatever ``PYTHONPATH`` says (the child checks which one it ran).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

CHILD = r'''
import sys, time
checkout = sys.argv[1]
sys.path.insert(0, checkout + "/benchmarks")
import numpy as np
from harness.frames import distinct_chunks, make_bank
import emdstream
from emdstream import Acquisition, EMDWriter, Stream
assert emdstream.__file__.startswith(checkout + "/"), f"measured {emdstream.__file__}, not {checkout}"
path, rates = sys.argv[2], []
bank = make_bank("detector", (256, 256))
n = 12000
for how in ("put", "acquisition"):
    if how == "put":
        w = s = EMDWriter(path, (256, 256), "uint16", n_frames=n, overwrite=True)
    else:
        w = Acquisition(path, [Stream("d", (256, 256)), Stream("h", (), "float32", compression=None)],
                        scan_shape=(n // 96, 96), overwrite=True)
        s, h = w["d"], w["h"]
    t = time.perf_counter()
    for i in range(n):
        if how == "put":
            s.put(bank[i % 64])
        else:
            s.put(bank[i % 64], stage_x=0.5 * i, stage_y=0.25 * i)
            h.put(float(i % 977))
    w.close()
    rates.append(n * bank[0].nbytes / (time.perf_counter() - t) / 1e9)
small = make_bank("detector", (64, 64))
blocks = [np.ascontiguousarray(c) for c in distinct_chunks(small, 256)]
n = 256 * 256
w = EMDWriter(path, (64, 64), "uint16", n_frames=n, overwrite=True)
t = time.perf_counter()
for j in range(n // 256):
    w.put_many(blocks[j % len(blocks)])
w.close()
rates.append(n * small[0].nbytes / (time.perf_counter() - t) / 1e9)
print(" ".join(f"{r:.3f}" for r in rates))
'''
WORKLOADS = ("put 256x256", "acquisition 96 wide", "put_many 64x64")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkouts", nargs="+", help="checkout folders (git worktrees)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dir", default="/tmp", help="where the files go (deleted after)")
    args = ap.parse_args(argv)
    checkouts = [os.path.abspath(c) for c in args.checkouts]
    rates: dict[str, list[list[float]]] = {c: [] for c in checkouts}
    path = os.path.join(args.dir, f"ab-checkouts-{os.getpid()}.emd")
    try:
        for _ in range(args.rounds):
            for c in checkouts:
                out = subprocess.run([sys.executable, "-c", CHILD, c, path], capture_output=True,
                                     text=True)
                if out.returncode:
                    print(f"{c}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
                    return 1
                rates[c].append([float(x) for x in out.stdout.split()])
    finally:
        for p in (path, path + ".emdstream-chunks"):
            if os.path.exists(p):
                os.remove(p)
    print(f"GB/s, medians of {args.rounds} interleaved rounds (all rounds sorted in brackets)")
    for i, name in enumerate(WORKLOADS):
        print(f"{name}:")
        for c in checkouts:
            runs = sorted(r[i] for r in rates[c])
            print(f"  {statistics.median(runs):6.3f}  {c}  [{', '.join(f'{r:.2f}' for r in runs)}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
