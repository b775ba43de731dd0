"""The superblock flag clearing that `recover` relies on, checked against HDF5 itself."""
import h5py
import numpy as np

from emdstream.safety.superblock import clear_consistency_flags, lookup3


def test_lookup3_matches_the_reference_vectors():
    # from the self-test driver of Bob Jenkins' lookup3.c
    assert lookup3(b"") == 0xDEADBEEF
    assert lookup3(b"Four score and seven years ago") == 0x17770551
    assert lookup3(b"Four score and seven years ago", 1) == 0xCD628161


def test_checksum_agrees_with_the_superblocks_hdf5_writes(tmp_path):
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w", libver=("v110", "v110")) as f:
        f["x"] = np.arange(10)
    raw = path.read_bytes()
    size_of_offsets = raw[9]
    end = 12 + 4 * size_of_offsets
    assert lookup3(raw[:end]) == int.from_bytes(raw[end:end + 4], "little")
    assert not clear_consistency_flags(path)  # nothing set: nothing changed
    assert path.read_bytes() == raw


def test_clearing_the_flags_of_an_open_swmr_file_lets_hdf5_open_it(tmp_path):
    path = tmp_path / "swmr.h5"
    f = h5py.File(path, "w", libver=("v110", "v110"))
    f.create_dataset("x", data=np.arange(10), maxshape=(None,), chunks=(5,))
    f.swmr_mode = True
    f.flush()
    snapshot = path.read_bytes()  # what a kill -9 now would leave: flags set
    f.close()
    copy = tmp_path / "killed.h5"
    copy.write_bytes(snapshot)
    try:
        h5py.File(copy, "r").close()
        raise AssertionError("HDF5 should refuse a file with its write flags set")
    except OSError as exc:
        assert "already open for write" in str(exc) or "h5clear" in str(exc)
    assert clear_consistency_flags(copy)
    with h5py.File(copy, "r") as g:
        np.testing.assert_array_equal(g["x"][()], np.arange(10))
