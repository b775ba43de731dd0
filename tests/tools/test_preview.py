"""``preview``: the arrays it computes (virtual bright field, mean pattern) and the PNG it writes."""
import subprocess
import sys

import h5py
import numpy as np
import pytest
from support.cli import emdstream_cli, refuses_to_overwrite
from support.frames import write_frames

from emdstream import Dim
from emdstream.tools.preview import INSTALL_HINT, compute_panels, preview
from emdstream.tools.simulate import Simulated4DSTEM, simulate

SCAN, FRAME = (16, 16), (32, 32)


@pytest.fixture(scope="module")
def scan_4d(tmp_path_factory):
    path = tmp_path_factory.mktemp("preview") / "scan.emd"
    simulate(str(path), scan_shape=SCAN, frame_shape=FRAME, progress=False)
    return path


def test_virtual_bright_field_shows_the_simulated_lattice(scan_4d):
    _, (haadf, pattern, bright_field) = compute_panels(scan_4d)
    sim = Simulated4DSTEM(SCAN, FRAME)
    disk = pattern.outline
    # the detector is the central disk, a bit smaller than the beam that wanders by radius / 2
    yy, xx = np.nonzero(disk)
    assert abs(yy.mean() - FRAME[0] / 2) < 1.5 and abs(xx.mean() - FRAME[1] / 2) < 1.5
    assert 0.2 * np.pi * sim.radius ** 2 < disk.sum() < 1.2 * np.pi * sim.radius ** 2
    assert pattern.log and pattern.values.shape == FRAME
    transmission = np.array([[sim.transmission(iy, ix) for ix in range(SCAN[1])]
                             for iy in range(SCAN[0])])
    assert bright_field.values.shape == SCAN
    assert np.corrcoef(bright_field.values.ravel(), transmission.ravel())[0, 1] > 0.85
    # the HAADF stream, shown first, sees the same sample: what the bright field loses
    assert haadf.title == "haadf" and haadf.values.shape == SCAN
    assert np.corrcoef(haadf.values.ravel(), transmission.ravel())[0, 1] < -0.85
    assert [d.name for d in bright_field.axes] == ["scan_y", "scan_x"]
    assert [d.units for d in pattern.axes] == ["[px]", "[px]"]


def test_frames_never_written_are_left_out(tmp_path):
    path = tmp_path / "stopped.emd"
    simulate(str(path), scan_shape=SCAN, frame_shape=FRAME, n_frames=100, progress=False)
    _, (haadf, pattern, bright_field) = compute_panels(path)
    assert np.isnan(bright_field.values).sum() == SCAN[0] * SCAN[1] - 100
    assert np.isnan(haadf.values).sum() == SCAN[0] * SCAN[1] - 100
    assert np.isnan(bright_field.values.ravel()[100:]).all()
    assert pattern.values.max() < 100  # the unwritten slots hold 65535 (the fill value)


def _write_3d(path):
    yy, xx = np.mgrid[:40, :50]
    dims = [Dim("time", "[s]", scale=0.1), Dim("y", "[um]", scale=0.2), Dim("x", "[um]", scale=0.2)]
    frames = np.stack([np.sin(xx / 5 + t) * np.cos(yy / 7) for t in range(6)]).astype("float32")
    write_frames(path, frames, dims=dims)


def _write_2d(path):
    energy = np.arange(64)
    dims = [Dim("time", "[s]", scale=0.5), Dim("energy", "[eV]", scale=2.0, offset=100)]
    frames = np.stack([10 + 50 * np.exp(-(energy - 20 - t / 2) ** 2 / 20) for t in range(30)])
    write_frames(path, frames.astype("uint16"), n_frames=30, dims=dims)


def _write_1d(path):  # emdstream writes 2-D and up; a 1-D EMD file from other software
    with h5py.File(path, "w") as f:
        f.attrs.update(version_major=0, version_minor=2)
        group = f.create_group("data/spectrum")
        group.attrs["emd_group_type"] = 1
        group["data"] = np.exp(-((np.arange(200) - 80) / 15.0) ** 2)
        group["dim1"] = np.linspace(0, 10, 200)
        group["dim1"].attrs.update(name="energy", units="[keV]")


def _assert_png(path, min_bytes=8000):
    import matplotlib.image

    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) > min_bytes
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels[..., :3].std() > 0.05  # not a blank canvas


@pytest.mark.parametrize("writer,titles", [
    (_write_3d, ["frame 0", "mean of 6 frames"]),
    (_write_2d, ["dataset_1"]),
    (_write_1d, ["spectrum"]),
], ids=["3d", "2d", "1d"])
def test_preview_draws_each_kind_of_data(tmp_path, writer, titles):
    path = tmp_path / "data.emd"
    writer(path)
    _, drawn = compute_panels(path)
    assert [p.title for p in drawn] == titles
    out = tmp_path / "data.png"
    assert preview(path, out) == str(out)
    _assert_png(out)


def test_preview_command_writes_a_png_of_a_4d_scan(scan_4d, tmp_path):
    out = tmp_path / "scan.png"
    result = emdstream_cli("preview", scan_4d, "-o", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"wrote {out}\n"
    _assert_png(out, min_bytes=20000)
    refuses_to_overwrite("preview", out, scan_4d, "-o", out)
    _assert_png(out, min_bytes=20000)


def test_without_matplotlib_the_command_says_how_to_install_it(scan_4d, tmp_path):
    code = ("import sys; sys.modules['matplotlib'] = None  # as if it were not installed\n"
            "from emdstream.tools.cli import main; sys.exit(main(sys.argv[1:]))")
    out = tmp_path / "none.png"
    result = subprocess.run([sys.executable, "-c", code, "preview", str(scan_4d), "-o", str(out)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr == f"emdstream preview: error: {INSTALL_HINT}\n"
    assert INSTALL_HINT.endswith(
        "pip install matplotlib (or, in the emdstream checkout, pip install '.[preview]')")
    assert not out.exists()


def _scan_with_bad_pixels(path, bad: dict):
    """The simulated scan, with ``bad`` {(row, col): value} set in every frame."""
    sim = Simulated4DSTEM(SCAN, FRAME)
    frames = np.stack(list(sim)).reshape(SCAN + FRAME)
    for (row, col), value in bad.items():
        frames[..., row, col] = value
    write_frames(path, frames.reshape((-1,) + FRAME), scan_shape=SCAN)
    return sim


# a flagged pixel (dtype max, as Dectris marks bad ones), a hot pair and a hot pixel below the max
BAD = {(5, 28): 65535, (20, 3): 3000, (20, 4): 2500, (30, 30): 400}


def test_hot_and_flagged_pixels_do_not_make_the_virtual_detector(tmp_path):
    path = tmp_path / "hot.emd"
    sim = _scan_with_bad_pixels(path, BAD)
    _, (pattern, bright_field) = compute_panels(path)
    assert sorted(zip(*np.nonzero(pattern.masked))) == sorted(BAD)  # these, and no disk pixel
    disk = pattern.outline
    assert not disk[tuple(np.array(list(BAD)).T)].any()
    assert 0.2 * np.pi * sim.radius ** 2 < disk.sum() < 1.2 * np.pi * sim.radius ** 2
    assert np.nanmax(pattern.values) < 100  # the colour scale: the beam, not 65535
    assert np.isnan(pattern.values[tuple(np.array(list(BAD)).T)]).all()
    transmission = np.array([[sim.transmission(iy, ix) for ix in range(SCAN[1])]
                             for iy in range(SCAN[0])])
    assert np.corrcoef(bright_field.values.ravel(), transmission.ravel())[0, 1] > 0.85


def test_a_clean_scan_has_nothing_left_out(scan_4d):
    _, (_, pattern, _) = compute_panels(scan_4d)
    assert not pattern.masked.any()


def test_the_picture_labels_the_detector_and_keeps_titles_apart(tmp_path):
    from emdstream.tools.preview import figure

    path = tmp_path / "hot.emd"
    _scan_with_bad_pixels(path, BAD)
    fig = figure(path)
    fig.canvas.draw()
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend[0].startswith("virtual detector: > half the peak (") and legend[0].endswith(" px)")
    assert legend[1] == "4 hot/flagged px, left out"
    # the file's line starts at the figure's left edge, not centred over a panel's title (where it
    # read as part of it), with a clear gap above the titles
    renderer = fig.canvas.get_renderer()
    suptitle = fig._suptitle.get_window_extent(renderer)
    assert suptitle.x0 < min(ax.get_window_extent(renderer).x0 for ax in fig.axes)
    for ax in fig.axes:
        if ax.get_title():
            assert suptitle.y0 - ax.title.get_window_extent(renderer).y1 > 8, ax.get_title()
