"""Counted streams: events put per frame (put_events) or per block (put_csr), read back as CSR,
dense frames, counts image and summed pattern; per-frame values; bad input refused before
anything is taken; on_full; open-ended and n_frames streams; live reading."""
import threading
import time

import h5py
import numpy as np
import pytest
from support.counted import SHAPE, check_events, csr_of, events_of

import emdstream
from emdstream import Acquisition, CountedStream, Stream
from emdstream.errors import QueueFullError, WriterFullError
from emdstream.tools.verify import verify

SCAN = (6, 10)
N = SCAN[0] * SCAN[1]


def write_scan(path, counts=False, **kw):
    with Acquisition(path, scan_shape=SCAN, streams=[CountedStream("electrons", frame_shape=SHAPE),
                                                     Stream("haadf", (), "float32")], **kw) as acq:
        ev = acq["electrons"]
        for slot in range(N // 2):  # one frame at a time
            idx = events_of(slot)
            extra = {"counts": np.full(idx.size, 2, np.uint16)} if counts else {}
            assert ev.put_events(idx, stage_x=float(slot), **extra)
            acq["haadf"].put(float(slot))
        indptr, indices = csr_of(range(N // 2, N))  # the rest as one block
        extra = {"counts": np.full(indices.size, 2, np.uint8)} if counts else {}
        assert ev.put_csr(indptr, indices, stage_x=np.arange(N // 2, N, dtype=float), **extra) == N // 2
        acq["haadf"].put_many(np.arange(N // 2, N, dtype=np.float32))


def summed(slots, weight=1):
    return weight * np.bincount(np.concatenate([events_of(s) for s in slots]),
                                minlength=SHAPE[0] * SHAPE[1]).reshape(SHAPE)


def test_round_trip_csr_frames_values_and_summaries(tmp_path):
    path = str(tmp_path / "c.emd")
    write_scan(path)
    f = emdstream.open(path)
    e = f["electrons"]
    assert e.frames_written == N and e.complete and e.frame_shape == SHAPE
    check_events(e, N)
    assert e.csr().shape == (N, SHAPE[0] * SHAPE[1])
    assert np.array_equal(e.values["stage_x"].reshape(-1), np.arange(N))
    assert np.all(np.diff(e.values["timestamp"].reshape(-1)) >= 0)
    for slot in (0, 7, N // 2, N - 1):
        assert np.array_equal(e.frame(slot), summed([slot]))
    assert np.array_equal(e.csr(3, 9).toarray()[2], summed([5]).reshape(-1))
    assert e.counts_image.shape == SCAN
    assert np.array_equal(e.summed_pattern, summed(range(N)))
    total = f["summed_electrons"]
    assert total.data.shape == SHAPE and np.array_equal(total.data[()], summed(range(N)))
    with h5py.File(path, "r") as h5:  # the layout of docs/counted.md
        events = h5["data/electrons/events"]
        assert events["indptr"].dtype == np.int64 and events["indptr"].shape == (N + 1,)
        assert events["indices"].dtype == np.uint32 and "counts" not in events
        assert events["indices"].chunks
        assert events["indices"].id.get_create_plist().get_nfilters() == 1
        assert h5["data/electrons/data"].dtype == np.uint32
        assert h5["data/electrons"].attrs["emdstream_profile"] == "counted"


def test_counts_are_kept_and_weight_the_summaries(tmp_path):
    path = str(tmp_path / "c.emd")
    write_scan(path, counts=True)
    e = emdstream.open(path)["electrons"]
    assert e.has_counts
    assert np.array_equal(e.frame(3), summed([3], 2))
    assert np.array_equal(e.summed_pattern, summed(range(N), 2))
    assert e.csr().data.dtype == np.uint16 and set(np.unique(e.csr().data)) <= {2}


def test_counts_fixed_by_first_put(tmp_path):
    path = str(tmp_path / "c.emd")
    with Acquisition(path, [CountedStream("e", SHAPE, n_frames=3)]) as acq:
        acq["e"].put_events([1, 2], counts=[5, 6])
        acq["e"].put_events([3])  # no counts: each counts 1
        acq["e"].put_events([])
    e = emdstream.open(path)["e"]
    assert e.csr().toarray()[:, :4].tolist() == [[0, 5, 6, 0], [0, 0, 0, 1], [0, 0, 0, 0]]
    with Acquisition(str(tmp_path / "d.emd"), [CountedStream("e", SHAPE, n_frames=2)]) as acq:
        acq["e"].put_events([1])
        with pytest.raises(ValueError, match="first put gave no counts"):
            acq["e"].put_events([1], counts=[2])
        assert acq["e"].frames_put == 1


@pytest.mark.parametrize("call, error, message", [
    (lambda s: s.put_events([0, SHAPE[0] * SHAPE[1]]), ValueError, "outside"),
    (lambda s: s.put_events(np.array([-1, 3])), ValueError, "negative"),
    (lambda s: s.put_events(np.array([1.0, 2.0])), TypeError, "integer dtype"),
    (lambda s: s.put_events(np.zeros((2, 2), int)), ValueError, "1-D"),
    (lambda s: s.put_events([1, 2], counts=[1]), ValueError, "one per index"),
    (lambda s: s.put_events([1, 2], counts=[1, 70000]), ValueError, "do not fit"),
    (lambda s: s.put_csr([1, 2], [0, 1]), ValueError, "start at 0"),
    (lambda s: s.put_csr([0, 2, 1], [0, 1]), ValueError, "not decrease"),
    (lambda s: s.put_csr([0, 1, 3], [0, 1]), ValueError, "len\\(indices\\)"),
    (lambda s: s.put_csr([0.0, 1.0], [0]), TypeError, "indptr"),
    (lambda s: s.put_csr([0, 1, 2], [0, 1], counts=[1, 2, 3]), ValueError, "one per index"),
    (lambda s: s.put_csr([0, 1, 2], [0, 1], stage=[1.0]), ValueError, "stage"),
    (lambda s: s.put(np.zeros(SHAPE)), TypeError, "counted stream"),
])
def test_bad_input_is_refused_before_anything_is_taken(tmp_path, call, error, message):
    path = str(tmp_path / "bad.emd")
    with Acquisition(path, [CountedStream("e", SHAPE, open_ended=True)]) as acq:
        s = acq["e"]
        with pytest.raises(error, match=message):
            call(s)
        assert s.frames_put == 0
        s.put_events([4, 5])
    e = emdstream.open(path)["e"]
    assert e.frames_written == 1 and e.csr().indices.tolist() == [4, 5]


def test_open_ended_and_n_frames(tmp_path):
    path = str(tmp_path / "open.emd")
    with Acquisition(path, [CountedStream("e", SHAPE, open_ended=True, chunk_events=64),
                            CountedStream("f", SHAPE, n_frames=5)]) as acq:
        indptr, indices = csr_of(range(300))
        acq["e"].put_csr(indptr, indices)
        for slot in range(5):
            acq["f"].put_events(events_of(slot))
        with pytest.raises(WriterFullError):
            acq["f"].put_events([1])
    f = emdstream.open(path)
    check_events(f["e"], 300)
    check_events(f["f"], 5)
    assert f["e"].counts_image.shape == (300,)
    assert f["e"].dims[0].values.shape == (300,)


def test_on_full_raise_and_drop(tmp_path, monkeypatch):
    from emdstream.write.events import EventQueue

    gate = threading.Event()  # the writer takes no events until it is set
    take = EventQueue.take
    monkeypatch.setattr(EventQueue, "take", lambda self, partials=False:
                        take(self, partials) if gate.is_set() else ([], 0, []))
    for on_full in ("raise", "drop"):
        path = str(tmp_path / f"{on_full}.emd")
        with Acquisition(path, [CountedStream("e", SHAPE, n_frames=6, queue_events=50)],
                         on_full=on_full) as acq:
            s = acq["e"]
            s.put_events(np.arange(40), stage=0.0)  # the names: a dropped put's are checked too
            if on_full == "raise":
                with pytest.raises(QueueFullError):
                    s.put_events(np.arange(20))
                assert s.frames_put == 1
            else:
                assert not s.put_events(np.arange(20), stage=1.0)
                assert s.put_csr([0, 5, 15], np.arange(15), stage=[2.0, 3.0]) == 0
                assert s.frames_dropped == 3
            gate.set()
            deadline = time.monotonic() + 10
            while s.events.pending and time.monotonic() < deadline:
                time.sleep(0.01)
            s.put_events(np.arange(3))
            gate.clear()
            gate.set()
        e = emdstream.open(path)["e"]
        lengths = np.diff(e.csr().indptr).tolist()
        assert lengths == ([40, 3] if on_full == "raise" else [40, 0, 0, 0, 3])
        assert e.frames_dropped == (0 if on_full == "raise" else 3)
        gate.clear()


def test_a_drop_that_ends_a_counts_chunk_completes_it(tmp_path, monkeypatch):
    """A frame dropped for want of event room takes its slot in the counts chunk being filled:
    when it is that chunk's last slot, the chunk is complete and the next frame starts another."""
    from emdstream.write.events import EventQueue

    gate = threading.Event()  # the writer takes no events until it is set
    take = EventQueue.take
    monkeypatch.setattr(EventQueue, "take", lambda self, partials=False:
                        take(self, partials) if gate.is_set() else ([], 0, []))
    path = str(tmp_path / "drop.emd")
    with Acquisition(path, [CountedStream("e", SHAPE, n_frames=6, chunk_frames=2,
                                          queue_events=50)], on_full="drop") as acq:
        s = acq["e"]
        s.put_events(np.arange(40))  # slot 0
        assert not s.put_events(np.arange(20))  # slot 1, the chunk's last: no room, dropped
        gate.set()
        deadline = time.monotonic() + 10
        while s.events.pending and time.monotonic() < deadline:
            time.sleep(0.01)
        assert s.put_events(np.arange(3))  # slot 2: the next chunk
    e = emdstream.open(path)["e"]
    assert np.diff(e.csr().indptr).tolist() == [40, 0, 3]
    assert e.frames_dropped == 1 and list(e.dropped_frames) == [1]


def test_live_reader_sees_committed_events(tmp_path):
    path = str(tmp_path / "live.emd")
    with Acquisition(path, [CountedStream("e", SHAPE, open_ended=True)], flush_frames=10) as acq:
        s = acq["e"]
        indptr, indices = csr_of(range(25))
        s.put_csr(indptr, indices)
        with emdstream.open(path, live=True) as f:
            deadline = 0
            while f["e"].frames_written < 20 and deadline < 200:
                threading.Event().wait(0.02)
                f.refresh()
                deadline += 1
            n = f["e"].frames_written
            assert n >= 20 and not f["e"].complete
            check_events(f["e"], n)
            assert np.array_equal(f["e"].summed_pattern, summed(range(n)))
    check_events(emdstream.open(path)["e"], 25)


def test_many_small_and_large_puts_from_threads_keep_each_call_whole(tmp_path):
    path = str(tmp_path / "threads.emd")
    with Acquisition(path, [CountedStream("e", SHAPE, open_ended=True, chunk_events=128)]) as acq:
        def produce(first):
            for slot in range(first, first + 200):
                acq["e"].put_events(events_of(slot), source=float(first))
        threads = [threading.Thread(target=produce, args=(k * 1000,)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    e = emdstream.open(path)["e"]
    sources = e.values["source"]
    matrix = e.csr()
    for slot in range(600):
        origin = int(sources[slot]) + int(np.sum(sources[:slot] == sources[slot]))
        assert np.array_equal(matrix.indices[matrix.indptr[slot]:matrix.indptr[slot + 1]],
                              events_of(origin))


def test_part_files_hold_their_slots_events_and_the_master_joins_the_counts_image(tmp_path):
    from emdstream.format.parts import Part

    paths, scan = [], (4, 6)
    part_slots = {}
    for rank in range(2):
        path = str(tmp_path / f"part{rank}.emd")
        paths.append(path)
        slots = Part.of((rank, 2), 6).slots(scan[0] * scan[1])
        part_slots[rank] = slots
        with Acquisition(path, [CountedStream("e", SHAPE)], scan_shape=scan, part=(rank, 2),
                         block_frames=6) as acq:
            for slot in slots:  # each part puts the scan slots it holds, in order
                acq["e"].put_events(events_of(int(slot)))
        e = emdstream.open(path)["e"]
        matrix = e.csr()
        for local, slot in enumerate(slots):
            row = matrix.indices[matrix.indptr[local]:matrix.indptr[local + 1]]
            assert np.array_equal(row, events_of(int(slot)))
    emdstream.write_master(str(tmp_path / "master.emd"), paths)
    image = emdstream.open(str(tmp_path / "master.emd"))["e"].data[()]
    assert np.array_equal(image.reshape(-1), [events_of(s).size for s in range(24)])


def test_mixed_acquisition_keeps_the_dense_streams_queue(tmp_path):
    with Acquisition(str(tmp_path / "m.emd"), [CountedStream("e", (576, 576), n_frames=2),
                                                Stream("d", (64, 64), n_frames=2)]) as acq:
        assert acq["d"].queue_size >= 1000  # a 576x576 counted stream costs no dense queue room
        acq["e"].put_events([1])
        acq["d"].put(np.zeros((64, 64), np.uint16))


def test_scan_dims_and_store_raw(tmp_path):
    from emdstream import Dim

    path = str(tmp_path / "dims.emd")
    dims = [Dim("y", "[nm]", scale=0.5), Dim("x", "[nm]", scale=0.25)]
    with Acquisition(path, scan_shape=SCAN, on_full="store_raw",
                     streams=[CountedStream("e", SHAPE, dims=dims)]) as acq:
        indptr, indices = csr_of(range(N))
        acq["e"].put_csr(indptr, indices)
    e = emdstream.open(path)["e"]
    check_events(e, N)
    assert [d.name for d in e.dims] == ["y", "x"] and e.dims[1].values[2] == 0.5
    assert [d.name for d in e.dense_dims] == ["y", "x", "detector_y", "detector_x"]


@pytest.mark.parametrize("counts_dtype", ["uint16", "float32", None])
def test_summed_pattern_added_on_the_pool_threads_is_exact(tmp_path, monkeypatch, counts_dtype):
    """Many small event chunks go through the encoder pool, whose threads each add their chunks'
    events into their own part of the summed pattern; the parts, plus the last partly filled chunk,
    are the summed pattern the writer stores. Finalize's own summing (used after a kill) is
    switched off here, so the file's pattern is the writer's."""
    from emdstream.format import counted as profile

    def not_here(*args, **kwargs):
        raise AssertionError("finalize summed the events: the writer's pattern was not complete")
    monkeypatch.setattr(profile, "summed_pattern", not_here)
    rng = np.random.default_rng(3)
    lengths = rng.poisson(40, 300)
    indices = rng.integers(0, SHAPE[0] * SHAPE[1], int(lengths.sum())).astype(np.uint32)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    weights = None if counts_dtype is None else \
        (rng.integers(1, 9, indices.size) * (1.5 if counts_dtype == "float32" else 1)).astype(counts_dtype)
    path = str(tmp_path / "c.emd")
    with Acquisition(path, [CountedStream("e", SHAPE, open_ended=True, chunk_events=64,
                                          counts_dtype=counts_dtype or "uint16")],
                     workers=4) as acq:  # several threads' parts, whatever the machine's cores
        for first in range(0, 300, 50):  # blocks of 50 slots, each spanning several chunks
            lo, hi = indptr[first], indptr[first + 50]
            acq["e"].put_csr(indptr[first:first + 51] - lo, indices[lo:hi],
                             counts=None if weights is None else weights[lo:hi])
    want = np.bincount(indices, weights, SHAPE[0] * SHAPE[1]).reshape(SHAPE)
    with h5py.File(path, "r") as h5:
        stored = h5["data/summed_e/data"][()]
        assert h5["data/summed_e"].attrs["complete"]
    assert stored.dtype == (np.float64 if counts_dtype == "float32" else np.uint64)
    assert np.array_equal(stored, want) and stored.sum() == (indices.size if weights is None
                                                              else weights.astype(float).sum())


def test_big_puts_with_counts_weight_every_chunk_while_the_writer_flushes(tmp_path, monkeypatch):
    """Puts of many chunks each, with counts, while the writer flushes every 10 ms and encoder
    callbacks wake it: each indices chunk reaches the pool with its own counts chunk (its
    weights), never before it, so the summed pattern is exact. (A version that listed each
    indices chunk as soon as it was copied summed some with weight 1.)"""
    from emdstream.format import counted as profile

    def not_here(*args, **kwargs):
        raise AssertionError("finalize summed the events: the writer's pattern was not complete")
    monkeypatch.setattr(profile, "summed_pattern", not_here)
    rng = np.random.default_rng(0)
    per, n_puts = 400_000, 8
    indices = rng.integers(0, SHAPE[0] * SHAPE[1], per).astype(np.uint32)
    counts = rng.integers(1, 9, per).astype(np.uint16)
    path = str(tmp_path / "c.emd")
    with Acquisition(path, [CountedStream("e", SHAPE, open_ended=True, chunk_events=8192)],
                     flush_seconds=0.01, workers=2) as acq:
        for _ in range(n_puts):
            acq["e"].put_csr(np.array([0, per // 2, per]), indices, counts=counts)
    want = n_puts * np.bincount(indices, counts, SHAPE[0] * SHAPE[1]).reshape(SHAPE)
    with h5py.File(path, "r") as h5:
        stored = h5["data/summed_e/data"][()]
        assert np.array_equal(h5["data/e/events/counts"][:per], counts)
    assert np.array_equal(stored, want)


def test_a_refused_first_put_leaves_the_stream_as_it_was(tmp_path):
    """A first put refused for a bad per-frame value does not decide whether the stream has
    counts: the next put, with counts, is taken as a first put."""
    path = str(tmp_path / "refused.emd")
    with Acquisition(path, [CountedStream("e", frame_shape=(4, 4))]) as acq:
        with pytest.raises(TypeError):
            acq["e"].put_events([1, 2], x="not a number")
        assert acq["e"].put_events([1, 2], counts=[3, 4], x=1.0)
    with emdstream.open(path) as f:
        assert f["e"].has_counts and f["e"].frame(0).reshape(-1)[[1, 2]].tolist() == [3, 4]


def test_signed_counts_sum_to_signed_totals(tmp_path):
    path = str(tmp_path / "signed.emd")
    with Acquisition(path, [CountedStream("e", frame_shape=(2, 2), counts_dtype="int16")]) as acq:
        acq["e"].put_events([0, 1], counts=[-3, 2])
        acq["e"].put_events([0], counts=[-4])
    with emdstream.open(path) as f:
        assert f["e"].summed_pattern.reshape(-1).tolist() == [-7, 2, 0, 0]
    assert verify(path) == []


def test_dense_frames_add_up_repeated_events_beyond_the_counts_dtype(tmp_path):
    """The events of a pixel add up in a dense frame; uint8 counts summing to 300 must not wrap."""
    path = str(tmp_path / "sums.emd")
    with Acquisition(path, [CountedStream("e", frame_shape=(2, 2), counts_dtype="uint8")]) as acq:
        acq["e"].put_events([0, 0, 3], counts=[200, 100, 7])
    with emdstream.open(path) as f:
        e = f["e"]
        assert e.frame(0).reshape(-1).tolist() == [300, 0, 0, 7]
        assert e.dense[0].reshape(-1).tolist() == [300, 0, 0, 7]
        assert e.summed_pattern.reshape(-1).tolist() == [300, 0, 0, 7]


def test_counts_a_float_counts_dtype_cannot_hold_exactly_are_refused(tmp_path):
    with Acquisition(str(tmp_path / "f.emd"),
                     [CountedStream("e", frame_shape=(2, 2), counts_dtype="float32")]) as acq:
        with pytest.raises(ValueError, match="do not fit"):
            acq["e"].put_events([0, 1], counts=np.array([2**24 + 1, 2], np.int64))
        assert acq["e"].put_events([0, 1], counts=np.array([2**24, 2], np.int64))
