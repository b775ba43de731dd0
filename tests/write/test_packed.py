"""bslz4 chunks compressed in pieces by the producer and the writer thread: the same bytes as the
chunk compressed whole, whichever thread compressed which piece, through every put API."""
import numpy as np
import pytest
from support.frames import detector_frames

import emdstream
from emdstream import EMDWriter
from emdstream.encoders import BitshuffleLZ4, get_encoder
from emdstream.write.packed import Packing, PieceLayout

LAYOUTS = [((256, 256), "uint16", 16), ((64, 64), "uint16", 256), ((1024, 1024), "uint16", 1),
           ((192, 192), "uint16", 28), ((128, 64), "uint8", 40), ((128, 128), "uint32", 6)]


def _layout(shape, dtype, k):  # the encoder a stream of these frames uses (16 KiB blocks or 8)
    itemsize = np.dtype(dtype).itemsize
    encoder = BitshuffleLZ4().for_frames(int(np.prod(shape)) * itemsize, itemsize)
    return PieceLayout.of(encoder, k, shape, np.dtype(dtype), "block")


def test_only_block_aligned_bslz4_streams_are_packed():
    assert _layout((100, 100), "uint16", 8) is None  # 20,000 bytes: not whole 8 KiB blocks
    assert PieceLayout.of(get_encoder("zstd"), 16, (256, 256), np.dtype("uint16"), "block") is None
    assert PieceLayout.of(BitshuffleLZ4(), 16, (256, 256), np.dtype("uint16"), "store_raw") is None
    lay = _layout((1024, 1024), "uint16", 1)
    assert lay.n_pieces == 16 and lay.piece_elems * 2 == 128 << 10


@pytest.mark.parametrize("compression,block", [("bslz4", 16384), (BitshuffleLZ4(8192), 8192)])
def test_frames_of_whole_16k_blocks_are_stored_in_16k_blocks_unless_chosen(tmp_path, compression,
                                                                          block):
    frames = detector_frames(40, (256, 256), seed=5)
    path = str(tmp_path / "a.emd")
    with EMDWriter(path, (256, 256), compression=compression) as w:
        w.put_many(frames[:20])
        for f in frames[20:]:
            w.put(f)
    import h5py
    with h5py.File(path, "r") as f:
        ds = f["data/dataset_1/data"]
        for offset in ((0, 0, 0), (16, 0, 0), (32, 0, 0)):
            assert ds.id.read_direct_chunk(offset)[1][8:12] == block.to_bytes(4, "big")
    np.testing.assert_array_equal(emdstream.open(path)["dataset_1"].data[()], frames)


@pytest.mark.parametrize("shape,dtype,k", LAYOUTS, ids=lambda x: str(x))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pieces_from_either_thread_give_the_whole_chunk(shape, dtype, k, seed):
    lay = _layout(shape, dtype, k)
    frames = detector_frames(k, shape, dtype, seed=seed)
    rng = np.random.default_rng(seed)
    buf = np.empty((k,) + shape, dtype)
    pack = Packing(lay, buf.reshape(-1))
    position = 0
    while position < k:  # blocks of random sizes; the writer's backlog at random (none: raw)
        n = int(rng.integers(1, 4))
        pack.take(position, frames[position:position + n],
                  backlog=int(rng.integers(0, lay.n_pieces + 1)))
        position += n
    expected = bytes(lay.encoder.encode(frames))
    assert bytes(pack.finish()) == expected
    pack.materialize()  # the raw frames back where the producer compressed without copying
    np.testing.assert_array_equal(buf, frames)
    pack.reset()
    for position in range(k):  # frame_buffer: frames written in place, then committed
        buf[position] = frames[position]
        pack.filled_in_place(position, backlog=lay.n_pieces if position % 3 == 0 else 0)
    assert bytes(pack.finish()) == expected


def _write(path, frames, how, inline, **kw):
    with EMDWriter(path, frames.shape[1:], frames.dtype, n_frames=len(frames), **kw) as w:
        if inline is not None:  # force every piece to one thread
            w._stream.assembler.raw_handed = 10**12 if inline else -(10**12)
        for i in range(0, len(frames), 5 if how == "put_many" else 1):
            if how == "put":
                w.put(frames[i], z=float(i))
            elif how == "put_many":
                w.put_many(frames[i:i + 5], z=np.arange(i, i + len(frames[i:i + 5]), dtype=float))
            else:
                with w.frame_buffer(z=float(i)) as buf:
                    buf[...] = frames[i]
    return w


@pytest.mark.parametrize("how", ["put", "put_many", "frame_buffer"])
@pytest.mark.parametrize("inline", [True, False, None], ids=["producer", "writer", "shared"])
@pytest.mark.parametrize("shape,chunk_frames", [((64, 64), 24), ((128, 128), 5), ((256, 256), 1)])
def test_streams_read_back_whoever_compressed(tmp_path, how, inline, shape, chunk_frames):
    frames = detector_frames(37, shape, seed=3)
    frames[5] = np.random.default_rng(0).integers(0, 2**16, shape)  # incompressible frame
    path = str(tmp_path / "p.emd")
    w = _write(path, frames, how, inline, chunk_frames=chunk_frames)
    assert w._stream.assembler.layout is not None
    with emdstream.open(path) as f:
        ds = f["dataset_1"]
        np.testing.assert_array_equal(ds.data[()], frames)
        np.testing.assert_array_equal(ds.values["z"], np.arange(37.0))


def test_incompressible_chunks_of_packed_streams_are_stored_raw(tmp_path):
    rng = np.random.default_rng(1)
    frames = np.concatenate([detector_frames(8, (64, 64)),
                             rng.integers(0, 2**16, (8, 64, 64), dtype=np.uint16)])
    path = str(tmp_path / "noise.emd")
    _write(path, frames, "put", True, chunk_frames=8)
    with emdstream.open(path) as f:
        np.testing.assert_array_equal(f["dataset_1"].data[()], frames)
        assert dict(f["dataset_1"].group.attrs)["raw_chunks_incompressible"] == 1


def test_a_flush_of_a_partial_chunk_sees_frames_compressed_at_put(tmp_path):
    """A slow stream's partial chunk is written at each flush: frames the producer compressed
    without copying are decoded back for it."""
    import time

    frames = detector_frames(6, (64, 64), seed=5)
    path = str(tmp_path / "slow.emd")
    with EMDWriter(path, (64, 64), n_frames=16, chunk_frames=16, flush_seconds=0.05) as w:
        w._stream.assembler.raw_handed = 10**12
        for i, frame in enumerate(frames):
            w.put(frame)
            deadline = time.monotonic() + 10
            while w.frames_written < i + 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            with emdstream.open(path, live=True) as f:
                np.testing.assert_array_equal(f["dataset_1"].data[:i + 1], frames[:i + 1])
        w.put_many(detector_frames(10, (64, 64), seed=6))
    with emdstream.open(path) as f:
        np.testing.assert_array_equal(f["dataset_1"].data[:6], frames)


def test_the_writer_gets_up_to_one_chunk_of_pieces_and_none_when_behind():
    """``room``: with no backlog every piece of a chunk is left raw for the writer thread; with a
    chunk's worth of pieces still to compress, the producer compresses every piece itself."""
    lay = _layout((256, 256), np.uint16, 16)
    frames = detector_frames(16, (256, 256), np.uint16)
    for backlog, left in [(0, lay.n_pieces), (lay.n_pieces // 4, lay.n_pieces * 3 // 4),
                          (lay.n_pieces, 0), (10 * lay.n_pieces, 0)]:
        pack = Packing(lay, np.empty((16, 256, 256), np.uint16).reshape(-1))
        for position in range(16):
            pack.take(position, frames[position:position + 1], backlog)
        assert pack.raw_pieces() == left
        assert bytes(pack.finish()) == bytes(lay.encoder.encode(frames))
