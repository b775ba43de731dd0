"""A deterministic counted-stream producer for the crash campaigns (kill at syscall boundaries,
power cuts): ``tests/safety/test_counted_crash_states.py``.

usage: python counted_crash_workload.py PATH FSYNC [END]
An Acquisition of a counted stream ``electrons`` (a 5x8 scan, small event chunks so that chunks
fill, and partly filled ones are written again, between flushes) and a per-position scalar
``haadf`` (``crash_workload``'s values: ``STREAMS["counted"]`` there, so its checker applies).
Slot s holds ``counted.events_of(s)`` with counts ``weight(s)`` and the per-frame value x = s;
slots are put one at a time and in CSR blocks. Flushes are count-based (``flush_frames``), waited
for, so a run is the same every time. END: "close" (default) or "kill" (SIGKILLs itself after the
last durable count: a file for ``recover``).

stdout: ``durable STREAM N`` each time a stream's ``frames_written`` grows (the protocol of
``crash_workload.py``: ``crashkill.durable_from`` and ``crashsim``'s marks read it).
"""
from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import emdstream  # noqa: E402
from support.counted import SHAPE, events_of  # noqa: E402
from support.crash_workload import _speed_up_polling, value  # noqa: E402

SCAN = (5, 8)
SLOTS = 37          # fewer than the scan: close() finishes a scan stopped early
FLUSH_FRAMES = 4
CHUNK_EVENTS = 96   # events of a slot: 0..59, so a chunk fills every few slots


def weight(slot: int) -> int:
    return slot % 6 + 1


def counts_of(slots) -> np.ndarray:
    return np.repeat([weight(s) for s in slots], [events_of(s).size for s in slots]).astype(np.uint16)


def main() -> None:
    path, fsync = sys.argv[1], sys.argv[2] == "1"
    end = sys.argv[3] if len(sys.argv) > 3 else "close"
    _speed_up_polling()
    streams = [emdstream.CountedStream("electrons", SHAPE, chunk_events=CHUNK_EVENTS, chunk_frames=8),
               emdstream.Stream("haadf", (), "float32", chunk_frames=8)]
    acq = emdstream.Acquisition(path, streams, scan_shape=SCAN, flush_frames=FLUSH_FRAMES,
                                flush_seconds=None, workers=1, fsync=fsync, overwrite=True)
    writers = dict(acq.streams)
    reported = {name: 0 for name in writers}

    def report(closed: bool = False) -> None:
        for name, w in writers.items():
            if w.frames_written > reported[name]:
                reported[name] = w.frames_written
                os.write(1, f"durable {name} {reported[name]}\n".encode())
        if closed:
            os.write(1, b"closed\n")

    slot = 0
    while slot < SLOTS:
        block = list(range(slot, min(SLOTS, slot + (1 if slot % 10 < 5 else 3))))
        if len(block) == 1:
            acq["electrons"].put_events(events_of(slot), counts=counts_of(block), x=float(slot))
        else:
            lists = [events_of(s) for s in block]
            indptr = np.concatenate([[0], np.cumsum([x.size for x in lists])])
            acq["electrons"].put_csr(indptr, np.concatenate(lists), counts=counts_of(block),
                                     x=np.asarray(block, float))
        scalars = np.asarray([value("haadf", s) for s in block])  # crash_workload's values
        acq["haadf"].put_many(scalars.astype(np.float32), z=scalars)
        slot = block[-1] + 1
        deadline = time.monotonic() + 5  # wait for a due count-based flush: deterministic
        while time.monotonic() < deadline and any(
                slot - w.frames_written >= FLUSH_FRAMES for w in writers.values()):
            time.sleep(0.001)
        report()
    if end == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    acq.close()
    report(closed=True)


if __name__ == "__main__":
    main()
