"""File size of a slow stream (frames slower than one chunk per flush interval) by chunk_frames.

Each flush rewrites the partly filled chunk, and each rewrite leaves the chunk's older copy as
dead space in the file. Run: python benchmarks/slow_stream_size.py
"""
import os
import tempfile
import time

import numpy as np

import emdstream

FRAMES, FPS = 32, 5
rng = np.random.default_rng(0)
frames = [rng.poisson(3, (256, 256)).astype(np.uint16) for _ in range(FRAMES)]
print(f"{FRAMES} frames of 256x256 uint16, bslz4, flush every 1 s")
print(f"{'case':<28} {'file MB':>8} {'chunks stored MB':>17}")
with tempfile.TemporaryDirectory() as tmp:
    for label, fps, chunk_frames in ((f"{FPS} fps, default chunks", FPS, None),
                                     (f"{FPS} fps, chunk_frames={FPS}", FPS, FPS),
                                     (f"{FPS} fps, chunk_frames=1", FPS, 1),
                                     ("all at once, default chunks", None, None)):
        path = os.path.join(tmp, "slow.emd")
        with emdstream.EMDWriter(path, (256, 256), "uint16", chunk_frames=chunk_frames,
                                 overwrite=True) as w:
            for frame in frames:
                w.put(frame)
                if fps:
                    time.sleep(1 / fps)
        with emdstream.open(path) as f:
            stored = f["dataset_1"].data.id.get_storage_size()
        print(f"{label:<28} {os.path.getsize(path) / 1e6:>8.2f} {stored / 1e6:>17.2f}")
