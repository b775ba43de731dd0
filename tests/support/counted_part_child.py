"""Part 1 of 3 of a counted scan, in its own process, for the master test
(tests/parallel/test_master_counted.py).

usage: python counted_part_child.py PATH
Puts its first 5 slots (slot s: ``counted.events_of(s)`` with counts s % 5 + 1), waits until the
writer counts them durable, prints "ready", waits for a line on stdin, then puts the rest and
closes. The scan: (4, 6), blocks of 5.
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from emdstream import Acquisition, CountedStream  # noqa: E402
from emdstream.format.parts import Part  # noqa: E402
from support.counted import SHAPE, events_of  # noqa: E402

SCAN, BLOCK, PARTS, RANK = (4, 6), 5, 3, 1


def main() -> None:
    with Acquisition(sys.argv[1], [CountedStream("e", SHAPE)], scan_shape=SCAN,
                     part=(RANK, PARTS), block_frames=BLOCK, flush_seconds=0.02) as acq:
        mine = Part(RANK, PARTS, BLOCK).slots(SCAN[0] * SCAN[1])
        for at, slot in enumerate(mine):
            if at == 5:
                while acq["e"].frames_written < 5:
                    time.sleep(0.01)
                print("ready", flush=True)
                sys.stdin.readline()
            idx = events_of(int(slot))
            acq["e"].put_events(idx, counts=np.full(idx.size, slot % 5 + 1, np.uint16))


if __name__ == "__main__":
    main()
