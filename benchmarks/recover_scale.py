"""``recover`` at scale: a writer of N one-frame chunks killed (SIGKILL), HDF5's metadata then
destroyed (every byte zeroed but the chunks the log names), so ``recover`` rebuilds the file from
the chunk log alone; its time and peak memory, for this checkout and any others given.

    python benchmarks/recover_scale.py [--chunks 200000] [--rounds 2] [OTHER_CHECKOUT ...]

Each recover runs in a fresh interpreter on a fresh copy of the same killed file, the checkouts
interleaved round by round; the file is written once, by this checkout.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from harness import _paths  # noqa: F401  (this checkout's src first)

from emdstream.safety import chunklog

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WRITER = """
import os, sys, time, numpy as np, emdstream
n = int(sys.argv[2])
w = emdstream.EMDWriter(sys.argv[1], (16, 16), "uint16", chunk_frames=1, flush_seconds=0.5)
frame = np.zeros((16, 16), np.uint16)
for i in range(n):
    frame[0, 0] = i % 60000
    w.put(frame, z=float(i))
while w.frames_written < n:
    time.sleep(0.05)
time.sleep(0.6)
os._exit(9)
"""
RECOVER = """
import resource, sys, time, emdstream
t = time.perf_counter()
report = emdstream.recover(sys.argv[1])
print(sum(report.frames_written.values()), time.perf_counter() - t,
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def killed_file(folder: str, n: int) -> str:
    path = os.path.join(folder, "killed.emd")
    env = {**os.environ, "PYTHONPATH": os.path.join(HERE, "src")}
    subprocess.run([sys.executable, "-c", WRITER, path, str(n)], env=env, check=False,
                   timeout=3600)
    log = chunklog.read(path)
    keep = np.zeros(os.path.getsize(path), dtype=bool)
    for dataset in ("data", "values"):
        rows = log.chunks.rows("dataset_1", dataset)
        for offset, size in rows[:, -7:-5].tolist():
            keep[offset:offset + size] = True
    keep[log.token_at:log.token_at + len(log.token)] = True
    data = np.fromfile(path, dtype=np.uint8)
    data[~keep] = 0
    data.tofile(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("others", nargs="*", help="other checkouts to compare (their src/ is used)")
    args = ap.parse_args()
    checkouts = [HERE] + [os.path.abspath(c) for c in args.others]
    with tempfile.TemporaryDirectory() as folder:
        path = killed_file(folder, args.chunks)
        print(f"{args.chunks} one-frame chunks; file {os.path.getsize(path) / 1e6:.1f} MB, log "
              f"{os.path.getsize(chunklog.log_path(path)) / 1e6:.1f} MB")
        print("checkout | frames recovered | seconds | peak RSS MiB")
        for _ in range(args.rounds):
            for checkout in checkouts:
                copy = os.path.join(folder, "copy.emd")
                shutil.copy(path, copy)
                shutil.copy(chunklog.log_path(path), chunklog.log_path(copy))
                out = subprocess.run([sys.executable, "-c", RECOVER, copy], capture_output=True,
                                     text=True, env={**os.environ, "PYTHONPATH":
                                                     os.path.join(checkout, "src")})
                if out.returncode:
                    print(checkout, "failed:", out.stderr[-500:])
                    continue
                frames, seconds, peak = out.stdout.split()
                print(f"{checkout} | {frames} | {float(seconds):.1f} | {peak}")


if __name__ == "__main__":
    main()
