"""EMDDataset.to_hyperspy: the signal type, navigation, axes and metadata HyperSpy users expect."""
import sys

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from support.frames import detector_frames

import emdstream
from emdstream import Dim, EMDWriter
from emdstream.read.dataset import EMDDataset

hs = pytest.importorskip("hyperspy.api")

SCAN = (3, 4)
FRAME = (10, 8)
DIMS = [Dim("scan_y", "[nm]", scale=0.5), Dim("scan_x", "[nm]", scale=0.25, offset=1.0),
        Dim("k_y", "[1/nm]", scale=0.1, offset=-0.5), Dim("k_x", "[1/nm]", scale=0.1)]


@pytest.fixture
def scan(tmp_path):
    path = str(tmp_path / "scan.emd")
    frames = detector_frames(SCAN[0] * SCAN[1], FRAME)
    with EMDWriter(path, FRAME, "uint16", scan_shape=SCAN, dims=DIMS, chunk_frames=5,
                   microscope={"high_tension_kV": 200.0, "camera_length_cm": 11.5,
                               "convergence_angle_mrad": 21.4, "beam_current_pA": 50.0,
                               "name": "Spectra 300", "vacuum_ok": True},
                   sample={"name": "SrTiO3", "thickness_nm": 40.0},
                   user={"operator": "A. B."}) as w:
        for frame in frames:
            w.put(frame)
        w.comment("beam blanked")
    return path, frames.reshape(SCAN + FRAME)


def test_4d_scan_is_signal2d_navigated_by_the_scan(scan):
    path, want = scan
    with emdstream.open(path) as f:
        s = f["dataset_1"].to_hyperspy()
    assert isinstance(s, hs.signals.Signal2D) and not s._lazy
    assert s.axes_manager.navigation_shape == (SCAN[1], SCAN[0])  # x first
    assert s.axes_manager.signal_shape == (FRAME[1], FRAME[0])
    for y in range(SCAN[0]):
        for x in range(SCAN[1]):
            np.testing.assert_array_equal(s.inav[x, y].data, want[y, x])
    nav = {a.name: a for a in s.axes_manager.navigation_axes}
    sig = {a.name: a for a in s.axes_manager.signal_axes}
    assert (nav["scan_x"].scale, nav["scan_x"].offset, nav["scan_x"].units) == (0.25, 1.0, "nm")
    assert (nav["scan_y"].scale, nav["scan_y"].units) == (0.5, "nm")
    assert sig["k_y"].scale == pytest.approx(0.1) and sig["k_y"].offset == -0.5
    assert sig["k_x"].units == "1/nm"
    md = s.metadata
    assert md.General.title == "dataset_1" and md.General.original_filename == "scan.emd"
    tem = md.Acquisition_instrument.TEM
    assert tem.beam_energy == 200.0 and tem.camera_length == pytest.approx(115.0)
    assert tem.convergence_angle == 21.4 and tem.beam_current == pytest.approx(0.05)
    assert tem.microscope == "Spectra 300"
    assert md.Sample.description == "SrTiO3" and md.Sample.thickness == 40.0
    assert md.General.authors == "A. B."
    om = s.original_metadata
    assert om.microscope.high_tension_kV == 200.0 and om.microscope.vacuum_ok is True
    assert "beam blanked" in om.comments.as_dictionary().values()
    assert om.dataset.frames_written == SCAN[0] * SCAN[1]


def test_lazy_signal_reads_nothing_until_computed(scan):
    path, want = scan
    reads = []

    class Counting(h5py.Dataset):
        def __getitem__(self, key):
            reads.append(key)
            return super().__getitem__(key)

    with emdstream.open(path) as f:
        ds = f["dataset_1"]
        ds.data = Counting(ds.data.id)
        s = ds.to_hyperspy(lazy=True)
        assert s._lazy and isinstance(s, hs.signals.Signal2D)
        assert reads == []
        np.testing.assert_array_equal(s.inav[2, 1].data.compute(), want[1, 2])
        assert reads
        np.testing.assert_array_equal(s.sum(axis=(2, 3)).data.compute(), want.sum(axis=(2, 3)))


@pytest.mark.parametrize("frame_shape,cls", [((6, 5), hs.signals.Signal2D),
                                             ((30,), hs.signals.Signal1D)], ids=["images", "spectra"])
def test_stack_is_navigated_by_the_frame_number(tmp_path, frame_shape, cls):
    path = str(tmp_path / "stack.emd")
    frames = detector_frames(7, (1,) + frame_shape if len(frame_shape) == 1 else frame_shape)
    frames = frames.reshape((7,) + frame_shape)
    with EMDWriter(path, frame_shape, "uint16", chunk_frames=3) as w:  # open-ended stack
        for frame in frames:
            w.put(frame)
    s = emdstream.open(path)["dataset_1"].to_hyperspy()
    assert type(s) is cls and s.axes_manager.navigation_shape == (7,)
    assert s.axes_manager.navigation_axes[0].name == "frame"
    for i in (0, 6):
        np.testing.assert_array_equal(s.inav[i].data, frames[i])


def test_non_uniform_axis_keeps_its_values(tmp_path):
    path = str(tmp_path / "eels.emd")
    energy = np.array([0.0, 0.5, 1.5, 3.0, 5.0, 7.5])
    with EMDWriter(path, (6,), "float32", scan_shape=(2, 3), compression="gzip",
                   dims=[Dim("y", "[nm]"), Dim("x", "[nm]"), Dim("energy", "[eV]", values=energy)]) as w:
        for i in range(6):
            w.put(np.full(6, i, np.float32))
    s = emdstream.open(path)["dataset_1"].to_hyperspy()
    assert isinstance(s, hs.signals.Signal1D) and s.axes_manager.navigation_shape == (3, 2)
    axis = s.axes_manager.signal_axes[0]
    assert not axis.is_uniform and axis.units == "eV"
    np.testing.assert_array_equal(axis.axis, energy)
    assert s.inav[2, 1].data[0] == 5


@pytest.mark.parametrize("tilts,drop", [([0.0, 1.0, 0.5], False), ([0.0, 1.0, 2.0, 3.0], True)],
                         ids=["unordered", "dropped"])
def test_a_frame_axis_hyperspy_cannot_take_becomes_an_index(tmp_path, tilts, drop):
    """A frame axis from per-frame values that are not ordered, or NaN where a frame was dropped:
    HyperSpy refuses such an axis ('needs to be ordered'), so the export numbers the frames
    instead (the values stay in ``ds.values``)."""
    path = str(tmp_path / "tilts.emd")
    with EMDWriter(path, (4, 4), "float32", n_frames=len(tilts),
                   dims=[Dim("tilt", "[deg]", from_values="tilt"), Dim("y"), Dim("x")]) as w:
        for i, angle in enumerate(tilts):
            if drop and i == 2:
                with pytest.raises(RuntimeError), w.frame_buffer(tilt=angle):
                    raise RuntimeError("link lost")
                continue
            w.put(np.full((4, 4), i, np.float32), tilt=angle)
    s = emdstream.open(path)["dataset_1"].to_hyperspy()
    axis = s.axes_manager.navigation_axes[0]
    assert axis.name == "tilt" and axis.is_uniform and axis.size == len(tilts)
    np.testing.assert_array_equal(axis.axis, np.arange(len(tilts)))


@pytest.mark.parametrize("length", [np.array([12.0]), 12], ids=["one-element array", "int"])
def test_a_one_element_array_in_the_metadata_is_converted_as_its_number(tmp_path, length):
    """Metadata written by other tools often holds [12.0] for 12.0, and an int attribute reads
    back as numpy's int64: the units apply to both."""
    path = str(tmp_path / "one.emd")
    with EMDWriter(path, (4, 4), "uint16", n_frames=1,
                   microscope={"camera_length_cm": length}) as w:
        w.put(np.zeros((4, 4), np.uint16))
    tem = emdstream.open(path)["dataset_1"].to_hyperspy().metadata.Acquisition_instrument.TEM
    assert tem.camera_length == pytest.approx(120.0)


def _scalar_file(path, shape, names):
    """An EMD v0.2 file with one value per position (as a HAADF stream writes it)."""
    data = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    with h5py.File(path, "w") as f:
        f.attrs["version_major"], f.attrs["version_minor"] = 0, 2
        g = f.create_group("data/haadf")
        g.attrs["emd_group_type"], g.attrs["frame_ndim"] = 1, 0
        g.create_dataset("data", data=data)
        for i, (name, n) in enumerate(zip(names, shape)):
            vec = g.create_dataset(f"dim{i + 1}", data=np.arange(n) * 2.0)
            vec.attrs["name"], vec.attrs["units"] = name, "[nm]"
    return data


@pytest.mark.parametrize("shape,names,cls", [
    ((4, 5), ["scan_y", "scan_x"], hs.signals.Signal2D),
    ((6,), ["frame"], hs.signals.Signal1D),
    ((2, 3, 4), ["z", "y", "x"], hs.signals.BaseSignal)], ids=["image", "trace", "volume"])
def test_scalars_per_position(tmp_path, shape, names, cls):
    path = str(tmp_path / "haadf.emd")
    data = _scalar_file(path, shape, names)
    s = emdstream.open(path)["haadf"].to_hyperspy()
    assert type(s) is cls
    np.testing.assert_array_equal(s.data, data)
    if len(shape) <= 2:  # an image or a trace: the scan is the signal
        assert s.axes_manager.signal_shape == shape[::-1] and s.axes_manager.navigation_dimension == 0
        assert s.axes_manager.signal_axes[0].scale == 2.0
    else:  # a value per position of a 3-D scan: navigation only
        assert s.axes_manager.navigation_shape == shape[::-1]
        assert s.axes_manager.signal_dimension == 0


def test_per_frame_values_reach_metadata(scan):
    path, _ = scan
    stamps = 1.7e9 + np.arange(12.0).reshape(SCAN)
    stamps[0, 0] = np.nan  # a dropped frame

    class WithValues(EMDDataset):
        values = {"timestamp": stamps, "dose": np.ones(SCAN)}

    with emdstream.open(path) as f:
        ds = f["dataset_1"]
        ds.__class__ = WithValues
        s = ds.to_hyperspy()
    assert s.metadata.General.date == "2023-11-14" and s.metadata.General.time == "22:13:21"
    assert s.metadata.General.time_zone == "UTC"
    np.testing.assert_array_equal(s.original_metadata.frame_values.timestamp, stamps)
    assert s.original_metadata.frame_values.dose.shape == SCAN


def test_missing_hyperspy_says_which_extra(scan, monkeypatch):
    monkeypatch.setitem(sys.modules, "hyperspy.api", None)
    with pytest.raises(ImportError, match=r"pip install hyperspy "
                       r"\(or, in the emdstream checkout, pip install '\.\[hyperspy\]'\)"):
        emdstream.open(scan[0])["dataset_1"].to_hyperspy()


def test_readme_hs_load_with_hdf5plugin_and_transpose(scan):
    """docs/readers.md: plain-HyperSpy recipe: hs.load (RosettaSciIO) needs hdf5plugin imported and
    returns all four axes as signal axes; transpose gives the same view as to_hyperspy."""
    path, want = scan
    s = hs.load(path)
    s = s.transpose(signal_axes=["k_x", "k_y"], navigation_axes=["scan_x", "scan_y"])
    assert isinstance(s, hs.signals.Signal2D)
    np.testing.assert_array_equal(s.inav[3, 2].data, want[2, 3])


def test_lazy_without_dask_says_which_extra(scan, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask.array", None)
    with pytest.raises(ImportError, match=r"pip install 'dask\[array\]' "
                       r"\(or, in the emdstream checkout, pip install '\.\[dask\]'\)"):
        emdstream.open(scan[0])["dataset_1"].to_hyperspy(lazy=True)


def test_multi_stream_acquisition_with_per_frame_values(tmp_path):
    from emdstream import Acquisition, Stream

    path = str(tmp_path / "run.emd")
    scan_dims = [Dim("scan_y", "[nm]", scale=0.5), Dim("scan_x", "[nm]", scale=0.5)]
    frames = detector_frames(6, (8, 6))
    with Acquisition(path, scan_shape=(2, 3), microscope={"high_tension_kV": 80.0}, streams=[
            Stream("diffraction", (8, 6), dims=scan_dims + [Dim("k_y"), Dim("k_x")]),
            Stream("haadf", (), "float32", dims=scan_dims),
            Stream("eels", (16,), "float32", dims=scan_dims + [Dim("energy", "[eV]", scale=0.25)])]) as acq:
        for i, frame in enumerate(frames):
            acq["diffraction"].put(frame, stage_z=10.0 + i)
            acq["haadf"].put(np.float32(i))
            acq["eels"].put(np.full(16, i, np.float32))
    with emdstream.open(path) as f:
        diffraction = f["diffraction"].to_hyperspy()
        haadf = f["haadf"].to_hyperspy()
        eels = f["eels"].to_hyperspy()
        stamps = f["diffraction"].values["timestamp"]
    assert type(diffraction) is hs.signals.Signal2D
    assert diffraction.axes_manager.navigation_shape == (3, 2)
    np.testing.assert_array_equal(diffraction.inav[2, 1].data, frames[5])
    assert type(haadf) is hs.signals.Signal2D and haadf.axes_manager.signal_shape == (3, 2)
    np.testing.assert_array_equal(haadf.data, np.arange(6, dtype=np.float32).reshape(2, 3))
    assert haadf.axes_manager.signal_axes[0].units == "nm"
    assert type(eels) is hs.signals.Signal1D and eels.axes_manager.navigation_shape == (3, 2)
    assert eels.axes_manager.signal_axes[0].scale == 0.25 and eels.inav[1, 1].data[0] == 4
    values = diffraction.original_metadata.frame_values
    np.testing.assert_array_equal(values.stage_z, 10.0 + np.arange(6.0).reshape(2, 3))
    start = np.datetime64(int(np.nanmin(stamps) * 1e6), "us")
    assert diffraction.metadata.General.date == str(start.astype("datetime64[D]"))
    for s in (diffraction, haadf, eels):
        assert s.metadata.Acquisition_instrument.TEM.beam_energy == 80.0
