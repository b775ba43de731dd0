"""Files written by emdstream open in the readers people use, with equal data and dims."""
import subprocess

import h5py
import numpy as np
import pytest
from support.frames import COMPRESSIONS, detector_frames, write_frames
from support.processes import h5dump_env, requires_h5dump

from emdstream import Dim

# (label, frame_shape, writer kwargs, n frames) -> data of 2, 3 and 4 dimensions
LAYOUTS = [
    ("2d", (48,), dict(n_frames=10), 10),
    ("3d", (24, 20), dict(), 13),
    ("4d", (16, 12), dict(scan_shape=(3, 5)), 15),
]
DTYPES = ["uint8", "uint16", "uint32", "float32"]


def write(path, frames, compression, **kw):
    """The frames in a file with named dims of units and scales that differ per axis; returns the
    dims."""
    frame_shape = frames.shape[1:]
    ndim = len(frame_shape) + (len(kw["scan_shape"]) if "scan_shape" in kw else 1)
    names = ["scan_y", "scan_x", "k_y", "k_x"][-ndim:] if ndim == 4 else \
        ["time", "k_y", "k_x"][:ndim] if ndim == 3 else ["time", "energy"]
    units = ["[nm]", "[nm]", "[px]", "[px]"][-ndim:] if ndim == 4 else ["[s]", "[px]", "[px]"][:ndim]
    scales = [0.25, 0.5, 1.0, 2.0][:ndim]
    dims = [Dim(n, u, scale=s) for n, u, s in zip(names, units, scales)]
    write_frames(path, frames, compression=compression, dims=dims, chunk_frames=4, **kw)
    return dims


def expected(frames, kw):
    if "scan_shape" in kw:
        return frames.reshape(tuple(kw["scan_shape"]) + frames.shape[1:])
    return frames


@pytest.mark.parametrize("compression", COMPRESSIONS, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("label,frame_shape,kw,n", LAYOUTS, ids=[x[0] for x in LAYOUTS])
def test_ncempy_rsciio_h5py_read_what_was_put(tmp_path, compression, dtype, label, frame_shape, kw, n):
    import ncempy.io
    from rsciio.emd import file_reader

    path = str(tmp_path / f"{label}.emd")
    frames = detector_frames(n, frame_shape if len(frame_shape) == 2 else (1,) + frame_shape,
                             dtype).reshape((n,) + frame_shape)
    dims = write(path, frames, compression, **kw)
    want = expected(frames, kw)

    with h5py.File(path, "r") as f:  # plain h5py (+ hdf5plugin imported by conftest)
        np.testing.assert_array_equal(f["data/dataset_1/data"][()], want)

    got = ncempy.io.read(path)
    np.testing.assert_array_equal(got["data"], want)
    assert list(got["pixelUnit"]) == [d.units for d in dims]
    np.testing.assert_allclose(got["pixelSize"], [d.scale for d in dims])

    signals = file_reader(path)
    assert len(signals) == 1
    np.testing.assert_array_equal(np.asarray(signals[0]["data"]), want.T)  # rsciio reverses axes
    axes = signals[0]["axes"][::-1]
    assert [a["name"] for a in axes] == [d.name for d in dims]
    assert [a["units"] for a in axes] == [d.units.strip("[]") for d in dims]
    np.testing.assert_allclose([a["scale"] for a in axes], [d.scale for d in dims])
    assert [a["size"] for a in axes] == list(want.shape)


@requires_h5dump
@pytest.mark.parametrize("compression", COMPRESSIONS, ids=str)
def test_hdf5_1_10_tools_read_the_file(tmp_path, compression):
    path = str(tmp_path / "tools.emd")
    frames = detector_frames(6, (8, 8), "uint16")
    write(path, frames, compression, scan_shape=(2, 3))
    out = subprocess.run(["h5dump", "-d", "/data/dataset_1/data", "-s", "1,2,0,0", "-c", "1,1,1,8",
                          path], capture_output=True, text=True, env=h5dump_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    values = [int(v) for v in out.stdout.split("(1,2,0,0):")[1].split("}")[0].replace(",", " ").split()]
    assert values == frames[5, 0].tolist()
    listing = subprocess.run(["h5ls", "-r", path], capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0
    for obj in ("/data/dataset_1/data", "/data/dataset_1/dim1", "/data/dataset_1/dim4", "/comments"):
        assert obj in listing.stdout
