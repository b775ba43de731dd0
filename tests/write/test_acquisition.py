"""Acquisition: several streams in one file (frames, single values, spectra), per-frame values,
dims from values; read back by h5py, ncempy and RosettaSciIO exactly as single-stream files."""
import json
import os
import time

import h5py
import numpy as np
import pytest
from support.frames import detector_frames

import emdstream
from emdstream import Acquisition, Dim, EMDWriter, Stream
from emdstream.tools.verify import verify

SCAN = (6, 8)
SCAN_DIMS = [Dim("scan_y", "[nm]", scale=0.5), Dim("scan_x", "[nm]", scale=0.5)]


def four_streams():
    return [Stream("diffraction", (16, 16), "uint16", compression="bslz4",
                   dims=SCAN_DIMS + [Dim("k_y", "[1/nm]", scale=0.1), Dim("k_x", "[1/nm]", scale=0.1)]),
            Stream("haadf", (), "float32", compression="gzip", dims=SCAN_DIMS),
            Stream("eels", (40,), "float32", compression="zstd",
                   dims=SCAN_DIMS + [Dim("energy_loss", "[eV]", scale=0.25, offset=-20.0)]),
            Stream("camera", (4, 4), "uint8", compression=None, n_frames=3)]


def acquire(path, streams=None, **kw):
    frames = detector_frames(48, (16, 16))
    rng = np.random.default_rng(0)
    spectra = rng.random((48, 40)).astype(np.float32)
    with Acquisition(path, streams or four_streams(), scan_shape=SCAN,
                     microscope={"high_tension_kV": 300.0}, sample={"name": "Au"}, **kw) as acq:
        for i in range(48):
            acq["diffraction"].put(frames[i], stage_z=0.1 * i, beam_current_pA=50 + i)
            acq["haadf"].put(float(i) * 2)
            acq["eels"].put(spectra[i])
            if i < 3:
                acq["camera"].put(np.full((4, 4), i, np.uint8))
        acq.comment("focus adjusted")
    return frames, spectra


def test_four_streams_each_land_in_their_own_emd_group(tmp_path):
    path = str(tmp_path / "run.emd")
    frames, spectra = acquire(path)
    with h5py.File(path, "r") as f:
        assert sorted(f["data"]) == ["camera", "diffraction", "eels", "haadf"]
        for name in f["data"]:
            assert f[f"data/{name}"].attrs["emd_group_type"] == 1
        assert f["data/diffraction/data"].shape == SCAN + (16, 16)
        assert f["data/haadf/data"].shape == SCAN and f["data/haadf/data"].dtype == np.float32
        assert f["data/eels/data"].shape == SCAN + (40,)
        assert f["data/camera/data"].shape == (3, 4, 4)
        np.testing.assert_array_equal(f["data/diffraction/data"][()].reshape(48, 16, 16), frames)
        np.testing.assert_array_equal(f["data/haadf/data"][()].reshape(-1), np.arange(48) * 2.0)
        np.testing.assert_array_equal(f["data/eels/data"][()].reshape(48, 40), spectra)
        assert f["data/eels/data"].compression == "gzip" or "32015" in str(
            f["data/eels/data"].id.get_create_plist().get_filter(0)[0])
        assert f["data/haadf/data"].compression == "gzip"
        energy = f["data/eels/dim3"]
        assert energy.attrs["name"] == "energy_loss" and energy[0] == -20.0 and energy[1] == -19.75
        assert f["data/haadf/dim1"].attrs["units"] == "[nm]" and f["data/haadf/dim2"].shape == (8,)
        comments = list(f["comments"].attrs.values())
        assert any("focus adjusted" in c for c in comments)
        assert any("/data/eels: 48 frames written" in c and "/data/camera: 3 frames" in c
                   for c in comments)
        assert "emdstream" not in f  # no streaming state left
    with emdstream.open(path) as f:  # in the order the streams were given
        assert list(f.datasets) == ["diffraction", "haadf", "eels", "camera"]
    assert verify(path, readers=True) == []


def test_readers_open_every_stream_as_before(tmp_path):
    import ncempy.io
    from rsciio.emd import file_reader

    path = str(tmp_path / "run.emd")
    frames, spectra = acquire(path)
    with h5py.File(path, "r") as f:
        shapes = {name: f[f"data/{name}/data"].shape for name in f["data"]}
    got = sorted(tuple(ncempy.io.read(path, dsetNum=i)["data"].shape) for i in range(4))
    assert got == sorted(shapes.values())
    signals = file_reader(path)
    assert sorted(tuple(np.shape(s["data"]))[::-1] for s in signals) == sorted(shapes.values())
    for s in signals:  # no reader picked up the value tables as signals
        assert np.shape(s["data"])[-1] != 32


def test_per_frame_values_are_shaped_like_the_frame_grid(tmp_path):
    path = str(tmp_path / "run.emd")
    before = time.time()
    acquire(path)
    with emdstream.open(path) as f:
        values = f["diffraction"].values
        assert set(values) == {"timestamp", "stage_z", "beam_current_pA"}
        assert values["stage_z"].shape == SCAN
        np.testing.assert_allclose(values["stage_z"].reshape(-1), 0.1 * np.arange(48))
        stamps = values["timestamp"].reshape(-1)
        assert before <= stamps[0] <= stamps[-1] <= time.time() and np.all(np.diff(stamps) >= 0)
        assert set(f["haadf"].values) == {"timestamp"} and f["haadf"].values["timestamp"].shape == SCAN
        assert f["camera"].values["timestamp"].shape == (3,)
    with h5py.File(path, "r") as f:  # stored with the stream, named in an attribute
        table = f["data/diffraction/frame_values"]
        assert json.loads(table.attrs["columns"]) == ["timestamp", "stage_z", "beam_current_pA"]


def test_dropped_frames_get_nan_values_and_a_missing_name_is_nan(tmp_path):
    path = str(tmp_path / "drop.emd")
    rng = np.random.default_rng(0)
    w = EMDWriter(path, (128, 128), "float64", compression="gzip", chunk_frames=1, workers=1,
                  queue_frames=1, on_full="drop")
    taken = []
    for i in range(60):
        values = {"z": float(i)} if i % 7 else {}  # a detector that does not always report z
        if i == 0:
            values = {"z": 0.0}
        if w.put(rng.standard_normal((128, 128)), **values):
            taken.append(i)
    w.close()
    with emdstream.open(path) as f:
        ds = f["dataset_1"]
        assert ds.frames_dropped > 0 and ds.frames_written == len(taken)
        z, stamps = ds.values["z"], ds.values["timestamp"]
        for i in range(60):
            if i not in taken:
                assert np.isnan(z[i]) and np.isnan(stamps[i])
            else:
                assert not np.isnan(stamps[i])
                assert np.isnan(z[i]) if (i % 7 == 0 and i) else z[i] == i


def test_tilt_series_takes_its_frame_axis_from_the_values(tmp_path):
    import ncempy.io

    path = str(tmp_path / "tilt.emd")
    angles = np.linspace(-60, 60, 9)
    with EMDWriter(path, (8, 8), "float32",
                   dims=[Dim("tilt", "[deg]", from_values="tilt"), Dim("y"), Dim("x")]) as w:
        for angle in angles:
            w.put(np.full((8, 8), angle, np.float32), tilt=angle)
    with h5py.File(path, "r") as f:
        dim1 = f["data/dataset_1/dim1"]
        np.testing.assert_array_equal(dim1[()], angles)
        assert dim1.attrs["name"] == "tilt" and dim1.attrs["units"] == "[deg]"
    read = ncempy.io.read(path)  # ncempy gives a step: the angles here are evenly spaced
    assert read["pixelName"][0] == "tilt" and read["pixelSize"][0] == 15.0


@pytest.mark.parametrize("n_frames", [None, 5])
def test_a_tilt_series_stopped_before_its_first_frame_closes_cleanly(tmp_path, n_frames):
    """An axis taken from a per-frame value that no frame carried (none was put): close used to
    fail ('tilt' is not in list) and so did recover; the file is finished with no frame."""
    path = str(tmp_path / "aborted.emd")
    with EMDWriter(path, (8, 8), "float32", n_frames=n_frames,
                   dims=[Dim("tilt", "[deg]", from_values="tilt"), Dim("y"), Dim("x")]):
        pass
    with emdstream.open(path) as f:
        ds = f["dataset_1"]
        assert ds.complete and ds.frames_written == 0 and ds.dims[0].name == "tilt"
        assert ds.data.shape[0] == len(ds.dims[0].values) == 0


def test_time_axis_of_a_movie_from_the_timestamps(tmp_path):
    path = str(tmp_path / "movie.emd")
    with EMDWriter(path, (4, 4), "uint16", n_frames=5,
                   dims=[Dim("time", "[s]", from_values="timestamp"), Dim("y"), Dim("x")]) as w:
        for _ in range(5):
            w.put(np.zeros((4, 4), np.uint16))
    with emdstream.open(path) as f:
        ds = f["dataset_1"]
        np.testing.assert_array_equal(ds.dims[0].values, ds.values["timestamp"])


@pytest.mark.parametrize("kw,match", [
    (dict(dims=SCAN_DIMS + [Dim("y"), Dim("x", from_values="z")], scan_shape=SCAN), "frame axis"),
    (dict(dims=[Dim("sy", from_values="z"), Dim("sx"), Dim("y"), Dim("x")], scan_shape=SCAN),
     "scan axis"),
], ids=["frame-axis", "scan-axis"])
def test_from_values_on_the_wrong_axis_is_refused_at_construction(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        EMDWriter(str(tmp_path / "bad.emd"), (4, 4), "uint16", **kw)
    assert os.listdir(tmp_path) == []


def test_a_from_values_key_missing_from_a_put_is_refused(tmp_path):
    path = str(tmp_path / "tilt.emd")
    with EMDWriter(path, (4, 4), "uint16",
                   dims=[Dim("tilt", "[deg]", from_values="tilt"), Dim("y"), Dim("x")]) as w:
        with pytest.raises(ValueError, match="tilt="):
            w.put(np.zeros((4, 4), np.uint16))
        w.put(np.zeros((4, 4), np.uint16), tilt=1.0)
        with pytest.raises(ValueError, match="tilt="):
            w.put(np.zeros((4, 4), np.uint16), other=2.0)
    assert emdstream.open(path)["dataset_1"].frames_written == 1


@pytest.mark.parametrize("streams,exc,match", [
    ([Stream("a", (4,)), Stream("a", (2,))], ValueError, "unique"),
    ([Stream("a/b", (4,))], ValueError, "without '/'"),
    ([Stream("", (4,))], ValueError, "non-empty"),
    ([], ValueError, "at least one"),
    (["diffraction"], TypeError, "Stream"),
    ([Stream("a", (4,), n_frames=3, open_ended=True)], ValueError, "exclude"),
], ids=["duplicate", "slash", "empty", "none", "not-a-stream", "n_frames+open"])
def test_bad_streams_are_refused_before_the_file_exists(tmp_path, streams, exc, match):
    with pytest.raises(exc, match=match):
        Acquisition(str(tmp_path / "bad.emd"), streams, scan_shape=(2, 2))
    assert os.listdir(tmp_path) == []


def test_bad_puts_are_refused_before_anything_is_lost(tmp_path):
    path = str(tmp_path / "puts.emd")
    with Acquisition(path, four_streams(), scan_shape=SCAN) as acq:
        with pytest.raises(KeyError, match="no stream 'adf'.*diffraction"):
            acq["adf"].put(1.0)
        d = acq["diffraction"]
        d.put(np.zeros((16, 16), np.uint16), stage_z=1.0)
        with pytest.raises(ValueError, match="not in the first put"):
            d.put(np.zeros((16, 16), np.uint16), stage_z=1.0, focus=3.0)
        with pytest.raises(TypeError, match="not a real number"):
            d.put(np.zeros((16, 16), np.uint16), stage_z="high")
        with pytest.raises(ValueError, match="timestamp"):
            acq["haadf"].put(1.0, timestamp=3.0)
        with pytest.raises(TypeError, match="losslessly"):
            acq["haadf"].put(np.array(1.0))  # a float64 array into a float32 stream
        with pytest.raises(ValueError, match="shape"):
            acq["eels"].put(np.zeros(41, np.float32))
        d.put(np.ones((16, 16), np.uint16), stage_z=2.0)
    with emdstream.open(path) as f:
        assert f["diffraction"].frames_written == 2 and f["haadf"].frames_written == 0
        np.testing.assert_array_equal(f["diffraction"].values["stage_z"].reshape(-1)[:3],
                                      [1.0, 2.0, np.nan])


def test_live_reading_a_multi_stream_file(tmp_path):
    path = str(tmp_path / "live.emd")
    acq = Acquisition(path, four_streams()[:2], scan_shape=SCAN, flush_seconds=0.02)
    frames = detector_frames(20, (16, 16))
    for i in range(20):
        acq["diffraction"].put(frames[i], stage_z=float(i))
        acq["haadf"].put(float(i))
    live = emdstream.open(path, live=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (live["diffraction"].frames_written < 20
                                           or live["haadf"].frames_written < 20):
        time.sleep(0.02)
        live.refresh()
    assert live["diffraction"].frames_written == live["haadf"].frames_written == 20
    assert not live["diffraction"].complete
    np.testing.assert_array_equal(live["diffraction"].values["stage_z"].reshape(-1)[:21],
                                  list(range(20)) + [np.nan])
    np.testing.assert_array_equal(live["diffraction"].data[()].reshape(-1, 16, 16)[:20], frames)
    acq.close()
    live.refresh()
    assert live["haadf"].complete and live["haadf"].frames_written == 20
    live.close()


def test_info_and_preview_show_every_stream(tmp_path):
    from emdstream.tools.info import describe, format_text
    from emdstream.tools.preview import compute_panels

    path = str(tmp_path / "run.emd")
    acquire(path)
    with emdstream.open(path) as f:
        info = describe(f)
    assert set(info["datasets"]) == {"camera", "diffraction", "eels", "haadf"}
    text = format_text(info)
    assert "/data/haadf" in text and "/data/eels" in text
    _, panels = compute_panels(path)
    titles = [p.title for p in panels]
    assert titles[0] == "haadf" and "mean diffraction pattern (log)" in titles
    assert "virtual bright field" in titles and any("eels" in t for t in titles)
