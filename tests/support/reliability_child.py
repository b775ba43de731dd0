"""A producer process for the crash and fault tests: streams frames until killed or failing.

usage: python reliability_child.py PATH MODE [options as key=value]
MODE: "scan" (pre-allocated 4-D), "stack" (n_frames), "open" (open-ended).
Frame i is ``expected_frame(i)``, so a test can check every stored frame.

stdout: "started" once the writer exists; "put N" every 100 frames; "durable N" every 50 frames,
N being ``writer.frames_written`` (frames the file already records as durable), so a test that
kills this process knows a lower bound of what the file must keep.
"""
import resource
import signal
import sys
import time

import numpy as np

from emdstream import EMDWriter

SHAPE = (32, 32)
_BANK = np.random.default_rng(7).poisson(5, (16,) + SHAPE).astype(np.uint16)


def expected_frame(i: int) -> np.ndarray:
    return _BANK[i % 16] + np.uint16(i // 16 % 1000)


def main() -> None:
    path, mode = sys.argv[1], sys.argv[2]
    opts = dict(a.split("=", 1) for a in sys.argv[3:])
    if "fsize" in opts:  # a real file-size limit; EFBIG instead of death by SIGXFSZ
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        limit = int(opts["fsize"])
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    kw = dict(compression=opts.get("compression", "bslz4"), chunk_frames=int(opts.get("chunk", 8)),
              flush_seconds=float(opts.get("flush", 0.05)), overwrite=True)
    if mode == "scan":
        kw["scan_shape"] = (400, 50)
    elif mode == "stack":
        kw["n_frames"] = 20000
    total = 20000 if mode != "open" else int(opts.get("frames", 10**9))
    writer = EMDWriter(path, SHAPE, "uint16", **kw)
    print("started", flush=True)
    delay = float(opts.get("delay", 0.0005))
    try:
        for i in range(total):
            writer.put(expected_frame(i))
            if delay:
                time.sleep(delay)
            if i % 100 == 0:
                print(f"put {i + 1}", flush=True)
            if i % 50 == 0:
                print(f"durable {writer.frames_written}", flush=True)
        if opts.get("close", "yes") == "yes":
            writer.close()
    except Exception as exc:
        print(f"ERROR {type(exc).__name__}: {exc}", flush=True)
        try:
            writer.close()
        except Exception as exc2:
            print(f"CLOSE-ERROR {type(exc2).__name__}: {exc2}", flush=True)
        print(f"WRITTEN {writer.frames_written}", flush=True)
        sys.exit(3)
    print(f"WRITTEN {writer.frames_written}", flush=True)


if __name__ == "__main__":
    main()
