"""EMDWriter's public contract: shapes of the data, put's checks, back-pressure, threads, errors."""
import os
import threading
import time

import h5py
import numpy as np
import pytest
from support.frames import detector_frames, write_frames

import emdstream
from emdstream import EMDWriter, QueueFullError, WriterClosedError, WriterError, WriterFullError

U16MAX = np.iinfo(np.uint16).max


def read_data(path, name="dataset_1"):
    with h5py.File(path, "r") as f:
        return f[f"data/{name}/data"][()]


def group_attrs(path, name="dataset_1"):
    with h5py.File(path, "r") as f:
        return dict(f[f"data/{name}"].attrs)


def comment_texts(path):
    with emdstream.open(path) as e:
        return [t for _, t in e.comments]


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def run_bounded(fn, timeout=15.0):
    """Run fn in a thread; fail (instead of hanging the suite) if it does not return in time."""
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the test
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"{fn} did not return within {timeout} s (hang)"
    if "error" in box:
        raise box["error"]
    return box.get("value")


# --- data shapes --------------------------------------------------------------------------------

def _new_emdstream_threads(before):
    return [t for t in threading.enumerate()
            if t not in before and t.name.startswith("emdstream")]


def test_preallocated_stack(tmp_path):
    path = str(tmp_path / "s.emd")
    before = set(threading.enumerate())
    frames = detector_frames(6, (8, 9))
    w = write_frames(path, frames, n_frames=6, chunk_frames=4)
    assert w.frames_put == 6
    np.testing.assert_array_equal(read_data(path), frames)
    assert int(group_attrs(path)["frames_written"]) == 6
    assert w.frames_written == 6
    for t in _new_emdstream_threads(before):  # writer and compression threads end with close
        t.join(5)
    assert not [t for t in _new_emdstream_threads(before) if t.is_alive()]


@pytest.mark.parametrize("scan_shape,k", [((3, 4), 3), ((3, 5), 2), ((2, 2, 3), 2)])
def test_scan_is_filled_in_c_order(tmp_path, scan_shape, k):
    path = str(tmp_path / "scan.emd")
    n = int(np.prod(scan_shape))
    frames = np.arange(n * 12, dtype=np.uint16).reshape(n, 3, 4)
    write_frames(path, frames, scan_shape=scan_shape, chunk_frames=k)
    data = read_data(path)
    assert data.shape == tuple(scan_shape) + (3, 4)
    np.testing.assert_array_equal(data, frames.reshape(data.shape))


def test_scan_stopped_early_keeps_frames_and_says_how_many(tmp_path):
    path = str(tmp_path / "early.emd")
    frames = detector_frames(5, (6, 6))
    w = EMDWriter(path, (6, 6), "uint16", scan_shape=(3, 4), chunk_frames=3, workers=1)
    for fr in frames:
        w.put(fr)
    w.close()
    data = read_data(path)
    assert data.shape == (3, 4, 6, 6)
    flat = data.reshape(12, 6, 6)
    np.testing.assert_array_equal(flat[:5], frames)
    assert np.all(flat[5:] == U16MAX)  # slots never put hold the fill value
    attrs = group_attrs(path)
    assert int(attrs["frames_written"]) == 5
    assert "5 frames written" in comment_texts(path)[-1]
    with emdstream.open(path) as e:
        assert e["dataset_1"].frames_written == 5


def test_preallocated_stack_stopped_early(tmp_path):
    path = str(tmp_path / "early_stack.emd")
    frames = detector_frames(4, (6, 6))
    write_frames(path, frames, n_frames=10, chunk_frames=3)
    data = read_data(path)
    np.testing.assert_array_equal(data[:4], frames)
    assert int(group_attrs(path)["frames_written"]) == 4
    assert "4 frames written" in comment_texts(path)[-1]


def test_open_ended_is_trimmed_to_the_frames_written(tmp_path):
    path = str(tmp_path / "open.emd")
    frames = detector_frames(11, (32, 32))
    write_frames(path, frames, chunk_frames=4)
    with h5py.File(path, "r") as f:
        assert f["data/dataset_1/data"].shape == (11, 32, 32)
        assert f["data/dataset_1/dim1"].shape == (11,)
        np.testing.assert_array_equal(f["data/dataset_1/data"][()], frames)


def test_open_ended_grows_in_blocks_not_per_frame(tmp_path):
    # 4 MiB frames make the growth block small enough (~256 MiB of frames) to cross in a test;
    # constant frames compress to almost nothing.
    path = str(tmp_path / "grow.emd")
    shape = (1024, 1024)
    n = 70
    observed = []  # (frames valid in the file, length of the data's axis 0) seen by a live reader
    # flush_frames=3 alone leaves up to 2 written frames uncounted until the next timed flush:
    # a short flush_seconds makes each count below come at once (not after the 1 s default)
    w = EMDWriter(path, shape, "uint32", flush_frames=3, flush_seconds=0.02, queue_frames=4,
                  workers=1)
    try:
        for i in range(n):
            w.put(np.full(shape, i, np.uint32))
            if (i + 1) % 6 == 0:
                assert wait_until(lambda i=i: w.frames_written >= i + 1)
                with emdstream.open(path, live=True) as live:
                    ds = live["dataset_1"]
                    observed.append((ds.frames_written, ds.data.shape[0]))
    finally:
        w.close()
    print("observed (frames, axis-0 length):", observed)
    counts = [c for c, _ in observed]
    lengths = [s for _, s in observed]
    assert len(set(counts)) == len(observed) >= 10
    assert all(s >= c for c, s in observed)  # every valid frame is inside the dataset
    assert len(set(lengths)) <= 3, f"resized too often: {observed}"  # blocks, not frames
    assert any(s > c + 6 for c, s in observed)  # space ahead of the frames
    with h5py.File(path, "r") as f:
        data = f["data/dataset_1/data"]
        assert data.shape == (n,) + shape
        assert f["data/dataset_1/dim1"].shape == (n,)
        np.testing.assert_array_equal(data[:, 0, 0], np.arange(n))
        np.testing.assert_array_equal(data[:, -1, -1], np.arange(n))
        for i in (0, 63, 64, n - 1):
            assert np.all(data[i] == i)


# --- what put accepts ------------------------------------------------------------------------

def test_put_checks_shape_at_once(tmp_path):
    path = str(tmp_path / "shape.emd")
    with EMDWriter(path, (4, 4), "uint16", n_frames=2, workers=1) as w:
        with pytest.raises(ValueError) as ei:
            w.put(np.zeros((4, 5), np.uint16))
        assert "(4, 5)" in str(ei.value) and "(4, 4)" in str(ei.value)
        with pytest.raises(ValueError):
            w.put(np.zeros((1, 4, 4), np.uint16))
        with pytest.raises(ValueError):
            w.put(np.zeros(16, np.uint16))
        assert w.frames_put == 0
        w.put(np.ones((4, 4), np.uint16))
        w.put(np.full((4, 4), 2, np.uint16))
    np.testing.assert_array_equal(read_data(path)[:, 0, 0], [1, 2])


def test_put_checks_dtype_at_once_and_names_both(tmp_path):
    path = str(tmp_path / "dtype.emd")
    with EMDWriter(path, (4, 4), "uint16", n_frames=1, workers=1) as w:
        with pytest.raises(TypeError) as ei:
            w.put(np.zeros((4, 4), np.float32))
        assert "float32" in str(ei.value) and "uint16" in str(ei.value)
        assert w.frames_put == 0
        w.put(np.zeros((4, 4), np.uint16))


LOSSLESS = [("uint8", "uint16"), ("int16", "float32"), ("uint16", "uint32"), ("uint8", "float64"),
            ("bool", "uint8"), ("float32", "float64"), ("int8", "int16"), (">u2", "uint16"),
            ("int32", "float64"), ("uint16", "int32")]


@pytest.mark.parametrize("src,dst", LOSSLESS, ids=[f"{a}->{b}" for a, b in LOSSLESS])
def test_lossless_casts_are_accepted_and_exact(tmp_path, src, dst):
    path = str(tmp_path / "cast.emd")
    src_t = np.dtype(src)
    if src_t.kind == "b":
        frame = np.array([[True, False, True]])
    elif src_t.kind == "f":
        frame = np.array([[np.finfo(src_t).min, -1.5, np.finfo(src_t).max]], dtype=src_t)
    else:
        info = np.iinfo(src_t)
        frame = np.array([[info.min, info.max, 1]], dtype=src_t)
    with EMDWriter(path, (1, 3), dst, n_frames=1, workers=1) as w:
        assert w.put(frame) is True
    got = read_data(path)
    assert got.dtype == np.dtype(dst)
    assert np.array_equal(got[0].astype(np.float64), frame.astype(np.float64))
    assert np.array_equal(got[0], frame.astype(dst))


LOSSY = [("float32", "uint16", 1.5), ("float64", "float32", 1e300), ("uint32", "uint16", 70000),
         ("complex64", "float32", 1 + 2j), ("int16", "uint16", -1), ("uint16", "int16", 40000),
         ("int32", "float32", 2 ** 24 + 1), ("uint64", "int64", 2 ** 63 + 1),
         ("int64", "float64", 2 ** 53 + 1), ("uint64", "float64", 2 ** 53 + 1)]


@pytest.mark.parametrize("src,dst,value", LOSSY, ids=[f"{a}->{b}" for a, b, _ in LOSSY])
def test_lossy_casts_are_refused(tmp_path, src, dst, value):
    path = str(tmp_path / "lossy.emd")
    frame = np.array([[value]], dtype=src)
    with EMDWriter(path, (1, 1), dst, n_frames=1, workers=1) as w:
        with pytest.raises(TypeError) as ei:
            w.put(frame)
        assert np.dtype(src).name in str(ei.value) and np.dtype(dst).name in str(ei.value)
        assert w.frames_put == 0


@pytest.mark.parametrize("obj", ["abc", {"a": 1}, None, object(), b"\x00\x01"],
                         ids=["str", "dict", "None", "object", "bytes"])
def test_non_array_objects_are_type_errors(tmp_path, obj):
    path = str(tmp_path / "obj.emd")
    with EMDWriter(path, (2, 2), "uint8", n_frames=1, workers=1) as w:
        with pytest.raises(TypeError):
            w.put(obj)
        assert w.frames_put == 0
        w.put(np.zeros((2, 2), np.uint8))


def test_put_copies_the_frame(tmp_path):
    path = str(tmp_path / "copy.emd")
    buf = np.zeros((16, 16), np.uint16)
    with EMDWriter(path, (16, 16), "uint16", n_frames=40, queue_frames=40, chunk_frames=8,
                   workers=1) as w:
        for i in range(40):
            buf[...] = i
            w.put(buf)
            buf[...] = 9999  # the caller reuses its buffer at once
    data = read_data(path)
    for i in range(40):
        assert np.all(data[i] == i), i


def test_odd_memory_layouts_are_written_exactly(tmp_path):
    path = str(tmp_path / "layouts.emd")
    base = detector_frames(1, (16, 20))[0]
    readonly = base[:8, :10].copy()
    readonly.flags.writeable = False
    frames = [
        base[::2, ::-2],                               # strided, negative stride
        np.asfortranarray(base[:8, :10]),              # Fortran order
        readonly,                                      # read-only
        np.broadcast_to(base[0, :10], (8, 10)),        # zero strides, read-only
        base[:8, :10].astype(">u2"),                   # big-endian
    ]
    with EMDWriter(path, (8, 10), "uint16", n_frames=len(frames), chunk_frames=2, workers=1) as w:
        for fr in frames:
            w.put(fr)
    data = read_data(path)
    for got, want in zip(data, frames):
        np.testing.assert_array_equal(got, np.asarray(want, dtype=np.uint16))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nan_inf_and_negative_zero_are_written_bitwise(tmp_path, dtype):
    path = str(tmp_path / "nan.emd")
    info = np.finfo(dtype)
    frame = np.array([[np.nan, np.inf, -np.inf, -0.0], [0.0, info.tiny / 2, info.max, info.min]],
                     dtype=dtype)
    neg_nan = -np.abs(frame[:1, :1]).copy()  # NaN with the sign bit set
    frame[1, 0] = neg_nan[0, 0]
    with EMDWriter(path, (2, 4), dtype, n_frames=2, workers=1) as w:
        w.put(frame)
        w.put(frame[::-1, ::-1])
    got = read_data(path)
    uint = f"u{np.dtype(dtype).itemsize}"
    np.testing.assert_array_equal(got[0].view(uint), frame.view(uint))
    np.testing.assert_array_equal(got[1].view(uint), np.ascontiguousarray(frame[::-1, ::-1]).view(uint))


# --- lifecycle -----------------------------------------------------------------------------------

def test_put_after_close_and_close_is_idempotent(tmp_path):
    path = str(tmp_path / "closed.emd")
    w = EMDWriter(path, (4, 4), "uint16", workers=1)
    w.put(np.zeros((4, 4), np.uint16))
    w.close()
    assert w.closed
    n_comments = len(comment_texts(path))
    with pytest.raises(WriterClosedError):
        w.put(np.zeros((4, 4), np.uint16))
    with pytest.raises(WriterClosedError):
        w.comment("too late")
    w.close()
    w.close(comment="again")
    assert len(comment_texts(path)) == n_comments
    assert int(group_attrs(path)["frames_written"]) == 1
    assert isinstance(WriterClosedError("x"), emdstream.EMDStreamError)


@pytest.mark.parametrize("kw,capacity", [(dict(n_frames=3), 3), (dict(scan_shape=(2, 2)), 4)])
def test_put_beyond_capacity_raises_writer_full(tmp_path, kw, capacity):
    path = str(tmp_path / "full.emd")
    with EMDWriter(path, (4, 4), "uint16", workers=1, **kw) as w:
        for i in range(capacity):
            w.put(np.full((4, 4), i, np.uint16))
        with pytest.raises(WriterFullError):
            w.put(np.zeros((4, 4), np.uint16))
        assert w.frames_put == capacity
    assert int(group_attrs(path)["frames_written"]) == capacity
    np.testing.assert_array_equal(read_data(path).reshape(capacity, 4, 4)[:, 0, 0], range(capacity))


def test_existing_file_is_never_overwritten_without_overwrite(tmp_path):
    path = tmp_path / "exists.emd"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        EMDWriter(str(path), (4, 4), "uint16")
    assert path.read_bytes() == b"precious"
    assert sorted(os.listdir(tmp_path)) == ["exists.emd"]
    with EMDWriter(str(path), (4, 4), "uint16", n_frames=1, overwrite=True, workers=1) as w:
        w.put(np.ones((4, 4), np.uint16))
    np.testing.assert_array_equal(read_data(str(path)), np.ones((1, 4, 4), np.uint16))
    assert sorted(os.listdir(tmp_path)) == ["exists.emd"]


def test_missing_directory_raises_before_anything_is_created(tmp_path):
    path = tmp_path / "missing" / "x.emd"
    with pytest.raises(FileNotFoundError):
        EMDWriter(str(path), (4, 4), "uint16")
    assert os.listdir(tmp_path) == []


BAD_METADATA = [
    ("dict", {"x": {"a": 1}}), ("None", {"x": None}), ("object", {"x": object()}),
    ("list_of_str", {"x": ["a", "b"]}), ("complex", {"x": 1 + 2j}),
    ("ragged_list", {"x": [[1, 2], [3]]}), ("int_too_big_for_hdf5", {"x": 2 ** 70}),
]


@pytest.mark.parametrize("group", ["microscope", "user", "sample"])
@pytest.mark.parametrize("label,md", BAD_METADATA, ids=[b[0] for b in BAD_METADATA])
def test_bad_metadata_is_type_error_before_the_file_exists(tmp_path, group, label, md):
    path = tmp_path / "md.emd"
    with pytest.raises(TypeError) as ei:
        EMDWriter(str(path), (4, 4), "uint16", **{group: md})
    assert not path.exists()
    assert os.listdir(tmp_path) == []  # nothing at all created (no temporary file either)
    assert "x" in str(ei.value)  # names the offending key


def test_metadata_not_a_mapping_is_type_error(tmp_path):
    with pytest.raises(TypeError):
        EMDWriter(str(tmp_path / "m.emd"), (4, 4), "uint16", user=[("a", 1)])
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kw", [dict(compression="lz5"), dict(compression="BSLZ4 "),
                                dict(compression=3), dict(on_full="wait")],
                         ids=["lz5", "spaced", "int", "on_full"])
def test_invalid_options_are_value_errors(tmp_path, kw):
    with pytest.raises(ValueError):
        EMDWriter(str(tmp_path / "c.emd"), (4, 4), "uint16", **kw)
    assert os.listdir(tmp_path) == []


# --- back-pressure -------------------------------------------------------------------------------

def slow_writer(path, dtype, **kw):
    """A writer that falls behind: gzip of random 128x128 frames, one frame per chunk, one
    compression thread, a queue of one frame."""
    return EMDWriter(path, (128, 128), dtype, compression="gzip", chunk_frames=1, workers=1,
                     queue_frames=1, **kw)


def random_frame(dtype, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.standard_normal((128, 128)).astype(dtype)
    return rng.integers(0, 60000, (128, 128)).astype(dtype)


def test_on_full_raise_refuses_the_frame(tmp_path):
    path = str(tmp_path / "raise.emd")
    base = random_frame("float64")
    accepted, refused = [], 0
    w = slow_writer(path, "float64", on_full="raise")
    for i in range(80):
        frame = base.copy()
        frame[0, 0] = i
        before = w.frames_put
        try:
            w.put(frame)
            accepted.append(i)
            assert w.frames_put == before + 1
        except QueueFullError:
            refused += 1
            assert w.frames_put == before  # not taken
    w.close()
    assert refused > 0 and accepted
    assert w.frames_dropped == 0
    assert len(accepted) + refused == 80
    assert w.frames_written == len(accepted) == int(group_attrs(path)["frames_written"])
    data = read_data(path)
    assert data.shape[0] == len(accepted)
    np.testing.assert_array_equal(data[:, 0, 0], accepted)  # in order, no gaps in the file
    np.testing.assert_array_equal(data[:, 1:], np.broadcast_to(base[1:], data[:, 1:].shape))


@pytest.mark.parametrize("dtype,layout", [("float64", "scan"), ("uint16", "stack")])
def test_on_full_drop_counts_and_records_dropped_frames(tmp_path, dtype, layout):
    path = str(tmp_path / "drop.emd")
    base = random_frame(dtype)
    n = 60
    kw = dict(scan_shape=(6, 10)) if layout == "scan" else {}
    w = slow_writer(path, dtype, on_full="drop", **kw)
    results = []
    for i in range(n):
        frame = base.copy()
        frame[0, 0] = i
        results.append(w.put(frame))
    w.close()
    dropped = [i for i, ok in enumerate(results) if ok is False]
    kept = [i for i, ok in enumerate(results) if ok is True]
    assert len(dropped) + len(kept) == n
    assert dropped, "the queue of one frame never filled: no drop was exercised"
    assert w.frames_dropped == len(dropped)
    assert w.frames_put == len(kept)
    assert w.frames_written + w.frames_dropped == n
    attrs = group_attrs(path)
    assert int(attrs["frames_dropped"]) == len(dropped)
    assert int(attrs["frames_written"]) == len(kept)
    np.testing.assert_array_equal(attrs["dropped_frames"], dropped)
    assert f"{len(dropped)} dropped" in comment_texts(path)[-1]
    data = read_data(path).reshape((-1, 128, 128))
    assert data.shape[0] == n
    fill = np.nan if dtype == "float64" else U16MAX
    for i in range(n):
        if i in dropped:
            np.testing.assert_array_equal(data[i], np.full((128, 128), fill, dtype))
        else:
            assert data[i, 0, 0] == i
            np.testing.assert_array_equal(data[i, 1:], base[1:])
    with emdstream.open(path) as e:
        assert e["dataset_1"].frames_dropped == len(dropped)
        assert e["dataset_1"].frames_written == len(kept)


def test_on_full_block_takes_every_frame(tmp_path):
    path = str(tmp_path / "block.emd")
    base = random_frame("uint16")
    w = slow_writer(path, "uint16", n_frames=25)
    for i in range(25):
        frame = base.copy()
        frame[0, 0] = i
        assert w.put(frame) is True
    w.close()
    assert w.frames_dropped == 0 and w.frames_written == 25
    np.testing.assert_array_equal(read_data(path)[:, 0, 0], np.arange(25))


# --- threads ---------------------------------------------------------------------------------------

def test_concurrent_put_from_several_threads(tmp_path):
    path = str(tmp_path / "threads.emd")
    n_threads, per_thread = 4, 40
    w = EMDWriter(path, (2, 3), "uint32", n_frames=n_threads * per_thread, chunk_frames=3,
                  queue_frames=2, workers=1)
    barrier = threading.Barrier(n_threads)
    errors = []

    def producer(tid):
        try:
            barrier.wait()
            frame = np.zeros((2, 3), np.uint32)
            for seq in range(per_thread):
                frame[0, 0], frame[0, 1], frame[1, 2] = tid, seq, tid * 1000 + seq
                w.put(frame)  # the same buffer each time: put must have copied it
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=producer, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    w.close()
    assert not errors
    data = read_data(path)
    assert data.shape[0] == n_threads * per_thread
    tags = [(int(f[0, 0]), int(f[0, 1])) for f in data]
    assert np.all(data[:, 1, 2] == data[:, 0, 0] * 1000 + data[:, 0, 1])  # no torn frames
    assert sorted(tags) == [(t, s) for t in range(n_threads) for s in range(per_thread)]
    for tid in range(n_threads):
        seqs = [s for t, s in tags if t == tid]
        assert seqs == list(range(per_thread))


def test_writer_thread_error_reaches_put_and_close(tmp_path):
    path = str(tmp_path / "err.emd")
    before = set(threading.enumerate())
    w = EMDWriter(path, (8, 8), "uint16", n_frames=10_000, chunk_frames=1, workers=1,
                  queue_frames=2)
    boom = RuntimeError("simulated compression failure")

    def failing_encode(chunk):
        raise boom

    w._thread.encoder.encode = failing_encode  # fault injected into the real writer thread

    def put_until_error():
        for i in range(10_000):
            w.put(np.full((8, 8), i % 100, np.uint16))
        return "never failed"

    with pytest.raises(WriterError) as ei:
        run_bounded(put_until_error, timeout=15)
    assert ei.value.__cause__ is boom
    assert isinstance(ei.value, emdstream.EMDStreamError)
    with pytest.raises(WriterError) as ei2:
        run_bounded(w.close, timeout=15)
    assert ei2.value.__cause__ is boom
    for t in _new_emdstream_threads(before):
        t.join(5)
    assert not [t for t in _new_emdstream_threads(before) if t.is_alive()]


def test_writer_thread_error_reaches_close_without_another_put(tmp_path):
    path = str(tmp_path / "err2.emd")
    before = set(threading.enumerate())
    w = EMDWriter(path, (8, 8), "uint16", chunk_frames=4, workers=1, flush_seconds=30)
    boom = OSError(28, "No space left on device (simulated)")

    def failing_encode(chunk):
        raise boom

    w._thread.encoder.encode = failing_encode
    w.put(np.zeros((8, 8), np.uint16))  # a partial chunk: encoded only at close
    with pytest.raises(WriterError) as ei:
        run_bounded(w.close, timeout=15)
    assert ei.value.__cause__ is boom
    w.close()  # idempotent afterwards
    with pytest.raises((WriterError, WriterClosedError)):
        w.put(np.zeros((8, 8), np.uint16))
    for t in _new_emdstream_threads(before):
        t.join(5)
    assert not [t for t in _new_emdstream_threads(before) if t.is_alive()]


def test_writer_thread_error_leaves_no_crashed_compression_threads(tmp_path, monkeypatch):
    # After a failure the writer abandons (cancels) the chunks still being compressed; the
    # compression threads must take that in their stride, not die with an unhandled exception.
    crashed = []
    monkeypatch.setattr(threading, "excepthook",
                        lambda args: crashed.append((args.thread.name, args.exc_type.__name__,
                                                     str(args.exc_value))))
    path = str(tmp_path / "err3.emd")
    before = set(threading.enumerate())
    w = EMDWriter(path, (8, 8), "uint16", n_frames=100, chunk_frames=1, workers=1,
                  queue_frames=16)
    boom = RuntimeError("slow then failing compression")

    def slow_failing_encode(chunk):
        time.sleep(0.05)  # several chunks are in flight when the first failure is seen
        raise boom

    w._thread.encoder.encode = slow_failing_encode
    for i in range(8):
        w.put(np.full((8, 8), i, np.uint16))
    with pytest.raises(WriterError) as ei:
        run_bounded(w.close, timeout=15)
    assert ei.value.__cause__ is boom
    for t in _new_emdstream_threads(before):
        t.join(5)
    assert not [t for t in _new_emdstream_threads(before) if t.is_alive()]
    assert crashed == []


@pytest.mark.parametrize("message", ["detector timeout", "bad config {'gain': 2}"],
                         ids=["plain", "braces"])
def test_exception_in_with_block_propagates_and_file_is_finalized(tmp_path, message):
    path = str(tmp_path / "abort.emd")
    err = RuntimeError(message)
    frames = detector_frames(3, (8, 8))
    with pytest.raises(RuntimeError) as ei:
        with EMDWriter(path, (8, 8), "uint16", scan_shape=(2, 4), workers=1) as w:
            for fr in frames:
                w.put(fr)
            raise err
    assert ei.value is err  # unchanged
    assert w.closed
    attrs = group_attrs(path)
    assert bool(attrs.get("complete", False)), "file was not finalized"
    assert int(attrs["frames_written"]) == 3
    last = comment_texts(path)[-1]
    assert "abort" in last and "RuntimeError" in last and message in last
    np.testing.assert_array_equal(read_data(path).reshape(8, 8, 8)[:3], frames)
