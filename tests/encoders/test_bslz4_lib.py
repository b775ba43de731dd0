"""bslz4 without the bitshuffle package: hdf5plugin's bundled library compresses through ctypes,
byte for byte what the bitshuffle wheel writes, and h5py + hdf5plugin decode it."""
import os
import subprocess
import sys

import h5py
import hdf5plugin  # noqa: F401  (filters for reading back)
import numpy as np
import pytest

from emdstream.encoders import BitshuffleLZ4, bslz4_lib

CASES = [((256, 256), "uint16"), ((16, 64, 64), "uint16"), ((100, 100), "uint16"), ((7,), "uint8"),
         ((3, 5, 5), "uint32"), ((33, 17), "float64"), ((2, 128, 128), "int16")]


def _sample(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    counts = rng.poisson(2.0, size=shape)
    return np.where(rng.random(shape) < 0.05, rng.integers(0, 255, shape), counts).astype(dtype)


def _body(lib: bslz4_lib.Bslz4Library, a: np.ndarray) -> bytes:
    block = BitshuffleLZ4().block_elems(a.itemsize)
    out = np.empty(lib.bound(a.size, a.itemsize, block), np.uint8)
    return bytes(out[:lib.compress(a.ctypes.data, out.ctypes.data, a.size, a.itemsize, block)])


@pytest.mark.parametrize("shape,dtype", CASES)
def test_same_bytes_whichever_library(shape, dtype):
    a = _sample(shape, dtype)
    ours = _body(bslz4_lib.library("hdf5plugin"), a)
    if bslz4_lib.bitshuffle_paths() is None:
        pytest.skip("bitshuffle is not installed: nothing to compare with")
    bitshuffle = pytest.importorskip("bitshuffle")
    assert ours == _body(bslz4_lib.library("bitshuffle"), a)
    assert ours == bitshuffle.compress_lz4(a.reshape(-1), BitshuffleLZ4().block_elems(a.itemsize)).tobytes()


@pytest.mark.parametrize("block_bytes", [None, 16384, 1024])
@pytest.mark.parametrize("shape,dtype", CASES)
def test_chunks_decode_with_h5py(tmp_path, shape, dtype, block_bytes):
    # the filter decodes in the block size each chunk's header names, not the dataset's options
    a = _sample((2,) + shape, dtype, seed=1)
    enc = BitshuffleLZ4(block_bytes)
    with h5py.File(tmp_path / "c.h5", "w") as f:
        d = f.create_dataset("d", a.shape, dtype, chunks=(1,) + shape, **enc.dataset_options())
        for i in range(2):
            d.id.write_direct_chunk((i,) + (0,) * len(shape), enc.encode(a[i]))
    with h5py.File(tmp_path / "c.h5", "r") as f:
        np.testing.assert_array_equal(f["d"][()], a)
    back = np.empty_like(a[0])
    enc.decode_into(enc.encode(a[0]), back)
    np.testing.assert_array_equal(back, a[0])


def test_block_aligned_bodies_concatenate():
    """The bodies of block-aligned frames, joined under one header, are the whole chunk's."""
    enc, frames = BitshuffleLZ4(), _sample((4, 64, 64), "uint16")
    joined = enc.header(frames.nbytes, 2) + b"".join(bytes(enc.encode(f)[12:]) for f in frames)
    assert joined == bytes(enc.encode(frames))


def test_writes_without_the_bitshuffle_package(tmp_path):
    """A fresh interpreter where ``import bitshuffle`` fails writes and reads back bslz4."""
    code = f"""
import sys, numpy as np
sys.modules["bitshuffle"] = None  # not installed
import importlib.util
importlib.util.find_spec = (lambda f: lambda name, *a: None if name == "bitshuffle" else f(name, *a))(
    importlib.util.find_spec)
from emdstream import EMDWriter
from emdstream.encoders import bslz4_lib
import emdstream
frames = (np.arange(20 * 64 * 64) % 97).astype("uint16").reshape(20, 64, 64)
with EMDWriter({str(tmp_path / 'x.emd')!r}, (64, 64), n_frames=20) as w:
    for f in frames:
        w.put(f)
assert bslz4_lib.library().name == "hdf5plugin", bslz4_lib.library()
with emdstream.open({str(tmp_path / 'x.emd')!r}) as ef:
    assert np.array_equal(ef["dataset_1"].data[()], frames)
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if k != "EMDSTREAM_BSLZ4_LIBRARY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stdout + out.stderr


def test_encode_into_a_reused_buffer_gives_each_chunks_own_bytes():
    """encode_into writes a whole payload (header and body) into a buffer used before for another
    chunk: the same bytes as encode, nothing of the earlier chunk left in the payload."""
    enc = BitshuffleLZ4()
    big, small = _sample((4096,), "uint32", seed=1), np.zeros(4096, np.uint32)
    out = np.full(enc.out_bytes(big.nbytes, big.itemsize), 0xAB, np.uint8)
    for chunk in (big, small, big):
        payload = enc.encode_into(chunk, out)
        assert bytes(payload) == bytes(enc.encode(chunk))
        assert np.shares_memory(payload, out)
        decoded = np.empty_like(chunk)
        enc.decode_into(payload, decoded)
        assert np.array_equal(decoded, chunk)


@pytest.mark.parametrize("out", [np.empty(10, np.uint8), np.empty(70000, np.uint16),
                                 np.empty((2, 40000), np.uint8), np.empty(80000, np.uint8)[::2]])
def test_encode_into_refuses_a_buffer_it_would_overrun(out):
    with pytest.raises(ValueError, match="encode_into needs"):
        BitshuffleLZ4().encode_into(np.zeros(16384, np.uint32), out)


def test_block_size_is_in_the_header_and_wide_blocks_only_for_whole_ones():
    a = _sample((64, 64), "uint16")
    assert bytes(BitshuffleLZ4(16384).encode(a)[8:12]) == (16384).to_bytes(4, "big")
    assert bytes(BitshuffleLZ4().encode(a)[8:12]) == (8192).to_bytes(4, "big")
    assert BitshuffleLZ4().for_frames(256 * 256 * 2, 2).block_bytes == 16384
    assert BitshuffleLZ4().for_frames(64 * 64 * 2, 2).block_bytes == 8192  # half a wide block
    assert BitshuffleLZ4(8192).for_frames(256 * 256 * 2, 2).block_bytes == 8192  # chosen: kept
    with pytest.raises(ValueError, match="multiple of 64"):
        BitshuffleLZ4(1000)
    assert BitshuffleLZ4(np.int64(16384)).block_bytes == 16384


def test_a_streams_encoder_keeps_its_class_and_settings():
    class Mine(BitshuffleLZ4):
        pass
    mine = Mine()
    wide = mine.for_frames(256 * 256 * 2, 2)
    assert type(wide) is Mine and wide.block_bytes == 16384 and mine.block_bytes == 8192
    assert wide.dataset_options() != mine.dataset_options()  # the block size declared
    assert type(Mine().for_frames(64 * 64 * 2, 2)) is Mine
