"""put_compressed into multi-frame chunks: detector-compressed bslz4 frames gathered without
recompressing (the chunk is byte for byte the frames compressed together), written from the
producer's thread while the writer thread is idle, queued while it is busy."""
import time

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from support.frames import detector_frames

import emdstream
from emdstream import EMDWriter
from emdstream.encoders import BitshuffleLZ4


def blobs_of(frames):
    return [np.asarray(BitshuffleLZ4().encode(f)).tobytes() for f in frames]


def read(path):
    with emdstream.open(path) as f:
        ds = f["dataset_1"]
        return ds.data[()], ds.values


@pytest.mark.parametrize("many", [False, True], ids=["put_compressed", "put_compressed_many"])
@pytest.mark.parametrize("queued", [False, True], ids=["producer-writes", "writer-thread-writes"])
def test_gathered_chunks_are_the_frames_compressed_together(tmp_path, many, queued):
    frames = detector_frames(23, (64, 64), seed=2)  # 8 KiB frames: one block each
    path = str(tmp_path / "g.emd")
    with EMDWriter(path, (64, 64), scan_shape=(2, 12), chunk_frames=5) as w:
        if queued:  # the writer thread looks busy: every chunk goes through the queue
            while not w._thread.io_lock.acquire(timeout=0.01):
                pass
        blobs = blobs_of(frames)
        if many:
            assert w.put_compressed_many(blobs[:7], z=np.arange(7.0)) == 7
            assert w.put_compressed_many(blobs[7:], z=np.arange(7.0, 23.0)) == 16
        else:
            for i, blob in enumerate(blobs):
                assert w.put_compressed(blob, z=float(i)) is True
        if queued:
            w._thread.io_lock.release()
    data, values = read(path)
    flat = data.reshape(-1, 64, 64)
    np.testing.assert_array_equal(flat[:23], frames)
    assert (flat[23] == np.iinfo(np.uint16).max).all()  # never put: fill value
    np.testing.assert_array_equal(values["z"].reshape(-1)[:23], np.arange(23.0))
    enc = BitshuffleLZ4()
    with h5py.File(path, "r") as f:
        ds = f["data/dataset_1/data"]
        mask, stored = ds.id.read_direct_chunk((0, 5, 0, 0))
        assert mask == 0 and stored == bytes(enc.encode(frames[5:10]))
        mask, stored = ds.id.read_direct_chunk((0, 10, 0, 0))  # a row's last chunk: 2 frames
        padded = np.concatenate([frames[10:12], np.full((3, 64, 64), 65535, np.uint16)])
        assert stored == bytes(enc.encode(padded))


def test_frames_that_are_not_whole_blocks_need_chunk_frames_1(tmp_path):
    blob = blobs_of(detector_frames(1, (100, 100)))[0]
    with EMDWriter(str(tmp_path / "a.emd"), (100, 100), chunk_frames=4) as w:
        with pytest.raises(ValueError, match="chunk_frames=1"):
            w.put_compressed(blob)
        with pytest.raises(ValueError, match="chunk_frames=1"):
            w.put_compressed_many([blob])
    with EMDWriter(str(tmp_path / "b.emd"), (100, 100), chunk_frames=1) as w:
        assert w.put_compressed_many([blob, blob]) == 2


def test_a_gathered_chunk_holds_frames_of_one_block_size(tmp_path):
    # a gathered chunk's one header names one block size: a frame of other blocks under it made
    # the whole chunk unreadable ("filter returned failure"), 16 frames lost. Frames of another
    # block size are refused while a chunk is being gathered (nothing taken), taken from the next
    # chunk on, or kept as their own chunks with chunk_frames=1
    import struct
    bitshuffle = pytest.importorskip("bitshuffle")  # to compress in other blocks than ours
    frames = detector_frames(8, (64, 64))
    small = [struct.pack(">QI", f.nbytes, 4096) + bitshuffle.compress_lz4(f.reshape(-1), 2048)
             .tobytes() for f in frames]  # a detector's 4 KiB blocks
    ours = blobs_of(frames)  # 8 KiB blocks
    path = str(tmp_path / "a.emd")
    with EMDWriter(path, (64, 64), chunk_frames=4) as w:
        assert w.put_compressed_many([]) == 0
        assert w.put_compressed_many(small[:3]) == 3
        with pytest.raises(ValueError, match="blocks of 4096 and 8192 bytes in one call"):
            w.put_compressed_many([small[3], ours[3]])
        with pytest.raises(ValueError, match="blocks of 8192 bytes; the chunk being gathered "
                                             "holds frames of 4096-byte.*chunk_frames=1"):
            w.put_compressed(ours[3])
        assert w.frames_put == 3
        assert w.put_compressed(small[3]) is True  # chunk 0 complete
        assert w.put_compressed_many(ours[4:]) == 4  # chunk 1 in 8 KiB blocks
    np.testing.assert_array_equal(read(path)[0], frames)
    with h5py.File(path, "r") as f:
        ds = f["data/dataset_1/data"]
        assert ds.id.read_direct_chunk((0, 0, 0))[1][8:12] == (4096).to_bytes(4, "big")
        assert ds.id.read_direct_chunk((4, 0, 0))[1][8:12] == (8192).to_bytes(4, "big")
    with EMDWriter(str(tmp_path / "b.emd"), (64, 64), chunk_frames=1) as w:
        assert w.put_compressed_many([small[0], ours[1]]) == 2
    np.testing.assert_array_equal(read(str(tmp_path / "b.emd"))[0], frames[:2])


def test_a_refused_call_leaves_the_block_size_free_at_the_next_chunk(tmp_path):
    import struct
    bitshuffle = pytest.importorskip("bitshuffle")
    frames = detector_frames(8, (64, 64))
    small = [struct.pack(">QI", f.nbytes, 4096) + bitshuffle.compress_lz4(f.reshape(-1), 2048)
             .tobytes() for f in frames]
    with EMDWriter(str(tmp_path / "a.emd"), (64, 64), chunk_frames=4) as w:
        w.put(frames[0])
        with pytest.raises(ValueError, match="one kind"):
            w.put_compressed(small[1])  # refused: a chunk of raw frames is being filled
        for f in frames[1:4]:
            w.put(f)
        assert w.put_compressed_many(blobs_of(frames[4:])) == 4  # 8 KiB blocks: taken
    np.testing.assert_array_equal(read(str(tmp_path / "a.emd"))[0], frames)


def test_detector_frames_of_8k_blocks_gather_into_a_stream_that_compresses_in_16k(tmp_path):
    frames = detector_frames(24, (128, 128), seed=3)  # 32 KiB frames: the stream's own are 16 KiB
    path = str(tmp_path / "a.emd")
    with EMDWriter(path, (128, 128), n_frames=40, chunk_frames=8) as w:
        assert w._stream.encoder.block_bytes == 16384
        for f in frames:
            w.put(f)
        assert w.put_compressed_many(blobs_of(frames[:16])) == 16  # chunks 3 and 4
    data = read(path)[0]
    np.testing.assert_array_equal(data[:24], frames)
    np.testing.assert_array_equal(data[24:], frames[:16])
    with h5py.File(path, "r") as f:
        ds = f["data/dataset_1/data"]
        assert ds.id.read_direct_chunk((0, 0, 0))[1][8:12] == (16384).to_bytes(4, "big")
        assert ds.id.read_direct_chunk((24, 0, 0))[1][8:12] == (8192).to_bytes(4, "big")


def test_refused_mixing_of_put_and_put_compressed_takes_no_place_in_the_queue(tmp_path):
    frames = detector_frames(12, (64, 64))
    blobs = blobs_of(frames)
    with EMDWriter(str(tmp_path / "a.emd"), (64, 64), n_frames=16, chunk_frames=4, queue_frames=8,
                   on_full="raise") as w:
        w.put(frames[0])
        for _ in range(3):  # each took a place and lost it: the queue (2 places) ran out
            with pytest.raises(ValueError, match="one kind"):
                w.put_compressed(blobs[1])
        for f in frames[1:4]:
            w.put(f)
        assert w.put_compressed_many(blobs[4:8]) == 4  # QueueFullError when places were lost
        assert w.put_compressed_many(blobs[8:10]) == 2
        for _ in range(3):  # a chunk buffer each, lost the same way
            with pytest.raises(ValueError, match="one kind"):
                w.put(frames[10])
        assert w.put_compressed_many(blobs[10:]) == 2
        for f in frames[:4]:  # raw frames again, in chunk buffers that are all still there
            w.put(f)
    np.testing.assert_array_equal(read(str(tmp_path / "a.emd"))[0], np.concatenate([frames,
                                                                                    frames[:4]]))


def test_a_bad_frame_among_many_takes_none(tmp_path):
    blobs = blobs_of(detector_frames(3, (64, 64)))
    with EMDWriter(str(tmp_path / "a.emd"), (64, 64), chunk_frames=2) as w:
        with pytest.raises(ValueError, match="need"):
            w.put_compressed_many([blobs[0], blobs[1][:-1], blobs[2]])
        assert w.frames_put == 0
        assert w.put_compressed_many(blobs) == 3
    np.testing.assert_array_equal(read(str(tmp_path / "a.emd"))[0], detector_frames(3, (64, 64)))


def test_put_and_put_compressed_do_not_share_a_chunk(tmp_path):
    frames = detector_frames(4, (64, 64))
    with EMDWriter(str(tmp_path / "a.emd"), (64, 64), chunk_frames=2) as w:
        w.put(frames[0])
        with pytest.raises(ValueError, match="chunk_frames=1"):
            w.put_compressed(blobs_of(frames[1:2])[0])
        w.put(frames[1])
        w.put_compressed_many(blobs_of(frames[2:3]))
        with pytest.raises(ValueError, match="chunk_frames=1"):
            w.put(frames[3])
        w.put_compressed(blobs_of(frames[3:])[0])
    np.testing.assert_array_equal(read(str(tmp_path / "a.emd"))[0], frames)


def test_a_slow_streams_partial_gathered_chunk_is_durable_and_live(tmp_path):
    frames = detector_frames(5, (64, 64), seed=4)
    path = str(tmp_path / "slow.emd")
    with EMDWriter(path, (64, 64), n_frames=32, chunk_frames=16, flush_seconds=0.05) as w:
        for i, blob in enumerate(blobs_of(frames)):
            w.put_compressed(blob)
            deadline = time.monotonic() + 10
            while w.frames_written < i + 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert w.frames_written == i + 1
            with emdstream.open(path, live=True) as f:
                np.testing.assert_array_equal(f["dataset_1"].data[:i + 1], frames[:i + 1])
    np.testing.assert_array_equal(read(path)[0][:5], frames)


def test_drops_in_gathered_chunks_keep_the_fill_value(tmp_path):
    frames = detector_frames(12, (64, 64), seed=6)
    path = str(tmp_path / "drop.emd")
    with EMDWriter(path, (64, 64), n_frames=12, chunk_frames=4, queue_frames=8,
                   on_full="drop") as w:
        blobs = blobs_of(frames)
        while not w._thread.io_lock.acquire(timeout=0.01):
            pass
        taken = [w.put_compressed(b) for b in blobs]  # the writer is "busy": 2 chunks queued
        w._thread.io_lock.release()
    assert taken == [True] * 8 + [False] * 4
    assert w.frames_dropped == 4
    data = read(path)[0]
    np.testing.assert_array_equal(data[:8], frames[:8])
    assert (data[8:] == 65535).all()


def test_a_failed_write_from_the_producer_fails_the_writer_without_hanging(tmp_path, monkeypatch):
    from emdstream.errors import WriterError
    from emdstream.write.sink import StreamSink

    blobs = blobs_of(detector_frames(8, (64, 64)))
    w = EMDWriter(str(tmp_path / "f.emd"), (64, 64), n_frames=80, chunk_frames=4)
    monkeypatch.setattr(StreamSink, "write_chunk", lambda *a, **k: (_ for _ in ()).throw(
        OSError(28, "No space left on device")))
    with pytest.raises(WriterError, match="No space left"):
        for _ in range(20):  # until one chunk is written by the producer itself
            w.put_compressed_many(blobs[:4])
            time.sleep(0.01)
    assert w._thread.finished.wait(10)
    with pytest.raises(WriterError):
        w.close()
