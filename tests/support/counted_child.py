"""A counted-stream producer for the kill -9 test: streams events until killed.

usage: python counted_child.py PATH MODE   (MODE "scan": pre-allocated scan; "open": open-ended)
Slot s holds ``counted.events_of(s)`` (with counts s % 7 + 1); slots are put one at a time and in
CSR blocks of 37. stdout: "started", then "durable N" (the writer's ``frames_written``).
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from emdstream import Acquisition, CountedStream, Stream  # noqa: E402
from support.counted import SHAPE, csr_of, events_of  # noqa: E402

SCAN = (200, 150)


def counts_of(indices: np.ndarray, slots) -> np.ndarray:
    lengths = [events_of(s).size for s in slots]
    return np.repeat(np.asarray([s % 7 + 1 for s in slots], np.uint16), lengths)


def main() -> None:
    path, mode = sys.argv[1], sys.argv[2]
    kw = dict(scan_shape=SCAN) if mode == "scan" else {}
    stream = CountedStream("electrons", SHAPE, open_ended=mode != "scan", chunk_events=512)
    acq = Acquisition(path, [stream, Stream("haadf", (), "float32", open_ended=mode != "scan")],
                      flush_seconds=0.05, overwrite=True, **kw)
    print("started", flush=True)
    ev, slot = acq["electrons"], 0
    while slot < SCAN[0] * SCAN[1] - 40:
        if slot % 100 < 50:
            idx = events_of(slot)
            ev.put_events(idx, counts=counts_of(idx, [slot]), x=float(slot))
            acq["haadf"].put(float(slot))
            slot += 1
        else:
            slots = range(slot, slot + 37)
            indptr, indices = csr_of(slots)
            ev.put_csr(indptr, indices, counts=counts_of(indices, slots),
                       x=np.arange(slot, slot + 37, dtype=float))
            acq["haadf"].put_many(np.arange(slot, slot + 37, dtype=np.float32))
            slot += 37
        if slot % 10 == 0:
            print("durable", ev.frames_written, flush=True)
            time.sleep(0.002)
    acq.close()
    print("closed", flush=True)


if __name__ == "__main__":
    main()
