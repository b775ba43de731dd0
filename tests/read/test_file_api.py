"""What ``emdstream.open`` gives back: an EMDFile that is a read-only mapping of its streams, and
dims that carry the scale/offset they were written with."""
import numpy as np
import pytest

import emdstream
from emdstream import Acquisition, Dim, Stream

SCAN = [Dim("scan_y", "[nm]", scale=0.25), Dim("scan_x", "[nm]", scale=0.5, offset=1.5)]
DIFFRACTION_DIMS = SCAN + [Dim("k_y", "[1/nm]", scale=0.01, offset=-3.2), Dim("k_x", "[1/nm]")]
ENERGY = [0.1, 0.2, 0.4, 0.8, 1.6]  # uneven


@pytest.fixture(scope="module")
def three_streams(tmp_path_factory):
    """A file of three streams, made in the order haadf, diffraction, eels (not alphabetical)."""
    path = tmp_path_factory.mktemp("api") / "run.emd"
    with Acquisition(path, scan_shape=(3, 4), workers=1,
                     streams=[Stream("haadf", frame_shape=(), dtype="float32", dims=SCAN),
                              Stream("diffraction", frame_shape=(6, 8), dtype="uint16",
                                     dims=DIFFRACTION_DIMS),
                              Stream("eels", frame_shape=(5,), dtype="float32",
                                     dims=SCAN + [Dim("energy", "[eV]", values=ENERGY)])]) as acq:
        for i in range(12):
            acq["haadf"].put(np.float32(i))
            acq["diffraction"].put(np.full((6, 8), i, np.uint16))
            acq["eels"].put(np.arange(5, dtype=np.float32))
    return path


def test_dims_read_back_with_their_scale_and_offset(three_streams):
    with emdstream.open(three_streams) as ef:
        dims = ef["diffraction"].dims
    assert [(d.name, d.units, d.scale, d.offset) for d in dims] == [
        ("scan_y", "[nm]", 0.25, 0.0), ("scan_x", "[nm]", 0.5, 1.5),
        ("k_y", "[1/nm]", 0.01, -3.2), ("k_x", "[1/nm]", 1.0, 0.0)]
    np.testing.assert_allclose(dims[2].values, -3.2 + 0.01 * np.arange(6))
    assert repr(dims[2]) == "Dim('k_y', '[1/nm]', scale=0.01, offset=-3.2, 6 points)"


def test_an_uneven_dim_keeps_its_values_and_says_so(three_streams):
    with emdstream.open(three_streams) as ef:
        energy = ef["eels"].dims[2]
    np.testing.assert_allclose(energy.values, ENERGY)
    assert np.isnan(energy.scale) and np.isnan(energy.offset)
    assert repr(energy) == "Dim('energy', '[eV]', values=[0.1 .. 1.6], 5 points)"
    assert len(repr(Dim("long", values=np.arange(100_000.0)))) < 80  # never the whole vector


def test_the_file_is_a_read_only_mapping_of_its_streams_in_order(three_streams):
    ef = emdstream.open(three_streams)
    assert list(ef) == ["haadf", "diffraction", "eels"]
    assert list(ef.keys()) == list(ef) and len(ef) == 3
    assert "diffraction" in ef and "difraction" not in ef
    assert [name for name, ds in ef.items()] == list(ef)
    assert [ds.name for ds in ef.values()] == list(ef)
    assert ef.get("nope") is None
    assert repr(ef) == "<EMDFile 'run.emd': haadf, diffraction, eels>"
    with pytest.raises(TypeError):
        ef["x"] = ef["haadf"]  # read-only
    ef.close()
    assert repr(ef) == "<EMDFile 'run.emd': closed>"


def test_an_unknown_stream_names_the_streams_there_are(three_streams):
    with emdstream.open(three_streams) as ef, pytest.raises(KeyError) as err:
        ef["difraction"]
    assert "'difraction'" in str(err.value)
    assert "'haadf', 'diffraction', 'eels'" in str(err.value)


def test_the_file_is_a_context_manager_that_closes(three_streams):
    with emdstream.open(three_streams) as ef:
        assert ef["haadf"].data[1, 2] == 6
    assert not ef.h5  # closed
    with pytest.raises(Exception):  # noqa: B017  (h5py's own error for a closed file)
        ef["haadf"].data[0, 0]
