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


def whole_chunks(geometry, dropped, new, assigned, in_buffer=frozenset()):
    """By definition: every slot of each chunk holding a new drop whose slots are all assigned
    and all dropped, none of them inside a chunk buffer."""
    out = []
    for chunk in sorted({geometry.locate(int(s))[0] for s in new}):
        first, end = geometry.chunk_slots(chunk)
        end = min(end, geometry.capacity or end)
        slots = set(range(first, end))
        if end <= assigned and slots <= dropped and not slots & in_buffer:
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


@pytest.mark.parametrize("name", GEOMETRIES)
@pytest.mark.parametrize("seed", range(4))
def test_drops_in_and_out_of_chunk_buffers_in_any_order(name, seed):
    """Slots dropped with no buffer (in order) mixed with slots of buffers that fail later (at or
    below, or above, what the last flush took): each flush takes exactly the new ones (all of
    them when one lies at or below the last flush's highest), and the chunkless ones."""
    geometry = ChunkGeometry((4, 4), 2, **GEOMETRIES[name])
    rng = np.random.default_rng(seed)
    slots, seen = DroppedSlots(), DroppedSeen()
    dropped, in_buffer, open_slots, taken, top = set(), set(), [], [], -1
    for assigned in range(1, 5001):
        slot, roll = assigned - 1, rng.random()
        if roll < 0.5:
            slots.append(slot)
            dropped.add(slot)
        elif roll < 0.55:
            open_slots.append(slot)  # a frame_buffer not left yet
        if open_slots and rng.random() < 0.05:  # one fails, any of them
            failed = open_slots.pop(int(rng.integers(len(open_slots))))
            slots.insert(failed)
            dropped.add(failed)
            in_buffer.add(failed)
        if rng.random() < 0.02 or assigned == 5000:  # a flush
            change = slots.since(seen, geometry, assigned)
            new = sorted(dropped - set(taken))
            whole = any(s <= top for s in new)
            assert change.whole == whole
            assert list(change.slots) == (sorted(dropped) if whole else new)
            assert change.chunkless.tolist() == whole_chunks(geometry, dropped, new, assigned,
                                                             in_buffer)
            taken, top, seen = sorted(dropped), max(dropped, default=-1), change.seen


def test_a_chunk_dropped_whole_before_a_failed_buffer_is_chunkless():
    """Slots 0..2 dropped and taken by a flush; then 3 dropped, 4 reserved, 5..7 put, 8 dropped,
    and 4's buffer fails: the next flush takes 3, 4 and 8, and chunk 0..3 (no buffer) is
    chunkless, chunk 4..7 (a buffer) is not."""
    geometry = ChunkGeometry((4, 4), 2, chunk_frames=4)
    slots = DroppedSlots()
    for s in (0, 1, 2):
        slots.append(s)
    seen = slots.since(DroppedSeen(), geometry, 3).seen
    slots.append(3)
    slots.append(8)
    slots.insert(4)
    change = slots.since(seen, geometry, 9)
    assert not change.whole and list(change.slots) == [3, 4, 8]
    assert change.chunkless.tolist() == [0, 1, 2, 3]


def test_a_failed_frame_buffer_of_a_one_frame_chunk_is_not_chunkless():
    """Its chunk is written (fill value, NaN values): its rows are stored by that write."""
    geometry = ChunkGeometry((4, 4), 2, chunk_frames=1)
    slots = DroppedSlots()
    slots.insert(0)
    slots.append(1)
    change = slots.since(DroppedSeen(), geometry, 2)
    assert list(change.slots) == [0, 1] and change.chunkless.tolist() == [1]


def test_a_dropping_put_never_waits_for_a_flush_to_work_out_its_drops(tmp_path, monkeypatch):
    """A flush works out which chunks the new drops leave empty; made slow here (0.3 s each
    time), that work must happen outside the stream's lock: a put that drops meanwhile returns at
    once (it waited for all of it while the work was done under the lock)."""
    import threading
    import time

    from emdstream import EMDWriter

    working = threading.Event()
    real_between, real_bounds = ChunkGeometry.chunks_between, ChunkGeometry.chunk_bounds

    def slowly(real):
        def slow(self, *args):
            working.set()
            time.sleep(0.3)
            return real(self, *args)
        return slow
    monkeypatch.setattr(ChunkGeometry, "chunks_between", slowly(real_between))
    monkeypatch.setattr(ChunkGeometry, "chunk_bounds", slowly(real_bounds))
    w = EMDWriter(str(tmp_path / "overrun.emd"), (32, 32), "uint16", compression="gzip",
                  workers=1, chunk_frames=1, queue_frames=2, on_full="drop", flush_seconds=0.05)
    frame = np.random.default_rng(0).integers(0, 60000, (32, 32)).astype(np.uint16)
    longest, puts_since, deadline = 0.0, 0, time.monotonic() + 10
    while puts_since < 2000 and time.monotonic() < deadline:
        started = working.is_set()  # only puts from the first slow flush on are timed
        t = time.perf_counter()
        w.put(frame)
        if started:
            longest = max(longest, time.perf_counter() - t)
            puts_since += 1
    w.close()
    assert puts_since >= 2000 and w.frames_dropped > 0
    assert longest < 0.15, f"a put waited {longest:.3f} s for the flush's work on the drops"
