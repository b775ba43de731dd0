"""The EMD v0.2 layout of finished files: groups, attributes, dims, metadata, comments, and the
``emdstream.open`` view of them."""
import datetime as dt
import os
import time

import h5py
import numpy as np
import pytest
from support.frames import detector_frames, write_frames

import emdstream
from emdstream import Dim, EMDWriter

UTC_KEY_FORMAT = "%Y-%m-%d %H:%M:%S (UTC)"


def _text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def comment_items(f):
    """(key, text) of /comments sorted by time, then by the ' #n' suffix of same-second keys."""
    def order(kv):
        base, _, n = kv[0].partition(" #")
        return base, int(n) if n else 1
    return sorted(((k, _text(v)) for k, v in f["comments"].attrs.items()), key=order)


def parse_key(key):
    return dt.datetime.strptime(key.partition(" #")[0], UTC_KEY_FORMAT).replace(tzinfo=dt.timezone.utc)


def test_root_data_group_and_metadata_groups(tmp_path):
    path = str(tmp_path / "l.emd")
    frames = detector_frames(6, (8, 10))
    write_frames(path, frames, scan_shape=(2, 3), name="scan_a", microscope={"voltage_kV": 300},
          user={"operator": "ada"}, sample={"thickness_nm": 12.5})
    with h5py.File(path, "r") as f:
        assert int(f.attrs["version_major"]) == 0
        assert int(f.attrs["version_minor"]) == 2
        group = f["data/scan_a"]
        assert isinstance(group, h5py.Group)
        t = group.attrs["emd_group_type"]
        assert np.issubdtype(np.asarray(t).dtype, np.integer) and int(t) == 1
        data = group["data"]
        assert data.shape == (2, 3, 8, 10)
        np.testing.assert_array_equal(data[()], frames.reshape(2, 3, 8, 10))
        for axis, length in enumerate(data.shape):
            vec = group[f"dim{axis + 1}"]
            assert vec.ndim == 1 and vec.shape[0] == length
            assert "name" in vec.attrs and "units" in vec.attrs
        assert f"dim{data.ndim + 1}" not in group
        assert f["microscope"].attrs["voltage_kV"] == 300
        assert _text(f["user"].attrs["operator"]) == "ada"
        assert f["sample"].attrs["thickness_nm"] == 12.5
        # the streaming state is gone from a finished file: plain EMD
        assert set(f.keys()) == {"data", "comments", "microscope", "user", "sample"}


def test_metadata_groups_exist_even_when_empty(tmp_path):
    path = str(tmp_path / "e.emd")
    write_frames(path, detector_frames(2, (4, 4)), n_frames=2)
    with h5py.File(path, "r") as f:
        for g in ("microscope", "user", "sample"):
            assert isinstance(f[g], h5py.Group)


@pytest.mark.parametrize("label,frame_shape,kw,n,want", [
    ("2d", (17,), dict(n_frames=5), 5,
     [("frame", "[index]"), (None, "[px]")]),
    ("3d", (6, 7), dict(), 4,
     [("frame", "[index]"), ("detector_y", "[px]"), ("detector_x", "[px]")]),
    ("4d", (6, 7), dict(scan_shape=(3, 2)), 6,
     [("scan_y", "[index]"), ("scan_x", "[index]"), ("detector_y", "[px]"), ("detector_x", "[px]")]),
], ids=["2d", "3d", "4d"])
def test_default_dims(tmp_path, label, frame_shape, kw, n, want):
    path = str(tmp_path / f"{label}.emd")
    frames = np.arange(n * int(np.prod(frame_shape)), dtype=np.uint16).reshape((n,) + frame_shape)
    write_frames(path, frames, chunk_frames=2, **kw)
    with h5py.File(path, "r") as f:
        group = f["data/dataset_1"]
        shape = group["data"].shape
        assert len(shape) == len(want)
        names = []
        for axis, (name, units) in enumerate(want):
            vec = group[f"dim{axis + 1}"]
            assert vec.shape == (shape[axis],)
            np.testing.assert_array_equal(vec[()], np.arange(shape[axis]))  # index vectors
            assert _text(vec.attrs["units"]) == units
            got_name = _text(vec.attrs["name"])
            assert got_name
            if name is not None:
                assert got_name == name
            names.append(got_name)
        assert len(set(names)) == len(names)  # distinct axis names


def test_custom_dims_scale_offset_and_values(tmp_path):
    path = str(tmp_path / "d.emd")
    energies = np.linspace(100.0, 100.0 + 0.25 * 8, 9)
    dims = [Dim("scan_y", "[nm]", scale=0.5, offset=-1.0), Dim("scan_x", "[nm]", scale=0.25),
            Dim("q", "[1/nm]", scale=0.01, offset=0.2), Dim("energy", "[eV]", values=energies)]
    frames = detector_frames(6, (5, 9))
    write_frames(path, frames, scan_shape=(2, 3), dims=dims)
    with h5py.File(path, "r") as f:
        g = f["data/dataset_1"]
        np.testing.assert_allclose(g["dim1"][()], -1.0 + 0.5 * np.arange(2))
        np.testing.assert_allclose(g["dim2"][()], 0.25 * np.arange(3))
        np.testing.assert_allclose(g["dim3"][()], 0.2 + 0.01 * np.arange(5))
        np.testing.assert_array_equal(g["dim4"][()], energies)
        for i, d in enumerate(dims):
            assert _text(g[f"dim{i + 1}"].attrs["name"]) == d.name
            assert _text(g[f"dim{i + 1}"].attrs["units"]) == d.units


@pytest.mark.parametrize("kw,exc", [
    (dict(dims=[Dim("y"), Dim("x")]), ValueError),                       # one dim short
    (dict(dims=[Dim("t"), Dim("y"), Dim("x"), Dim("z")]), ValueError),   # one too many
    (dict(n_frames=3, dims=[Dim("t", values=[0, 1]), Dim("y"), Dim("x")]), ValueError),
    (dict(dims=[Dim("t", values=[0, 1, 2]), Dim("y"), Dim("x")]), ValueError),  # open-ended
    (dict(dims=["t", "y", "x"]), TypeError),
], ids=["short", "long", "values_length", "values_on_open_axis", "not_Dim"])
def test_invalid_dims_are_refused_before_the_file_exists(tmp_path, kw, exc):
    with pytest.raises(exc):
        EMDWriter(str(tmp_path / "bad.emd"), (4, 4), "uint16", **kw)
    assert os.listdir(tmp_path) == []


def test_open_ended_dim1_is_trimmed_with_the_data(tmp_path):
    path = str(tmp_path / "o.emd")
    dims = [Dim("time", "[ms]", scale=2.5, offset=10.0), Dim("y"), Dim("x")]
    write_frames(path, detector_frames(7, (16, 16)), dims=dims, chunk_frames=3)
    with h5py.File(path, "r") as f:
        g = f["data/dataset_1"]
        assert g["data"].shape == (7, 16, 16)
        np.testing.assert_allclose(g["dim1"][()], 10.0 + 2.5 * np.arange(7))
        assert _text(g["dim1"].attrs["units"]) == "[ms]"


@pytest.mark.parametrize("scale", [np.float32(0.5), np.float64(0.5), np.int64(2)],
                         ids=["np.float32", "np.float64", "np.int64"])
def test_dims_accept_numpy_scalar_scale(tmp_path, scale):
    # calibrations usually come out of numpy (e.g. a float32 pixel size read from a detector header)
    path = str(tmp_path / "n.emd")
    offset = type(scale)(1)
    dims = [Dim("time", "[s]", scale=scale, offset=offset), Dim("y"), Dim("x")]
    write_frames(path, detector_frames(3, (4, 4)), dims=dims)
    with h5py.File(path, "r") as f:
        np.testing.assert_allclose(f["data/dataset_1/dim1"][()], 1.0 + float(scale) * np.arange(3))
    assert os.listdir(tmp_path) == ["n.emd"]


def test_open_ended_small_frames_do_not_bloat_the_file(tmp_path):
    # 10 frames of 8x8 uint16 (1.25 KiB of data) must not produce a file of megabytes: the
    # dim1 vector must not be pre-allocated for the whole growth block of the data.
    path = str(tmp_path / "small.emd")
    frames = detector_frames(10, (8, 8))
    t0 = time.monotonic()
    write_frames(path, frames, compression=None)
    elapsed = time.monotonic() - t0
    with h5py.File(path, "r") as f:
        assert f["data/dataset_1/data"].shape == (10, 8, 8)
        assert f["data/dataset_1/dim1"].shape == (10,)
    size = os.path.getsize(path)
    assert size < 256 * 1024, f"{size} bytes for 1280 bytes of frames"
    assert elapsed < 5


def _at_start_of_a_second():
    """Wait until the wall clock is early in a second, so the next few quick events share it."""
    while time.time() % 1.0 > 0.3:
        time.sleep(0.02)


def test_comments_creation_user_and_closing_in_order_and_unique(tmp_path):
    path = str(tmp_path / "c.emd")
    _at_start_of_a_second()
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    w = EMDWriter(path, (4, 4), "uint16", n_frames=5, workers=1)
    texts = ["first note", "second note", "third note {with braces}"]
    for i, t in enumerate(texts):
        w.put(np.full((4, 4), i, np.uint16))
        w.comment(t)
    w.put(np.zeros((4, 4), np.uint16))
    w.close()
    after = dt.datetime.now(dt.timezone.utc)
    with h5py.File(path, "r") as f:
        items = comment_items(f)
    keys = [k for k, _ in items]
    assert len(keys) == len(set(keys)) == 5  # creation, 3 comments, closing: none lost
    for k in keys:
        assert before <= parse_key(k) <= after
    got_texts = [t for _, t in items]
    assert got_texts[1:4] == texts
    assert "started" in got_texts[0]
    assert "4 frames written" in got_texts[-1]
    # everything happened within one second: same-second keys are told apart by a suffix
    if len({k.partition(" #")[0] for k in keys}) == 1:
        assert sum(" #" in k for k in keys) == 4


def test_closing_comment_counts_frames_and_custom_close_comment(tmp_path):
    path = str(tmp_path / "cc.emd")
    w = EMDWriter(path, (4, 4), "uint16", scan_shape=(2, 4), workers=1)
    for i in range(3):
        w.put(np.full((4, 4), i, np.uint16))
    w.close(comment="operator stopped the scan")
    with h5py.File(path, "r") as f:
        last = comment_items(f)[-1][1]
    assert "operator stopped the scan" in last
    assert "3 frames written" in last


@pytest.mark.parametrize("text", ["100% done {ok}", "rate {0} Hz", "a } b {"])
def test_close_comment_with_braces_is_kept_verbatim(tmp_path, text):
    path = str(tmp_path / "b.emd")
    w = EMDWriter(path, (4, 4), "uint16", workers=1)
    w.put(np.zeros((4, 4), np.uint16))
    w.close(comment=text)  # must not raise
    with h5py.File(path, "r") as f:
        last = comment_items(f)[-1][1]
        assert bool(f["data/dataset_1"].attrs["complete"])
    assert text in last and "1 frames written" in last


def test_metadata_round_trip(tmp_path):
    path = str(tmp_path / "m.emd")
    arr_f = np.linspace(0, 1, 5)
    arr_i = np.arange(6, dtype=np.int32).reshape(2, 3)
    arr_b = np.array([True, False, True])
    microscope = {"voltage": 300, "cs_mm": 1.2, "name": "Titan Ψ", "cold_fe": True,
                  "aberrations": arr_f, "np_int": np.int16(-7), "np_float": np.float32(0.25)}
    user = {"name": "Ada", "count": 0, "flag": False}
    sample = {"grid": arr_i, "mask": arr_b, "list_of_floats": [1.5, 2.5]}
    write_frames(path, detector_frames(2, (4, 4)), n_frames=2, microscope=microscope, user=user,
          sample=sample)

    def check(got, want):
        assert set(got) == set(want)
        for k, v in want.items():
            g = got[k]
            if isinstance(v, str):
                assert _text(g) == v
            elif isinstance(v, (bool, np.bool_)):
                assert bool(g) is bool(v) and np.asarray(g).dtype == np.bool_
            elif isinstance(v, (list, np.ndarray)):
                np.testing.assert_array_equal(np.asarray(g), np.asarray(v))
                assert np.asarray(g).shape == np.asarray(v).shape
            else:
                assert g == v and not isinstance(g, (str, bytes))

    with h5py.File(path, "r") as f:
        for name, want in (("microscope", microscope), ("user", user), ("sample", sample)):
            check(dict(f[name].attrs), want)
    with emdstream.open(path) as e:
        md = e.metadata
        check(md["microscope"], microscope)
        check(md["user"], user)
        check(md["sample"], sample)


def test_open_api_on_a_finished_file(tmp_path):
    path = str(tmp_path / "api.emd")
    dims = [Dim("scan_y", "[nm]", scale=0.5), Dim("scan_x", "[nm]", scale=0.5),
            Dim("ky", "[1/nm]"), Dim("kx", "[1/nm]")]
    frames = detector_frames(5, (6, 6))
    w = EMDWriter(path, (6, 6), "uint16", scan_shape=(2, 3), dims=dims, name="run7",
                  microscope={"kV": 200}, workers=1)
    for fr in frames:
        w.put(fr)
    w.comment("five of six")
    w.close()
    with emdstream.open(path) as e:
        assert e.version == (0, 2)
        assert list(e.datasets) == ["run7"]
        ds = e["run7"]
        assert ds.name == "run7"
        assert ds.complete
        assert ds.frames_written == 5 and ds.frames_dropped == 0
        assert ds.data.shape == (2, 3, 6, 6)
        np.testing.assert_array_equal(ds.data[()].reshape(6, 6, 6)[:5], frames)
        assert np.all(ds.data[1, 2] == np.iinfo(np.uint16).max)  # slot never put: fill value
        got_dims = ds.dims
        assert [d.name for d in got_dims] == [d.name for d in dims]
        assert [d.units for d in got_dims] == [d.units for d in dims]
        np.testing.assert_allclose(got_dims[1].values, [0, 0.5, 1.0])
        assert e.metadata["microscope"] == {"kV": 200}
        texts = [t for _, t in e.comments]
        assert len(texts) == 3
        assert "started" in texts[0] and texts[1] == "five of six"
        assert "5 frames written" in texts[2]
        with h5py.File(path, "r") as f:
            assert int(f["data/run7"].attrs["frames_written"]) == 5


def test_open_api_on_a_live_file_then_after_close(tmp_path):
    path = str(tmp_path / "live.emd")
    w = EMDWriter(path, (8, 8), "uint16", flush_frames=2, chunk_frames=4, workers=1)
    frames = detector_frames(6, (8, 8))
    for fr in frames[:4]:
        w.put(fr)
    w.comment("halfway")
    deadline = time.monotonic() + 10
    while w.frames_written < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert w.frames_written >= 4
    with emdstream.open(path, live=True) as e:
        ds = e.datasets["dataset_1"]
        assert not ds.complete
        assert ds.frames_written == 4
        np.testing.assert_array_equal(ds.frames()[:4], frames[:4])
    for fr in frames[4:]:
        w.put(fr)
    w.close()
    with emdstream.open(path) as e:
        ds = e.datasets["dataset_1"]
        assert ds.complete and ds.frames_written == 6
        np.testing.assert_array_equal(ds.frames(), frames)
        assert "halfway" in [t for _, t in e.comments]


def test_two_writers_two_names_in_separate_files_keep_their_names(tmp_path):
    for name in ("a", "b_2"):
        path = str(tmp_path / f"{name}.emd")
        write_frames(path, detector_frames(2, (4, 4)), n_frames=2, name=name)
        with h5py.File(path, "r") as f:
            assert list(f["data"].keys()) == [name]


@pytest.mark.parametrize("grid", [(40,), (6, 7), (3, 4, 5)])
def test_values_after_the_commit_point_are_blanked_and_none_before(tmp_path, grid):
    """finalize blanks the value rows of uncounted slots (a killed writer's last chunks), reading
    only the rows from the commit point on: every committed row kept, every later row NaN."""
    from emdstream.format.layout import _blank_unrecorded
    n = int(np.prod(grid))
    for committed in sorted({0, 1, n // 2, n // 2 + 1, n - 1, n}):
        with h5py.File(tmp_path / "t.h5", "w") as f:
            rows = np.arange(n * 3, dtype=np.float64).reshape(grid + (3,))
            table = f.create_dataset("values", data=rows, chunks=True, compression="gzip")
            _blank_unrecorded(table, committed)
            got = table[()].reshape(n, 3)
        assert np.array_equal(got[:committed], rows.reshape(n, 3)[:committed]), committed
        assert np.isnan(got[committed:]).all(), committed
