"""A producer for the close/recover kill campaigns: an acquisition of two streams whose close()
takes long (many comments to finalize), printing what it knows at each step.

usage: python close_child.py PATH N_COMMENTS [stop]   |   python close_child.py PATH slow
Prints ``started``, then ``closing D`` (D: frames the file records as durable before close) and
``closed N`` after close(); with ``stop`` it sleeps after putting the frames instead of closing
(the parent kills it: a file for ``recover``).
"""
import signal
import sys
import time

import numpy as np

from emdstream import Acquisition, EMDWriter, Stream

N_FRAMES = 120
SHAPE = (16, 16)


def frame(i: int) -> np.ndarray:
    return np.full(SHAPE, i, np.uint16) + np.arange(SHAPE[1], dtype=np.uint16)


def slow_frames() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.poisson(3, (40, 128, 128)).astype(np.uint16) + np.arange(40, dtype=np.uint16)[:, None, None]


def slow_stream(path: str) -> None:
    """Frames slower than a chunk per flush: partial chunks rewritten, so close() compacts."""
    w = EMDWriter(path, (128, 128), "uint16", flush_seconds=0.005, overwrite=True)
    print("started", flush=True)
    for frame in slow_frames():
        w.put(frame)
        time.sleep(0.004)
    time.sleep(0.05)
    print("closing", w.frames_written, flush=True)
    w.close()
    print("closed", w.frames_written, flush=True)


def main() -> None:
    # Ctrl-C as in a terminal, even when the tests run in a background job (which starts every
    # child with SIGINT ignored, and then no KeyboardInterrupt ever reaches close())
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if sys.argv[2] == "slow":
        return slow_stream(sys.argv[1])
    path, n_comments = sys.argv[1], int(sys.argv[2])
    acq = Acquisition(path, [Stream("frames", SHAPE, "uint16", chunk_frames=8),
                             Stream("haadf", (), "float32", chunk_frames=8)],
                      scan_shape=(12, 10), flush_seconds=0.05, overwrite=True)
    print("started", flush=True)
    for i in range(N_FRAMES):
        acq["frames"].put(frame(i), z=i * 0.5)
        acq["haadf"].put(float(i))
    for i in range(n_comments):
        acq.comment(f"event {i}: " + "x" * 40)
    if sys.argv[3:] == ["stop"]:
        time.sleep(0.3)  # two flushes: the frames and comments are durable
        print("durable", acq["frames"].frames_written, flush=True)
        time.sleep(60)
    interrupted, announced = False, False
    while True:  # Ctrl-C inside close(): the interrupt reaches us, and close() again finishes
        try:
            if not announced:
                print("closing", acq["frames"].frames_written, flush=True)
                announced = True
            acq.close()
            # a SIGINT after close() returned is not one inside it: ignored (one landing before
            # this line is caught below, and close() again returns at once)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            break
        except KeyboardInterrupt:
            interrupted = True
    if interrupted:
        print("interrupted", flush=True)
    print("closed", acq["frames"].frames_written, flush=True)


if __name__ == "__main__":
    main()
