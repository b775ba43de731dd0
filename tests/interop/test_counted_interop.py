"""A counted stream in other people's readers: ncempy and RosettaSciIO open the file and see the
counts image and the summed pattern (not the events); stempy reads `convert --to stempy`;
HyperSpy (lazy) gets the stream densified chunk by chunk."""
import subprocess
import sys

import numpy as np
import pytest
from support.counted import SHAPE, events_of

import emdstream
from emdstream import Acquisition, CountedStream, Stream

SCAN = (5, 7)
N = SCAN[0] * SCAN[1]


@pytest.fixture
def counted_file(tmp_path):
    path = str(tmp_path / "counted.emd")
    with Acquisition(path, scan_shape=SCAN, streams=[CountedStream("electrons", SHAPE),
                                                     Stream("haadf", (), "float32")]) as acq:
        for slot in range(N):
            acq["electrons"].put_events(events_of(slot), x=float(slot))
            acq["haadf"].put(float(slot))
    return path


def summed():
    return np.bincount(np.concatenate([events_of(s) for s in range(N)]),
                       minlength=SHAPE[0] * SHAPE[1]).reshape(SHAPE)


def test_ncempy_sees_counts_image_and_summed_pattern(counted_file):
    from ncempy.io import emd

    with emd.fileEMD(counted_file) as f:
        names = [g.name for g in f.list_emds]
        assert names == ["/data/electrons", "/data/summed_electrons", "/data/haadf"]
        image, dims = f.get_emdgroup(f.list_emds[0])
        assert image.shape == SCAN and [d[1] for d in dims] == ["scan_y", "scan_x"]
        assert np.array_equal(image.reshape(-1), [events_of(s).size for s in range(N)])
        pattern, dims = f.get_emdgroup(f.list_emds[1])
        assert np.array_equal(pattern, summed())


def test_rosettasciio_sees_counts_image_and_summed_pattern(counted_file):
    from rsciio.emd import file_reader

    for lazy in (False, True):
        signals = {s["metadata"]["General"]["title"]: s for s in file_reader(counted_file, lazy=lazy)}
        assert sorted(signals) == ["electrons", "haadf", "summed_electrons"]
        image = np.asarray(signals["electrons"]["data"]).T  # RosettaSciIO transposes EMD v0.2
        assert np.array_equal(image.reshape(-1), [events_of(s).size for s in range(N)])
        assert np.array_equal(np.asarray(signals["summed_electrons"]["data"]).T, summed())


def test_convert_to_stempy_gives_the_same_events(counted_file, tmp_path):
    stempy_io = pytest.importorskip("stempy.io")
    out = str(tmp_path / "stempy.h5")
    done = subprocess.run([sys.executable, "-m", "emdstream", "convert", counted_file, out,
                           "--to", "stempy"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    array = stempy_io.load_electron_counts(out)
    assert tuple(array.scan_shape) == SCAN and tuple(array.frame_shape) == SHAPE
    assert array.num_frames_per_scan == 1
    for slot in range(N):
        assert np.array_equal(np.sort(array.data[slot, 0]), np.sort(events_of(slot)))


def test_convert_to_stempy_repeats_counted_events(tmp_path):
    stempy_io = pytest.importorskip("stempy.io")
    path, out = str(tmp_path / "c.emd"), str(tmp_path / "c.h5")
    with Acquisition(path, scan_shape=(1, 3), streams=[CountedStream("e", SHAPE)]) as acq:
        acq["e"].put_csr([0, 2, 2, 3], [5, 9, 7], counts=[2, 1, 3])
    from emdstream.interop.convert import convert

    convert(path, out, to="stempy")
    array = stempy_io.load_electron_counts(out)
    assert [sorted(array.data[i, 0].tolist()) for i in range(3)] == [[5, 5, 9], [], [7, 7, 7]]


def test_hyperspy_lazy_densifies_chunk_by_chunk(counted_file):
    pytest.importorskip("hyperspy")
    e = emdstream.open(counted_file)["electrons"]
    signal = e.to_hyperspy(lazy=True)
    assert signal.data.shape == SCAN + SHAPE
    assert np.array_equal(np.asarray(signal.data[2, 3]), e.frame(2 * SCAN[1] + 3))
    assert np.array_equal(np.asarray(signal.data.sum(axis=(0, 1))), summed())
