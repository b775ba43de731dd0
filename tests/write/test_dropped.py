"""The dropped slots a flush takes (``write.dropped``): only the new ones, all of them after a slot
is inserted below, and the slots of every chunk the new ones leave entirely dropped."""
import numpy as np
import pytest

from emdstream.format.chunk_grid import ChunkGeometry
from emdstream.write.dropped import DroppedSeen, DroppedSlots

GEOMETRIES = {
    "stack": dict(n_frames=5000, chunk_frames=7),
    "open-ended": dict(chunk_frames=8),
    "scan": dict(scan_shape=(40, 125), chunk_frames=16),
    "scan-3d": dict(scan_shape=(5, 10, 100), chunk_frames=32),
    "one-frame-chunks": dict(chunk_frames=1),
}


def whole_chunks(geometry, dropped, new, assigned):
    """By definition: every slot of each chunk holding a new drop whose slots are all assigned and
    all dropped."""
    out = []
    for chunk in sorted({geometry.locate(int(s))[0] for s in new}):
        first, end = geometry.chunk_slots(chunk)
        end = min(end, geometry.capacity or end)
        if end <= assigned and set(range(first, end)) <= dropped:
            out += range(first, end)
    return out


@pytest.mark.parametrize("name", GEOMETRIES)
@pytest.mark.parametrize("rate", [0.3, 0.9, 0.995])
def test_each_flush_takes_the_new_drops_and_the_chunks_they_complete(name, rate):
    geometry = ChunkGeometry((4, 4), 2, **GEOMETRIES[name])
    rng = np.random.default_rng(int(rate * 1000))
    slots, seen, dropped, done = DroppedSlots(), DroppedSeen(), set(), 0
    for assigned in (1000, 2500, 2501, 4990, 5000):  # slots assigned by each flush
        before = set(dropped)
        for s in range(done, assigned):
            if rng.random() < rate:
                slots.append(s)
                dropped.add(s)
        change = slots.since(seen, geometry, assigned)
        new = sorted(dropped - before)
        assert not change.whole and list(change.slots) == new and change.count == len(dropped)
        assert change.chunkless.tolist() == whole_chunks(geometry, dropped, new, assigned)
        seen, done = change.seen, assigned


def test_a_slot_inserted_below_the_end_makes_the_next_flush_take_them_all():
    geometry = ChunkGeometry((4, 4), 2, chunk_frames=4)
    slots = DroppedSlots()
    for s in (4, 5, 6, 9):
        slots.append(s)
    seen = slots.since(DroppedSeen(), geometry, 10).seen
    slots.insert(7)  # a frame_buffer left with an exception, below later drops
    slots.append(12)
    change = slots.since(seen, geometry, 13)
    assert change.whole and change.first == 0 and list(change.slots) == [4, 5, 6, 7, 9, 12]
    assert change.chunkless.tolist() == [4, 5, 6, 7]  # chunk 4..7 is now dropped whole
    later = slots.since(change.seen, geometry, 13)
    assert not later.whole and list(later.slots) == [] and later.chunkless.size == 0
