"""py4DSTEM: to_py4dstem and `emdstream convert --to emd1` files opened by py4DSTEM.read.

py4DSTEM 0.14 pins numpy < 2, so these tests run in their own environment (`nox -s py4dstem`,
or a venv with `pip install -e '.[test,py4dstem]'`); elsewhere they are skipped.
"""
import warnings

import hdf5plugin  # noqa: F401  (py4DSTEM.read does not load the bslz4 filter itself)
import numpy as np
import pytest
from support.frames import detector_frames

import emdstream
from emdstream import Dim, EMDWriter
from emdstream.tools.cli import main

pytestmark = pytest.mark.py4dstem
py4DSTEM = pytest.importorskip("py4DSTEM", reason="py4DSTEM (numpy < 2) not installed here")

DIMS = [Dim("scan_y", "[nm]", scale=0.5), Dim("scan_x", "[nm]", scale=0.5),
        Dim("k_y", "[1/nm]", scale=0.2), Dim("k_x", "[1/nm]", scale=0.2)]


@pytest.fixture
def scan(tmp_path):
    path = str(tmp_path / "scan.emd")
    frames = detector_frames(12, (10, 8))
    with EMDWriter(path, (10, 8), "uint16", scan_shape=(3, 4), dims=DIMS, chunk_frames=5,
                   microscope={"high_tension_kV": 300.0, "ok": True, "a/b": 1},
                   sample={"name": "SrTiO3"}) as w:
        for frame in frames:
            w.put(frame)
    return path, frames.reshape(3, 4, 10, 8)


def check_cube(dc, want):
    assert isinstance(dc, py4DSTEM.DataCube)
    np.testing.assert_array_equal(dc.data, want)
    cal = dc.calibration
    assert (cal.get_R_pixel_size(), cal.get_R_pixel_units()) == (0.5, "nm")
    assert cal.get_Q_pixel_size() == pytest.approx(0.02) and cal.get_Q_pixel_units() == "A^-1"


def test_to_py4dstem(scan):
    path, want = scan
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a calibration py4DSTEM can express: no warning
        dc = emdstream.open(path)["dataset_1"].to_py4dstem()
    check_cube(dc, want)
    assert dc.root.metadata["microscope"]["high_tension_kV"] == 300.0
    assert dc.root.metadata["sample"]["name"] == "SrTiO3"


def test_convert_to_emd1_opens_in_py4dstem_read(scan, tmp_path):
    path, want = scan
    out = str(tmp_path / "scan_emd1.h5")
    assert main(["convert", path, out, "--to", "emd1"]) == 0
    dc = py4DSTEM.read(out)
    check_cube(dc, want)
    np.testing.assert_allclose(dc.dims[0][:3], [0, 0.5, 1.0])
    assert dc.dim_units[2] == "A^-1"
    assert dc.root.metadata["microscope"]["high_tension_kV"] == 300.0
    assert dc.root.metadata["microscope"]["ok"] is True
    assert dc.root.metadata["microscope"]["a%2Fb"] == 1  # "/" is escaped in HDF5 names


def test_multi_stream_file_in_py4dstem(scan, tmp_path):
    from support.emd_files import add_haadf

    path, want = scan
    image = add_haadf(path, scan=(3, 4))
    out = str(tmp_path / "multi.h5")
    assert main(["convert", path, out]) == 0
    root = py4DSTEM.read(out)  # two nodes: py4DSTEM returns the root
    assert sorted(root._branch.keys()) == ["dataset_1", "haadf"]
    np.testing.assert_array_equal(root.tree("haadf").data, image)
    check_cube(py4DSTEM.read(out, datapath="emdstream_root/dataset_1"), want)


def test_py4dstem_saved_file_converts_to_emd02(scan, tmp_path):
    path, want = scan
    dc = emdstream.open(path)["dataset_1"].to_py4dstem()
    saved, back = str(tmp_path / "saved.h5"), str(tmp_path / "back.emd")
    py4DSTEM.save(saved, dc, mode="o")
    assert main(["convert", saved, back]) == 0
    with emdstream.open(back) as f:
        ds = f["dataset_1"]
        np.testing.assert_array_equal(ds.data[()], want)
        assert [d.name for d in ds.dims] == ["Rx", "Ry", "Qx", "Qy"]
        assert [d.units for d in ds.dims] == ["[nm]", "[nm]", "[A^-1]", "[A^-1]"]
        np.testing.assert_allclose(ds.dims[1].values, 0.5 * np.arange(4))
        assert f.metadata["microscope"]["high_tension_kV"] == 300.0
        assert f.metadata["sample"]["name"] == "SrTiO3"


def test_not_a_datacube_is_refused(tmp_path):
    path = str(tmp_path / "stack.emd")
    with EMDWriter(path, (4, 4), "uint16", n_frames=2) as w:
        w.put(np.zeros((4, 4), np.uint16))
        w.put(np.ones((4, 4), np.uint16))
    with pytest.raises(ValueError, match="2-D scan of 2-D frames"):
        emdstream.open(path)["dataset_1"].to_py4dstem()


def test_ncempy_that_py4dstem_installs_reads_bslz4_with_hdf5plugin(scan):
    """docs/readers.md: ncempy 1.11 (py4DSTEM's) needs `import hdf5plugin` (imported above) for bslz4."""
    import ncempy.io

    path, want = scan
    got = ncempy.io.read(path)
    np.testing.assert_array_equal(got["data"], want)
    assert list(got["pixelUnit"]) == ["[nm]", "[nm]", "[1/nm]", "[1/nm]"]
