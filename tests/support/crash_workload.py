"""A deterministic producer for the crash campaigns (kill at syscall boundaries, power cuts).

usage: python crash_workload.py PATH KIND FSYNC [END]
KIND: "writer" (one EMDWriter stream, a 6x8 scan), "acq" (an Acquisition of three streams: a
scan of frames, a per-position scalar, an open-ended stack) or "detector" (two streams of frames
that come compressed, ``put_compressed``: gathered into chunks of 8, and one chunk each, so the
producer writes chunks itself while the writer thread idles). Flushes are count-based
(``flush_frames``); frames carry per-frame values and the producer adds comments.
END: "close" (default; ends with close()) or "kill" (SIGKILLs itself after the last durable
count: a file for ``recover``).

stdout: ``durable STREAM N`` each time a stream's ``frames_written`` grows: the writer counted
N frames durable before the line was written, so a crash after it must keep them.
"""
from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np

import emdstream
from emdstream.encoders import BitshuffleLZ4

FLUSH_FRAMES = 3


def frame(stream: str, i: int, shape: tuple[int, ...]) -> np.ndarray:
    """Frame ``i`` of a stream: noisy (compressible, not trivially) and unique per index."""
    rng = np.random.default_rng([i, len(stream)])
    return (rng.poisson(4, shape) + i).astype(np.uint16)


def value(stream: str, i: int) -> float:
    return i * 0.5 + len(stream)


# name -> (frame shape, frames put, Stream kwargs)
STREAMS = {
    "writer": {"dataset_1": ((16, 16), 36, {})},
    "acq": {"frames": ((16, 16), 30, {}),
            "haadf": ((), 30, {"dtype": "float32"}),
            "spectra": ((32,), 20, {"open_ended": True, "chunk_frames": 4})},
    "detector": {"frames": ((64, 64), 30, {}),  # 8 KiB: whole bslz4 blocks, gathered
                 "k1": ((32, 32), 20, {"chunk_frames": 1})},
    # the dense stream beside the counted one of counted_crash_workload.py (its own producer;
    # counted_crash_check.py checks the events)
    "counted": {"haadf": ((), 37, {"dtype": "float32"})},
}
SCAN = (6, 8)
# slots dropped on purpose: each is put through frame_buffer, left with an exception (the slot
# counts as dropped, its frame holds the fill value), so every crash state also tests the drop
# accounting (the state's dropped slots, the chunk log's runs, salvage)
DROPPED = {"acq": {"frames": frozenset({9, 10, 17})}}


def dropped(kind: str, stream: str) -> frozenset[int]:
    return DROPPED.get(kind, {}).get(stream, frozenset())


def kept(kind: str, stream: str, slots: int) -> int:
    """Frames written among the first ``slots`` slots."""
    return slots - sum(1 for s in dropped(kind, stream) if s < slots)


def expected(kind: str, stream: str, i: int) -> np.ndarray:
    shape = STREAMS[kind][stream][0]
    if shape == ():
        return np.float32(value(stream, i))
    return frame(stream, i, shape)


def _speed_up_polling() -> None:
    """Test-only: look for due count-based flushes every 2 ms instead of 50 ms."""
    for name in ("emdstream.write.writer_thread", "emdstream.writer_thread"):
        try:
            module = __import__(name, fromlist=["_FRAME_POLL"])
        except ImportError:
            continue
        module._FRAME_POLL = 0.002
        return


class _LinkLost(Exception):
    pass


def _drop(writer) -> None:
    try:
        with writer.frame_buffer() as buf:
            buf[...] = 0  # part of a frame came, then the link broke
            raise _LinkLost
    except _LinkLost:
        pass


def main() -> None:
    path, kind, fsync = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    end = sys.argv[4] if len(sys.argv) > 4 else "close"
    _speed_up_polling()
    specs = STREAMS[kind]
    common = dict(flush_frames=FLUSH_FRAMES, flush_seconds=None, workers=1, fsync=fsync,
                  overwrite=True)
    if kind == "writer":
        acq = emdstream.EMDWriter(path, (16, 16), "uint16", scan_shape=SCAN, chunk_frames=8,
                                  **common)
        writers = {"dataset_1": acq._stream}
    else:
        streams = [emdstream.Stream(name, shape, **{"chunk_frames": 8, **kw})
                   for name, (shape, _, kw) in specs.items()]
        acq = emdstream.Acquisition(path, streams, scan_shape=SCAN, **common)
        writers = dict(acq.streams)
    reported = {name: 0 for name in specs}

    def report() -> None:
        for name, w in writers.items():
            n = w.frames_written
            if n > reported[name]:
                reported[name] = n
                os.write(1, f"durable {name} {n}\n".encode())

    total = max(n for _, n, _ in specs.values())
    for i in range(total):
        for name, (_, n, _) in specs.items():
            if i < n and i in dropped(kind, name):
                _drop(writers[name])
            elif i < n and kind == "detector":  # as a detector sends it: compressed
                writers[name].put_compressed(BitshuffleLZ4().encode(expected(kind, name, i)),
                                             z=value(name, i))
            elif i < n:
                writers[name].put(expected(kind, name, i), z=value(name, i))
        if i % 7 == 3:
            acq.comment(f"event {i}")
        if i % FLUSH_FRAMES == FLUSH_FRAMES - 1:  # wait for the count-based flush: deterministic
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and any(
                    w.frames_written < kept(kind, name, min(i + 1, specs[name][1]))
                    for name, w in writers.items()):
                time.sleep(0.001)
        report()
    if end == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    acq.close()
    report()
    os.write(1, b"closed\n")


if __name__ == "__main__":
    main()
