"""put_many, frame_buffer, put_compressed and on_full="store_raw": the same file as plain puts,
checked before anything is taken, read back by every reader."""
import os
import shutil
import subprocess
import threading
import time

import h5py
import hdf5plugin
import numpy as np
import pytest
from support.frames import detector_frames

import emdstream
from emdstream import EMDWriter, WriterFullError
from emdstream.encoders import BitshuffleLZ4
from emdstream.safety import chunklog


def read(path, name="dataset_1"):
    with emdstream.open(path) as f:
        ds = f[name]
        return ds.data[()], ds.values, dict(ds.group.attrs)


@pytest.mark.parametrize("block", [1, 7, 64], ids=lambda b: f"block{b}")
def test_put_many_gives_the_same_file_as_single_puts(tmp_path, block):
    frames = detector_frames(150, (16, 16))
    single, many = str(tmp_path / "single.emd"), str(tmp_path / "many.emd")
    with EMDWriter(single, (16, 16), "uint16", scan_shape=(10, 15), chunk_frames=4) as w:
        for i, fr in enumerate(frames):
            w.put(fr, z=float(i))
    with EMDWriter(many, (16, 16), "uint16", scan_shape=(10, 15), chunk_frames=4) as w:
        for start in range(0, 150, block):
            part = frames[start:start + block]
            assert w.put_many(part, z=np.arange(start, start + len(part), dtype=float)) == len(part)
    (a, va, attrs_a), (b, vb, attrs_b) = read(single), read(many)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(va["z"], vb["z"])
    assert attrs_a["frames_written"] == attrs_b["frames_written"] == 150


def test_put_many_refuses_a_bad_block_before_taking_any_frame(tmp_path):
    path = str(tmp_path / "bad.emd")
    with EMDWriter(path, (8, 8), "uint16", n_frames=10) as w:
        w.put_many(np.zeros((4, 8, 8), np.uint16), z=[1, 2, 3, 4])
        with pytest.raises(ValueError, match="block"):
            w.put_many(np.zeros((3, 8, 9), np.uint16))
        with pytest.raises(TypeError, match="losslessly"):
            w.put_many(np.zeros((3, 8, 8), np.float32))
        with pytest.raises(ValueError, match=r"shape \(2,\)"):
            w.put_many(np.zeros((3, 8, 8), np.uint16), z=[1.0, 2.0])
        with pytest.raises(WriterFullError, match="do not fit"):
            w.put_many(np.zeros((7, 8, 8), np.uint16), z=np.zeros(7))
        assert w.frames_put == 4
    assert read(path)[2]["frames_written"] == 4


def test_frame_buffer_fills_slots_in_place_and_an_exception_drops_the_slot(tmp_path):
    path = str(tmp_path / "fb.emd")
    frames = detector_frames(12, (16, 16))
    with EMDWriter(path, (16, 16), "uint16", n_frames=12, chunk_frames=4) as w:
        for i in range(12):
            if i == 5:
                with pytest.raises(ConnectionError):
                    with w.frame_buffer(z=float(i)) as buf:
                        buf[:8] = frames[i][:8]  # half a frame came, then the link broke
                        raise ConnectionError("receiver lost the link")
                continue
            with w.frame_buffer(z=float(i)) as buf:
                assert buf.shape == (16, 16) and buf.dtype == np.uint16 and buf.flags.writeable
                np.copyto(buf, frames[i])
    data, values, attrs = read(path)
    assert attrs["frames_written"] == 11 and list(attrs["dropped_frames"]) == [5]
    for i in range(12):
        if i == 5:
            assert (data[i] == np.iinfo(np.uint16).max).all() and np.isnan(values["z"][i])
        else:
            np.testing.assert_array_equal(data[i], frames[i])
            assert values["z"][i] == i


def test_frame_buffer_receives_from_a_real_socket(tmp_path):
    import socket

    path = str(tmp_path / "sock.emd")
    frames = detector_frames(20, (32, 32))
    a, b = socket.socketpair()
    sender = threading.Thread(target=lambda: [a.sendall(f.tobytes()) for f in frames])
    sender.start()
    with EMDWriter(path, (32, 32), "uint16", chunk_frames=8) as w:
        for _ in frames:
            with w.frame_buffer() as buf:
                view = memoryview(buf).cast("B")
                got = 0
                while got < view.nbytes:
                    got += b.recv_into(view[got:])
    sender.join()
    a.close(), b.close()
    np.testing.assert_array_equal(read(path)[0], frames)


def test_an_open_frame_buffer_holds_back_later_chunks_not_other_puts(tmp_path):
    path = str(tmp_path / "order.emd")
    w = EMDWriter(path, (4, 4), "uint16", chunk_frames=2, flush_seconds=0.01)
    entered, release = threading.Event(), threading.Event()

    def slow_receiver():
        with w.frame_buffer() as buf:  # slot 0, open until released
            entered.set()
            release.wait(10)
            buf[...] = 100

    t = threading.Thread(target=slow_receiver)
    t.start()
    entered.wait(10)
    for i in range(1, 9):  # the producer's other calls go on
        w.put(np.full((4, 4), i, np.uint16))
    import time
    time.sleep(0.1)
    assert w.frames_written == 0  # chunk 0 is open, so nothing after it is counted either
    release.set()
    t.join(10)
    w.close()
    data = read(path)[0]
    assert list(data[:, 0, 0]) == [100, 1, 2, 3, 4, 5, 6, 7, 8]


def test_put_compressed_stores_detector_frames_as_they_are(tmp_path):
    path = str(tmp_path / "dectris.emd")
    frames = detector_frames(10, (64, 64))
    blobs = [np.asarray(BitshuffleLZ4().encode(f[None])).tobytes() for f in frames]
    with EMDWriter(path, (64, 64), "uint16", chunk_frames=1) as w:
        for i, blob in enumerate(blobs):
            assert w.put_compressed(blob, z=float(i))
    data, values, attrs = read(path)
    np.testing.assert_array_equal(data, frames)
    np.testing.assert_array_equal(values["z"], np.arange(10.0))
    with h5py.File(path, "r") as f:  # byte for byte what the detector sent
        ds = f["data/dataset_1/data"]
        for i, blob in enumerate(blobs):
            mask, stored = ds.id.read_direct_chunk((i, 0, 0))
            assert mask == 0 and stored == blob


@pytest.mark.parametrize("damage,match", [
    (lambda b: b[:-1], "need"),
    (lambda b: b + b"\0", "need"),
    (lambda b: b[:8] + (4097).to_bytes(4, "big") + b[12:], "block size"),
    (lambda b: (123).to_bytes(8, "big") + b[8:], "uncompressed"),
    (lambda b: b[:5], "shorter"),
], ids=["cut", "extra", "block", "size", "header"])
def test_put_compressed_refuses_what_cannot_be_a_frame_before_writing(tmp_path, damage, match):
    path = str(tmp_path / "bad.emd")
    frame = detector_frames(1, (64, 64))[0]
    blob = np.asarray(BitshuffleLZ4().encode(frame[None])).tobytes()
    with EMDWriter(path, (64, 64), "uint16", chunk_frames=1) as w:
        with pytest.raises(ValueError, match=match):
            w.put_compressed(damage(blob))
        w.put_compressed(blob)
    assert read(path)[2]["frames_written"] == 1


def test_put_compressed_needs_one_frame_per_chunk_and_bslz4(tmp_path):
    blob = np.asarray(BitshuffleLZ4().encode(np.zeros((1, 8, 8), np.uint16))).tobytes()
    with EMDWriter(str(tmp_path / "a.emd"), (8, 8), "uint16", chunk_frames=4) as w:
        with pytest.raises(ValueError, match="chunk_frames=1"):
            w.put_compressed(blob)
    with EMDWriter(str(tmp_path / "b.emd"), (8, 8), "uint16", chunk_frames=1,
                   compression="zstd") as w:
        with pytest.raises(ValueError, match="bslz4"):
            w.put_compressed(blob)


def test_a_corrupt_compressed_body_is_isolated_by_verify(tmp_path):
    path = str(tmp_path / "corrupt.emd")
    frames = detector_frames(3, (64, 64))
    blobs = [bytearray(np.asarray(BitshuffleLZ4().encode(f[None])).tobytes()) for f in frames]
    blobs[1][16:] = bytes(len(blobs[1]) - 16)  # header and block length intact, LZ4 data zeroed
    with EMDWriter(path, (64, 64), "uint16", chunk_frames=1) as w:
        for blob in blobs:
            w.put_compressed(bytes(blob))
    with h5py.File(path, "r") as f:  # the other frames read
        np.testing.assert_array_equal(f["data/dataset_1/data"][0], frames[0])
        np.testing.assert_array_equal(f["data/dataset_1/data"][2], frames[2])
    from emdstream.tools.verify import verify

    problems = verify(path)
    assert problems and all("unreadable" in p or "crashed" in p for p in problems), problems


def test_incompressible_chunks_are_stored_raw_and_read_back_everywhere(tmp_path):
    import ncempy.io
    from rsciio.emd import file_reader

    path = str(tmp_path / "noise.emd")
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 2**16, (8, 32, 32), dtype=np.uint16)
    counts = detector_frames(8, (32, 32))
    frames = np.concatenate([counts, noise])
    with EMDWriter(path, (32, 32), "uint16", chunk_frames=4) as w:
        w.put_many(frames)
    data, _, attrs = read(path)
    np.testing.assert_array_equal(data, frames)
    assert attrs["raw_chunks_incompressible"] == 2
    with h5py.File(path, "r") as f:
        ds = f["data/dataset_1/data"]
        masks = [ds.id.get_chunk_info(i).filter_mask for i in range(ds.id.get_num_chunks())]
    assert masks == [0, 0, 1, 1]
    from emdstream.tools.info import describe, format_text

    with emdstream.open(path) as f:
        info = describe(f)
    assert info["datasets"]["dataset_1"]["raw_chunks"] == 2
    assert "2 chunks stored uncompressed (2 incompressible)" in format_text(info)
    np.testing.assert_array_equal(ncempy.io.read(path)["data"], frames)
    np.testing.assert_array_equal(np.asarray(file_reader(path)[0]["data"]).transpose(2, 1, 0), frames)
    if shutil.which("h5dump"):
        env = {**os.environ, "HDF5_PLUGIN_PATH": hdf5plugin.PLUGIN_PATH}
        out = subprocess.run(["h5dump", "-d", "/data/dataset_1/data", "-s", "12,0,0", "-c",
                              "1,1,4", path], capture_output=True, text=True, env=env)
        assert out.returncode == 0 and str(frames[12, 0, 0]) in out.stdout


def test_store_raw_keeps_up_without_dropping_and_counts_its_raw_chunks(tmp_path):
    path = str(tmp_path / "raw.emd")
    rng = np.random.default_rng(0)
    frames = rng.poisson(3, (32, 128, 128)).astype(np.uint16)
    with EMDWriter(path, (128, 128), "uint16", compression="gzip", chunk_frames=2, workers=1,
                   queue_frames=8, on_full="store_raw") as w:
        for i in range(400):
            w.put(frames[i % 32])
    data, _, attrs = read(path)
    assert attrs["frames_written"] == 400 and attrs["frames_dropped"] == 0
    assert attrs["raw_chunks_writer_behind"] > 0  # one slow gzip thread cannot keep up
    np.testing.assert_array_equal(data, frames[np.arange(400) % 32])
    with h5py.File(path, "r") as f:
        ds = f["data/dataset_1/data"]
        raw = sum(ds.id.get_chunk_info(i).filter_mask != 0 for i in range(ds.id.get_num_chunks()))
    assert raw == attrs["raw_chunks_writer_behind"]


def test_put_many_is_safe_from_several_threads(tmp_path):
    path = str(tmp_path / "threads.emd")
    n_threads, blocks, block = 4, 10, 5
    with EMDWriter(path, (2, 3), "uint32", chunk_frames=3) as w:
        def producer(tid):
            for b in range(blocks):
                frames = np.zeros((block, 2, 3), np.uint32)
                frames[:, 0, 0] = tid
                frames[:, 0, 1] = b
                frames[:, 0, 2] = np.arange(block)
                w.put_many(frames)
        threads = [threading.Thread(target=producer, args=(t,)) for t in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    data = read(path)[0]
    assert data.shape[0] == n_threads * blocks * block
    for start in range(0, data.shape[0], block):  # each block stays whole and in order
        chunk = data[start:start + block]
        assert len({int(x) for x in chunk[:, 0, 0]}) == 1
        assert list(chunk[:, 0, 2]) == list(range(block))


def _logged_drops(path, want, timeout=10.0):
    """The dropped slots the chunk log holds, once a flush has logged ``want``."""
    deadline = time.monotonic() + timeout
    while True:
        contents = chunklog.read(path)
        got = contents.state.get("dataset_1", {}).get("dropped") if contents else None
        got = None if got is None else got.tolist()
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.01)


def test_a_long_overrun_is_logged_in_runs_and_every_drop_is_recorded(tmp_path):
    """A detector outrunning the writer drops thousands of frames in a row: the chunk log (what
    recovery reads) gets them as a few runs, not one number each, and both the log and the file
    hold every dropped slot, also after an earlier slot fails below them (the whole list again)."""
    path = str(tmp_path / "overrun.emd")
    w = EMDWriter(path, (8, 8), "uint16", chunk_frames=2, queue_frames=4, on_full="drop",
                  flush_seconds=0.01)
    held = w.frame_buffer()  # slot 0 open: nothing is written, the queue fills, the rest drop
    held.__enter__()
    taken = [w.put(np.full((8, 8), i % 500, np.uint16)) for i in range(1, 20001)]
    drops = [i for i, ok in zip(range(1, 20001), taken) if not ok]
    assert len(drops) > 19000
    assert _logged_drops(path, drops) == drops
    assert os.path.getsize(chunklog.log_path(path)) < 20_000  # 19,990+ numbers: ~120 KB as JSON
    try:
        raise ConnectionError("link lost")
    except ConnectionError as exc:
        held.__exit__(type(exc), exc, exc.__traceback__)
    assert _logged_drops(path, [0] + drops) == [0] + drops
    w.close()
    with emdstream.open(path) as f:
        assert list(f["dataset_1"].dropped_frames) == [0] + drops


def test_a_failed_frame_buffer_below_later_drops_is_recorded(tmp_path):
    """Slot 0 is held open (so its chunk and every later one wait) until the queue is full and
    later frames are dropped; then slot 0 fails. Every dropped slot is in the file, in order."""
    path = str(tmp_path / "drops.emd")
    w = EMDWriter(path, (8, 8), "uint16", chunk_frames=2, queue_frames=4, on_full="drop",
                  flush_seconds=0.01)
    held = w.frame_buffer()
    held.__enter__()
    taken = [w.put(np.full((8, 8), i, np.uint16)) for i in range(1, 12)]
    assert not all(taken)  # the queue filled up behind the open slot
    time.sleep(0.05)  # a flush records the drops so far
    try:
        raise ConnectionError("link lost")
    except ConnectionError as exc:
        held.__exit__(type(exc), exc, exc.__traceback__)
    w.close()
    want = [0] + [i for i, ok in zip(range(1, 12), taken) if not ok]
    with emdstream.open(path) as f:
        ds = f["dataset_1"]
        assert list(ds.dropped_frames) == want
        assert ds.frames_written == 12 - len(want)
