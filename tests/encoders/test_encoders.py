"""Chunk encoders: what EMDWriter writes (direct chunks) is exactly what HDF5 filters decode.

Every encoder is checked three ways: chunks encoded by hand and stored with write_direct_chunk,
whole streams written by EMDWriter (odd frame shapes, partial last chunks, scans whose rows are
not a multiple of chunk_frames) read back with plain h5py and ncempy, and a hypothesis property
test over random shapes / dtypes / chunkings.
"""
import os
import tempfile

import h5py
import hdf5plugin  # noqa: F401  (registers the filters for plain h5py reads)
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.frames import COMPRESSIONS, write_frames

from emdstream import EMDWriter
from emdstream.encoders import COMPRESSIONS as ENCODER_NAMES
from emdstream.encoders import GzipShuffle, get_encoder

DTYPES = ["uint8", "uint16", "uint32", "int16", "float32", "float64"]


def sample_values(shape, dtype, seed=0):
    """Random values over the dtype's whole range, with its extremes (and NaN/inf for floats)."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    if dtype.kind == "f":
        flat = (rng.standard_normal(n) * 1e3).astype(dtype)
        specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, np.finfo(dtype).max,
                             np.finfo(dtype).tiny], dtype=dtype)
    else:
        info = np.iinfo(dtype)
        # mostly small counts (compressible, like detector data) plus some full-range values
        flat = rng.integers(0, min(50, info.max), size=n, dtype=dtype)
        wide = rng.integers(info.min, info.max, size=n, endpoint=True, dtype=dtype)
        flat = np.where(rng.random(n) < 0.2, wide, flat).astype(dtype)
        specials = np.array([info.min, info.max, 0, 1], dtype=dtype)
    k = min(n, specials.size)
    flat[rng.choice(n, size=k, replace=False)] = specials[:k]
    return flat.reshape(shape)


def expected_array(frames, kw):
    if kw.get("scan_shape"):
        return frames.reshape(tuple(kw["scan_shape"]) + frames.shape[1:])
    return frames


def assert_bitwise_equal(got, want):
    got = np.asarray(got)
    assert got.shape == want.shape
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    # bitwise: NaN == NaN, -0.0 != 0.0
    np.testing.assert_array_equal(got.view(f"u{want.itemsize}"), want.view(f"u{want.itemsize}"))


def check_file(path, want):
    import ncempy.io

    with h5py.File(path, "r") as f:
        data = f["data/dataset_1/data"]
        assert_bitwise_equal(data[()], want)
    got = ncempy.io.read(path)
    assert_bitwise_equal(got["data"], want)


def test_every_advertised_compression_has_an_encoder():
    assert set(COMPRESSIONS) == set(ENCODER_NAMES)
    for name in COMPRESSIONS:
        enc = get_encoder(name)
        assert enc.name == name
    with pytest.raises(ValueError, match="compression"):
        get_encoder("lz5")


# --- chunks encoded by hand ------------------------------------------------------------------

CHUNK_SHAPES = [(1, 1), (7, 13), (1, 3, 5, 2), (3, 1000), (2, 1, 9)]


@pytest.mark.parametrize("compression", [*COMPRESSIONS, "deflate alone"], ids=str)
def test_direct_chunk_bytes_decode_with_the_hdf5_filter(tmp_path, compression):
    # "deflate alone": gzip without the shuffle, as the value tables are written
    enc = GzipShuffle(1, shuffle=False) if compression == "deflate alone" else get_encoder(compression)
    path = str(tmp_path / "direct.h5")
    written = {}
    with h5py.File(path, "w") as f:
        for dtype in DTYPES:
            for i, shape in enumerate(CHUNK_SHAPES):
                chunk = sample_values(shape, dtype, seed=i)
                ds = f.create_dataset(f"{dtype}_{i}", shape=shape, chunks=shape, dtype=dtype,
                                      **enc.dataset_options())
                ds.id.write_direct_chunk((0,) * len(shape), enc.encode(chunk))
                written[ds.name] = chunk
            # an edge chunk: the dataset is smaller than the chunk, the chunk is stored whole
            chunk = sample_values((4, 6), dtype, seed=99)
            ds = f.create_dataset(f"{dtype}_edge", shape=(6, 9), chunks=(4, 6), dtype=dtype,
                                  **enc.dataset_options())
            ds.id.write_direct_chunk((4, 6), enc.encode(chunk))
            written[ds.name] = ("edge", chunk)
    with h5py.File(path, "r") as f:
        for name, want in written.items():
            if isinstance(want, tuple):
                got = f[name][4:6, 6:9]
                assert_bitwise_equal(got, np.ascontiguousarray(want[1][:2, :3]))
            else:
                assert_bitwise_equal(f[name][()], want)


@pytest.mark.parametrize("compression", COMPRESSIONS, ids=str)
def test_encode_accepts_non_contiguous_chunks(tmp_path, compression):
    enc = get_encoder(compression)
    base = sample_values((8, 10, 6), "uint16", seed=3)
    chunk = base[::2, 1::2, ::-1]  # a strided view
    assert not chunk.flags.c_contiguous
    with h5py.File(tmp_path / "nc.h5", "w") as f:
        ds = f.create_dataset("d", shape=chunk.shape, chunks=chunk.shape, dtype="uint16",
                              **enc.dataset_options())
        ds.id.write_direct_chunk((0, 0, 0), enc.encode(chunk))
        assert_bitwise_equal(ds[()], np.ascontiguousarray(chunk))


# --- whole streams through EMDWriter -----------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("compression", COMPRESSIONS, ids=str)
def test_writer_roundtrip_every_dtype(tmp_path, compression, dtype):
    # 10 frames of 7x13 in chunks of 4: the last chunk holds 2 frames
    path = str(tmp_path / "s.emd")
    frames = sample_values((10, 7, 13), dtype, seed=1)
    write_frames(path, frames, compression=compression, chunk_frames=4, n_frames=10)
    check_file(path, frames)


SHAPE_CASES = [
    # label, frame_shape, dtype, writer kwargs, n frames, chunk_frames
    ("1x1", (1, 1), "uint16", dict(n_frames=9), 9, 4),
    ("3x5x2", (3, 5, 2), "float32", dict(n_frames=7), 7, 3),
    ("1d_17", (17,), "int16", dict(n_frames=5), 5, 2),
    ("scan_row5_k4", (7, 13), "uint32", dict(scan_shape=(3, 5)), 15, 4),
    ("scan_1x1_k2", (1, 1), "float64", dict(scan_shape=(2, 3)), 6, 2),
    ("open_ended_11_k4", (24, 20), "uint8", dict(), 11, 4),
]


@pytest.mark.parametrize("label,frame_shape,dtype,kw,n,k", SHAPE_CASES,
                         ids=[c[0] for c in SHAPE_CASES])
@pytest.mark.parametrize("compression", COMPRESSIONS, ids=str)
def test_writer_roundtrip_odd_shapes_and_partial_chunks(tmp_path, compression, label, frame_shape,
                                                        dtype, kw, n, k):
    path = str(tmp_path / f"{label}.emd")
    frames = sample_values((n,) + frame_shape, dtype, seed=n)
    write_frames(path, frames, compression=compression, chunk_frames=k, **kw)
    check_file(path, expected_array(frames, kw))


# --- property test -------------------------------------------------------------------------------

@st.composite
def streams(draw):
    frame_shape = tuple(draw(st.lists(st.integers(1, 9), min_size=1, max_size=3)))
    dtype = draw(st.sampled_from(DTYPES))
    compression = draw(st.sampled_from(COMPRESSIONS))
    chunk_frames = draw(st.integers(1, 6))
    mode = draw(st.sampled_from(["scan", "stack", "open-ended"]))
    frame_bytes = int(np.prod(frame_shape)) * np.dtype(dtype).itemsize
    if mode == "open-ended" and frame_bytes < 1024:
        # with tiny frames an open-ended writer currently pre-allocates a dim1 vector for ~256 MiB
        # worth of frames (up to GiBs, see test_layout.py::test_open_ended_small_frames_...)
        mode = "stack"
    if mode == "scan":
        scan_shape = (draw(st.integers(1, 3)), draw(st.integers(1, 5)))
        kw = dict(scan_shape=scan_shape)
        n = scan_shape[0] * scan_shape[1]
    else:
        n = draw(st.integers(1, 12))
        kw = dict(n_frames=n) if mode == "stack" else {}
    seed = draw(st.integers(0, 2 ** 16))
    return frame_shape, dtype, compression, chunk_frames, kw, n, seed


@settings(max_examples=12, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_property_write_then_read_is_identity(case):
    write_then_read(case)


@pytest.mark.campaign  # the same property over many more cases (CI runs the campaign)
@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_property_write_then_read_is_identity_over_many_cases(case):
    write_then_read(case)


def write_then_read(case) -> None:
    frame_shape, dtype, compression, chunk_frames, kw, n, seed = case
    frames = sample_values((n,) + frame_shape, dtype, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "p.emd")
        write_frames(path, frames, compression=compression, chunk_frames=chunk_frames, **kw)
        with h5py.File(path, "r") as f:
            assert_bitwise_equal(f["data/dataset_1/data"][()], expected_array(frames, kw))
            assert int(f["data/dataset_1"].attrs["frames_written"]) == n


@pytest.mark.parametrize("dtype", [">u2", ">f8"])
@pytest.mark.parametrize("compression", [None, "bslz4"], ids=str)
def test_non_native_byte_order_dtype_is_stored_exactly_or_refused(tmp_path, compression, dtype):
    # A writer dtype in big-endian order must either be refused up front or stored with the
    # values that were put; never silently byte-swapped.
    path = str(tmp_path / "be.emd")
    frames = sample_values((5, 3, 4), np.dtype(dtype).newbyteorder("="), seed=5).astype(dtype)
    try:
        w = EMDWriter(path, (3, 4), dtype, n_frames=5, chunk_frames=2, workers=1,
                      compression=compression)
    except (TypeError, ValueError):
        assert not os.path.exists(path)
        return
    with w:
        for fr in frames:
            w.put(fr)
    with h5py.File(path, "r") as f:
        got = f["data/dataset_1/data"][()]
    np.testing.assert_array_equal(got, frames)  # compares values, whatever the byte order


def test_fast_deflate_decodes_to_the_same_bytes_with_hdf5_and_pickles(tmp_path):
    import pickle

    import h5py
    rows = np.full((1024, 32), np.nan)
    rows[:, 0] = 1.7e9 + np.arange(1024) * 1e-4
    enc = pickle.loads(pickle.dumps(GzipShuffle(level=6, shuffle=False, fast=True)))  # dask ships it
    with h5py.File(tmp_path / "v.h5", "w") as f:
        d = f.create_dataset("v", rows.shape, rows.dtype, chunks=rows.shape, **enc.dataset_options())
        d.id.write_direct_chunk((0, 0), enc.encode(rows))
    with h5py.File(tmp_path / "v.h5", "r") as f:
        np.testing.assert_array_equal(f["v"][()], rows)
    assert enc.level == 1
