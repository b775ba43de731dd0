"""emdstream convert: EMD v0.2 -> EMD 1.0 (emdfile layout) -> EMD v0.2, chunks as they were."""
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
from support.emd_files import SCAN_DIMS, add_haadf
from support.frames import detector_frames
from support.processes import h5dump_env, run_python

import emdstream
from emdstream import Dim, EMDWriter
from emdstream.interop.convert import to_emd02, to_emd1
from emdstream.interop.emd1 import HIDDEN, read_metadata
from emdstream.interop.py4dstem import py4dstem_calibration
from emdstream.tools.cli import main

META = dict(microscope={"high_tension_kV": 300.0, "camera_length_mm": 115.0, "tilt": [1.5, -2.0],
                        "cold_feg": True, "scope/model": "Titan"},
            sample={"name": "SrTiO3"}, user={"operator": "A. B.", "run": 7})


def write_scan(path, compression="bslz4", frame_shape=(12, 10), scan=(3, 5)):
    frames = detector_frames(scan[0] * scan[1], frame_shape)
    with EMDWriter(path, frame_shape, "uint16", scan_shape=scan, compression=compression,
                   dims=SCAN_DIMS, chunk_frames=4, **META) as w:
        for frame in frames:
            w.put(frame)
        w.comment("beam blanked")
    return frames.reshape(scan + frame_shape)


def write_stack(path, frame_shape, n=9, compression="zstd"):
    frames = detector_frames(n, (1,) + frame_shape if len(frame_shape) == 1 else frame_shape)
    frames = frames.reshape((n,) + frame_shape)
    with EMDWriter(path, frame_shape, "uint16", compression=compression, chunk_frames=4) as w:
        for frame in frames:
            w.put(frame)
    return frames


def fingerprint(path):
    """Everything HDF5 holds, as comparable values: attributes with their dtypes, dataset types,
    shapes, chunking, filter pipelines, fill values and each stored chunk's bytes."""
    out = {}
    with h5py.File(path, "r") as f:
        def attrs(obj):
            return {k: (repr(np.asarray(v).tolist()), np.asarray(v).dtype.str
                        if np.asarray(v).dtype.kind != "O" else "O") for k, v in obj.attrs.items()}

        def visit(name, obj):
            entry = {"attrs": attrs(obj)}
            if isinstance(obj, h5py.Dataset):
                dcpl = obj.id.get_create_plist()
                entry.update(dtype=obj.dtype.str, shape=obj.shape, maxshape=obj.maxshape,
                             chunks=obj.chunks, fill=repr(obj.fillvalue),
                             filters=[dcpl.get_filter(i)[:3] for i in range(dcpl.get_nfilters())])
                if obj.chunks:
                    entry["chunks_raw"] = {tuple(obj.id.get_chunk_info(i).chunk_offset):
                                           obj.id.read_direct_chunk(
                                               obj.id.get_chunk_info(i).chunk_offset)
                                           for i in range(obj.id.get_num_chunks())}
                else:
                    entry["values"] = repr(np.asarray(obj[()]).tolist())
            out[name] = entry
        out["/"] = {"attrs": attrs(f)}
        f.visititems(visit)
    return out


@pytest.mark.parametrize("compression", ["bslz4", "zstd", "blosc-lz4", "gzip", None], ids=str)
def test_round_trip_is_exact_and_chunks_are_not_recompressed(tmp_path, compression):
    src, emd1, back = (str(tmp_path / n) for n in ("scan.emd", "scan_emd1.h5", "back.emd"))
    write_scan(src, compression)
    report = to_emd1(src, emd1)
    assert report.chunks_copied == 6 and report.arrays == ["dataset_1 4-D DataCube"]
    to_emd02(emd1, back)
    assert fingerprint(back) == fingerprint(src)
    original = fingerprint(src)["data/dataset_1/data"]
    converted = fingerprint(emd1)["dataset_1_root/dataset_1/data"]
    for key in ("chunks_raw", "filters", "chunks", "dtype", "shape", "fill"):
        assert converted[key] == original[key], key


def test_pipelines_hdf5_would_not_recreate_and_contiguous_data_are_copied_by_hdf5(tmp_path, monkeypatch):
    src, emd1, back = (str(tmp_path / n) for n in ("scan.emd", "scan.h5", "back.emd"))
    write_scan(src)
    with h5py.File(src, "a") as f:  # a stream stored without chunks
        g = f.create_group("data/plain")
        g.attrs["emd_group_type"] = np.int32(1)
        g.create_dataset("data", data=np.arange(12.0).reshape(3, 4))
    monkeypatch.setattr("emdstream.interop.convert.BITSHUFFLE", -1)  # bitshuffle's set_local not undone
    report = to_emd1(src, emd1)
    assert report.chunks_copied == 6
    to_emd02(emd1, back)
    assert fingerprint(back) == fingerprint(src)


def test_emd1_layout_is_what_emdfile_and_py4dstem_read(tmp_path):
    src, dst = str(tmp_path / "scan.emd"), str(tmp_path / "scan.h5")
    want = write_scan(src)
    to_emd1(src, dst)
    with h5py.File(dst, "r") as f:
        assert f.attrs["emd_group_type"] == "file"
        assert (f.attrs["version_major"], f.attrs["version_minor"]) == (1, 0)
        roots = [k for k in f if f[k].attrs.get("emd_group_type") == "root"]
        assert roots == ["dataset_1_root"] and f["dataset_1_root"].attrs["python_class"] == "Root"
        node = f["dataset_1_root/dataset_1"]
        assert (node.attrs["emd_group_type"], node.attrs["python_class"]) == ("array", "DataCube")
        np.testing.assert_array_equal(node["data"][()], want)
        assert node["data"].attrs["units"] == "pixel intensity"
        assert [node[f"dim{i}"].attrs["name"] for i in range(4)] == ["Rx", "Ry", "Qx", "Qy"]
        assert [node[f"dim{i}"].attrs["units"] for i in range(4)] == ["nm", "nm", "A^-1", "A^-1"]
        np.testing.assert_allclose(node["dim2"][()], [0, 0.02])  # [start, step], as emdfile
        bundle = f["dataset_1_root/metadatabundle"]
        assert bundle.attrs["emd_group_type"] == "metadatabundle"
        cal = bundle["calibration"]
        assert (cal.attrs["emd_group_type"], cal.attrs["python_class"]) == ("metadata", "Calibration")
        cal = read_metadata(cal)
        assert cal["R_pixel_size"] == 0.5 and cal["R_pixel_units"] == "nm"
        assert cal["Q_pixel_size"] == pytest.approx(0.02) and cal["Q_pixel_units"] == "A^-1"
        assert cal["_target_paths"] == ["/dataset_1"] and cal["_root_treepath"] == ""
        micro = read_metadata(bundle["microscope"])
        assert micro["high_tension_kV"] == 300.0 and micro["cold_feg"] is True
        assert micro["scope/model"] == "Titan" and list(micro["tilt"]) == [1.5, -2.0]
        assert read_metadata(bundle["sample"]) == {"name": "SrTiO3"}
        assert any(v == "beam blanked" for v in read_metadata(bundle["comments"]).values())
        # groups emdfile does not read (no emd_group_type of its own) keep the v0.2 file
        assert node[HIDDEN].attrs["emd_group_type"] == 1 and "dim1" in node[HIDDEN]
        assert f[f"dataset_1_root/{HIDDEN}"].attrs["version_minor"] == 2


def test_multi_stream_file_is_one_root_with_an_array_per_stream(tmp_path):
    src, dst, back = (str(tmp_path / n) for n in ("multi.emd", "multi.h5", "back.emd"))
    write_scan(src)
    image = add_haadf(src)
    report = to_emd1(src, dst)
    assert report.arrays == ["dataset_1 4-D DataCube", "haadf 2-D Array"]
    assert report.chunks_copied == 6 + 3
    with h5py.File(dst, "r") as f:
        root = f["emdstream_root"]
        assert root.attrs["emd_group_type"] == "root"
        np.testing.assert_array_equal(root["haadf/data"][()], image)
        assert root["haadf/dim0"].attrs["units"] == "nm"
        np.testing.assert_allclose(root["haadf/dim1"][()], [2.0, 2.5])  # offset 2, step 0.5
        cal = read_metadata(root["metadatabundle/calibration"])
        assert cal["_target_paths"] == ["/dataset_1"]
    to_emd02(dst, back)
    assert fingerprint(back) == fingerprint(src)


@pytest.mark.parametrize("frame_shape", [(8, 6), (40,)], ids=["images", "spectra"])
def test_stacks_become_arrays_and_come_back(tmp_path, frame_shape):
    src, dst, back = (str(tmp_path / n) for n in ("stack.emd", "stack.h5", "back.emd"))
    frames = write_stack(src, frame_shape)
    report = to_emd1(src, dst)
    assert report.arrays == [f"dataset_1 {1 + len(frame_shape)}-D Array"]
    with h5py.File(dst, "r") as f:
        node = f["dataset_1_root/dataset_1"]
        np.testing.assert_array_equal(node["data"][()], frames)
        assert node["dim0"].attrs["name"] == "frame" and node["dim0"].attrs["units"] == "index"
        assert "calibration" not in f["dataset_1_root/metadatabundle"]
    to_emd02(dst, back)
    assert fingerprint(back) == fingerprint(src)
    ds = emdstream.open(back)["dataset_1"]
    np.testing.assert_array_equal(ds.frames(), frames)


def test_py4dstem_calibration_where_the_units_allow():
    cal, notes = py4dstem_calibration(SCAN_DIMS)
    assert (cal["R_pixel_size"], cal["R_pixel_units"]) == (0.5, "nm")
    assert cal["Q_pixel_size"] == pytest.approx(0.02) and cal["Q_pixel_units"] == "A^-1"
    assert notes == []
    cal, notes = py4dstem_calibration([Dim("y", "[pm]", scale=50), Dim("x", "[pm]", scale=50),
                                       Dim("ky", "[mrad]", scale=0.1), Dim("kx", "[mrad]", scale=0.1)])
    assert (cal["R_pixel_size"], cal["R_pixel_units"]) == (0.5, "A")
    assert (cal["Q_pixel_size"], cal["Q_pixel_units"]) == (0.1, "mrad")
    uneven = Dim("kx", "[mrad]", values=[0, 1, 3, 4])
    cal, notes = py4dstem_calibration([Dim("y", "[nm]", scale=1), Dim("x", "[nm]", scale=2),
                                       Dim("ky", "[mrad]", values=[0, 1, 2, 3]), uneven])
    assert cal["R_pixel_units"] == cal["Q_pixel_units"] == "pixels"
    assert "different steps" in notes[0] and "not evenly spaced" in notes[1]
    cal, notes = py4dstem_calibration([Dim("y", "[s]"), Dim("x", "[s]"), Dim("a", "[px]"),
                                       Dim("b", "[px]")])
    assert cal["R_pixel_units"] == "pixels" and "not known to py4DSTEM" in notes[0]


def test_cli_convert_both_ways_and_user_mistakes(tmp_path, capsys):
    src, dst, back = (str(tmp_path / n) for n in ("scan.emd", "scan.h5", "back.emd"))
    write_scan(src)
    assert main(["convert", src, dst, "--to", "emd1"]) == 0
    assert "EMD 1.0, dataset_1 4-D DataCube; 6 chunks copied as they were" in capsys.readouterr().out
    assert main(["convert", dst, back]) == 0  # direction from the input's version
    assert "EMD 0.2" in capsys.readouterr().out
    assert fingerprint(back) == fingerprint(src)
    (tmp_path / "text.h5").write_text("not hdf5")
    for argv, message in [
        ([src, dst], "already exists; use --overwrite"),
        ([dst, str(tmp_path / "x.h5"), "--to", "emd1"], "already EMD 1.0"),
        ([src, str(tmp_path / "x.emd"), "--to", "emd02"], "is EMD v0.2 already"),
        ([str(tmp_path / "missing.emd"), str(tmp_path / "x.h5")], "no such file"),
        ([str(tmp_path / "text.h5"), str(tmp_path / "x.h5")], "not an HDF5 file"),
        ([src, src, "--overwrite"], "is the input file"),
    ]:
        assert main(["convert", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("emdstream convert: error: ") and message in err, err
        assert err.count("\n") == 1
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / "x.emd").exists()
    assert main(["convert", src, dst, "--overwrite"]) == 0


def test_unfinished_file_is_refused(tmp_path):
    src = str(tmp_path / "live.emd")
    w = EMDWriter(src, (8, 8), "uint16", n_frames=4)
    try:
        w.put(np.zeros((8, 8), np.uint16))
        with pytest.raises(ValueError, match="still being written"):
            to_emd1(src, str(tmp_path / "out.h5"))
    finally:
        w.close()
    assert not (tmp_path / "out.h5").exists()


@pytest.mark.skipif(shutil.which("h5repack") is None, reason="h5repack (Debian hdf5-tools) missing")
def test_readme_h5repack_to_gzip_for_readers_without_plugins(tmp_path):
    """docs/readers.md: h5repack (given HDF5_PLUGIN_PATH to read bslz4) writes a gzip copy that h5py opens
    without hdf5plugin and that is still an EMD file."""
    src, out = str(tmp_path / "scan.emd"), str(tmp_path / "scan_gzip.emd")
    want = write_scan(src)
    subprocess.run(["h5repack", "-f", "GZIP=4", src, out], env=h5dump_env(), check=True, timeout=60)
    code = (f"import h5py, sys; d = h5py.File({out!r})['data/dataset_1/data']; "
            f"print(d.compression, int(d[()].astype('int64').sum()), 'hdf5plugin' in sys.modules)")
    result = run_python(code)
    assert result.stdout.split() == ["gzip", str(int(want.sum())), "False"], result.stderr
    with emdstream.open(out) as f:
        np.testing.assert_array_equal(f["dataset_1"].data[()], want)
        assert [d.name for d in f["dataset_1"].dims] == [d.name for d in SCAN_DIMS]


def test_to_py4dstem_without_py4dstem_says_which_extra(tmp_path, monkeypatch):
    path = str(tmp_path / "scan.emd")
    write_scan(path)
    monkeypatch.setitem(sys.modules, "py4DSTEM", None)
    with pytest.raises(ImportError, match=r"in its own environment, pip install py4DSTEM "
                       r"\(or, in the emdstream checkout, pip install '\.\[py4dstem\]'\)"):
        emdstream.open(path)["dataset_1"].to_py4dstem()


def test_acquisition_with_streams_and_values_round_trips(tmp_path):
    from emdstream import Acquisition, Stream

    src, dst, back = (str(tmp_path / n) for n in ("run.emd", "run.h5", "back.emd"))
    with Acquisition(src, scan_shape=(2, 3), streams=[Stream("diffraction", (8, 6)),
                                                      Stream("haadf", (), "float32")]) as acq:
        for i, frame in enumerate(detector_frames(6, (8, 6))):
            acq["diffraction"].put(frame, stage_z=float(i))
            acq["haadf"].put(np.float32(i))
    report = to_emd1(src, dst)
    assert report.arrays == ["diffraction 4-D DataCube", "haadf 2-D Array"]
    to_emd02(dst, back)
    assert fingerprint(back) == fingerprint(src)
    with emdstream.open(back) as f:
        np.testing.assert_array_equal(f["diffraction"].values["stage_z"], np.arange(6.0).reshape(2, 3))


def test_master_file_is_converted_with_its_parts_data_written_out(tmp_path):
    from emdstream import write_master
    from emdstream.format.parts import Part
    from emdstream.parallel.master_check import is_master

    parts_dir, out_dir = tmp_path / "parts", tmp_path / "out"
    parts_dir.mkdir()
    out_dir.mkdir()
    want = np.zeros((3, 4, 4, 4), np.uint16)
    parts = []
    for rank in range(2):
        path = str(parts_dir / f"run.part{rank}.emd")
        with EMDWriter(path, (4, 4), "uint16", scan_shape=(3, 4), part=(rank, 2), block_frames=3) as w:
            for slot in Part(rank, 2, 3).slots(12):
                w.put(np.full((4, 4), slot, np.uint16), dose=slot / 2)
                want.reshape(12, 4, 4)[slot] = slot
        parts.append(path)
    master = str(parts_dir / "run.emd")
    write_master(master, parts)
    emd1, back = str(out_dir / "run.h5"), str(out_dir / "back.emd")
    to_emd1(master, emd1)
    for path in parts:  # the converted file holds the data itself
        (parts_dir / path).unlink()
    with h5py.File(emd1, "r") as f:
        data = f["dataset_1_root/dataset_1/data"]
        assert not data.is_virtual and data.chunks == (1, 1, 4, 4)
        assert data.id.get_create_plist().get_filter(0)[0] == 32008  # bslz4
        np.testing.assert_array_equal(data[()], want)
    to_emd02(emd1, back)
    assert not is_master(back)
    with emdstream.open(back) as f:
        np.testing.assert_array_equal(f["dataset_1"].data[()], want)
        np.testing.assert_array_equal(f["dataset_1"].values["dose"], np.arange(12).reshape(3, 4) / 2)
