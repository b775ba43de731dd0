"""A master file over part files that hold a counted stream: the events of every scan slot, read
through the master in scan order (from the parts themselves), its summed pattern, verify, and a
part still being written in another process."""
import os
import subprocess
import sys

import h5py
import numpy as np
from support.counted import SHAPE, events_of

import emdstream
from emdstream import Acquisition, CountedStream, Stream, write_master
from emdstream.format import counted, layout
from emdstream.format.parts import Part
from emdstream.tools.verify import verify

SCAN = (4, 6)   # 24 slots, rows of 6
BLOCK = 5       # blocks cross the rows; the last block of the scan is short
N = 3


def weight(slot: int) -> int:
    return slot % 5 + 1


def write_part(path: str, rank: int, slots=None, counts=True) -> None:
    """Part ``rank`` of N: its slots' events (with counts), one at a time and as CSR blocks."""
    with Acquisition(path, [CountedStream("e", SHAPE), Stream("haadf", (), "float32")],
                     scan_shape=SCAN, part=(rank, N), block_frames=BLOCK) as acq:
        mine = Part(rank, N, BLOCK).slots(SCAN[0] * SCAN[1])
        mine = mine if slots is None else mine[:slots]
        for at in range(0, mine.size, 3):
            block = mine[at:at + 3]
            lists = [events_of(int(s)) for s in block]
            indptr = np.concatenate([[0], np.cumsum([x.size for x in lists])])
            values = np.concatenate(lists)
            extra = {"counts": np.repeat([weight(int(s)) for s in block],
                                         [x.size for x in lists]).astype(np.uint16)} if counts else {}
            acq["e"].put_csr(indptr, values, x=block.astype(float), **extra)
            acq["haadf"].put_many(block.astype(np.float32))


def expected_rows(slots, counted_slots=None, counts=True):
    counted_slots = set(range(SCAN[0] * SCAN[1])) if counted_slots is None else counted_slots
    return [(events_of(s), np.full(events_of(s).size, weight(s) if counts else 1))
            if s in counted_slots else (np.zeros(0), np.zeros(0)) for s in slots]


def check_master(ds, counted_slots=None, counts=True):
    total = SCAN[0] * SCAN[1]
    matrix = ds.csr()
    assert matrix.shape == (total, SHAPE[0] * SHAPE[1])
    for slot, (indices, weights) in enumerate(expected_rows(range(total), counted_slots, counts)):
        row = slice(matrix.indptr[slot], matrix.indptr[slot + 1])
        assert np.array_equal(matrix.indices[row], indices), f"slot {slot}"
        assert np.array_equal(matrix.data[row], weights), f"slot {slot}"
    for slot in (0, 4, 5, 6, 13, 23):  # first, block ends, a row start, the short last block
        indices, weights = expected_rows([slot], counted_slots, counts)[0]
        want = np.bincount(indices.astype(np.int64), weights, SHAPE[0] * SHAPE[1]).reshape(SHAPE)
        assert np.array_equal(ds.frame(slot), want), f"slot {slot}"
    part = ds.csr(7, 19)  # a range across parts and blocks
    assert np.array_equal(part.toarray(), matrix[7:19].toarray())


def test_master_of_counted_parts_reads_every_slots_events_in_scan_order(tmp_path):
    paths = [str(tmp_path / f"run.part{rank}.emd") for rank in range(N)]
    for rank, path in enumerate(paths):
        write_part(path, rank)
    master = str(tmp_path / "run.emd")
    report = write_master(master, paths)
    assert report.complete
    with emdstream.open(master) as f:
        e = f["e"]
        assert e.counted and e.parts is not None and e.has_counts
        assert e.frame_shape == SHAPE and e.frame_dtype == np.uint32  # uint16 counts add up
        check_master(e)
        everything = np.concatenate([events_of(s) for s in range(24)])
        weights = np.concatenate([np.full(events_of(s).size, weight(s)) for s in range(24)])
        assert e.events_written == everything.size
        want = np.bincount(everything, weights, SHAPE[0] * SHAPE[1]).reshape(SHAPE)
        assert np.array_equal(e.summed_pattern, want)
        assert np.array_equal(e.counts_image.reshape(-1), [events_of(s).size for s in range(24)])
        assert np.array_equal(np.asarray(e.dense[1, 2]), e.frame(8))  # the dense route
        assert e.events_info()["events"] == everything.size
        assert set(f.datasets) == {"e", "haadf", "summed_e"}  # one joined summed pattern
        assert f["summed_e"].complete and np.array_equal(f["summed_e"].data[()], want)
    with h5py.File(master, "r") as h5:  # the parts' events as virtual datasets, in local order
        for rank in range(N):
            sub = h5[f"data/e/events/part{rank}"]
            mine = Part(rank, N, BLOCK).slots(24)
            assert sub.attrs["slots"] == mine.size and sub["indices"].is_virtual
            ptr = sub["indptr"][()]
            for local, slot in enumerate(mine):
                assert np.array_equal(sub["indices"][ptr[local]:ptr[local + 1]], events_of(slot))
        assert counted.MASTER_PARTS_ATTR == layout.MASTER_ATTR
    assert verify(master) == []


def test_master_of_parts_without_counts_and_a_missing_part(tmp_path):
    paths = [str(tmp_path / f"p{rank}.emd") for rank in range(N)]
    for rank in (0, 2):
        write_part(paths[rank], rank, counts=False)
    master = str(tmp_path / "m.emd")
    write_master(master, paths)  # part 1 missing: its slots have no events
    present = set(Part(0, N, BLOCK).slots(24)) | set(Part(2, N, BLOCK).slots(24))
    with emdstream.open(master) as f:
        e = f["e"]
        assert not e.has_counts
        check_master(e, present, counts=False)
        assert not f["summed_e"].complete
    write_part(paths[1], 1, counts=False)  # the part arrives: the same master reads it
    with emdstream.open(master) as f:
        check_master(f["e"], counts=False)


CHILD = os.path.join(os.path.dirname(os.path.dirname(__file__)), "support",
                     "counted_part_child.py")


def test_master_while_a_part_is_written_shows_its_committed_events(tmp_path):
    paths = [str(tmp_path / f"live{rank}.emd") for rank in range(N)]
    for rank in (0, 2):
        with Acquisition(paths[rank], [CountedStream("e", SHAPE)], scan_shape=SCAN,
                         part=(rank, N), block_frames=BLOCK) as acq:
            for slot in Part(rank, N, BLOCK).slots(24):
                idx = events_of(int(slot))
                acq["e"].put_events(idx, counts=np.full(idx.size, weight(int(slot)), np.uint16))
    child = subprocess.Popen([sys.executable, CHILD, paths[1]], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        master = str(tmp_path / "live.emd")
        report = write_master(master, paths)
        assert not report.complete and report.unfinished
        part1 = Part(1, N, BLOCK).slots(24)
        present = set(range(24)) - set(part1[5:])
        with emdstream.open(master, live=True) as f:
            check_master(f["e"], present)
            assert not f["summed_e"].complete
            assert f["summed_e"].data.dtype == np.uint64  # integer counts: as once complete
            assert np.array_equal(f["e"].summed_pattern, np.bincount(
                np.concatenate([events_of(s) for s in sorted(present)]),
                np.concatenate([np.full(events_of(s).size, weight(s)) for s in sorted(present)]),
                SHAPE[0] * SHAPE[1]).reshape(SHAPE))
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.wait(30) == 0, child.stderr.read()
    finally:
        if child.poll() is None:
            child.kill()
    with emdstream.open(master) as f:  # the master, unchanged, now reads the whole part
        check_master(f["e"])
