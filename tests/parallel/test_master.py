"""Part files written by several processes, joined by an HDF5 VDS master file (write_master)."""
import json
import math
import os
import shutil
import subprocess
import sys
import time

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from support.processes import h5dump_env, requires_h5dump

import emdstream
from emdstream import Acquisition, Dim, EMDWriter, Stream, write_master
from emdstream.format.parts import Part
from emdstream.parallel.master_check import verify_master
from emdstream.parallel.vds import create_virtual, part_mappings
from emdstream.tools.info import describe, format_text
from emdstream.tools.verify import verify

SCAN = (6, 10)          # 60 slots, rows of 10
BLOCK = 7               # blocks cross rows, last block partial
N = 3
FRAME = (4, 4)
FILL = np.iinfo(np.uint16).max
DIMS = [Dim("scan_y", "[nm]", scale=0.5), Dim("scan_x", "[nm]", scale=0.25),
        Dim("k_y", "[px]"), Dim("k_x", "[px]")]

# one part of the scan, in its own process: the frame at slot s is full of s, with dose=s/2;
# STOP_AFTER frames then a kill (or a wait for GO) when asked
PART_CHILD = r"""
import os, sys, time
import numpy as np
from emdstream import EMDWriter, Dim
from emdstream.format.parts import Part
rank, n, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
stop_after, mode = int(sys.argv[4]), sys.argv[5]
dims = [Dim("scan_y", "[nm]", scale=0.5), Dim("scan_x", "[nm]", scale=0.25),
        Dim("k_y", "[px]"), Dim("k_x", "[px]")]
w = EMDWriter(path, (4, 4), "uint16", scan_shape=(6, 10), part=(rank, n), block_frames=7,
              dims=dims, microscope={"high_tension_kV": 300.0}, user={"node": rank},
              flush_seconds=0.05)
w.comment(f"receiver {rank} up")
for i, s in enumerate(Part(rank, n, 7).slots(60)):
    if i == stop_after:
        while w.frames_written < i:
            time.sleep(0.02)
        open(path + ".ready", "w").close()
        if mode == "kill":
            os._exit(0)
        while not os.path.exists(path + ".go"):
            time.sleep(0.02)
    w.put(np.full((4, 4), s, np.uint16), dose=s / 2)
w.close()
"""


def start_part(tmp, rank, n=N, stop_after=-1, mode="finish"):
    path = str(tmp / f"run.part{rank}.emd")
    return path, subprocess.Popen([sys.executable, "-c", PART_CHILD, str(rank), str(n), path,
                                   str(stop_after), mode], stderr=subprocess.PIPE, text=True)


def wait_ok(proc, timeout=60):
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err


def expected_scan():
    return np.broadcast_to(np.arange(60, dtype=np.uint16).reshape(SCAN + (1, 1)), SCAN + FRAME)


@pytest.fixture(scope="module")
def partset(tmp_path_factory):
    """Three part files written at once by three processes, and their master."""
    tmp = tmp_path_factory.mktemp("parts")
    started = [start_part(tmp, r) for r in range(N)]
    for _, proc in started:
        wait_ok(proc)
    parts = [p for p, _ in started]
    master = str(tmp / "run.emd")
    report = write_master(master, parts)
    return tmp, master, parts, report


def copy_set(partset, dest):
    tmp, master, parts, _ = partset
    dest.mkdir(parents=True, exist_ok=True)
    for p in [master] + parts:
        shutil.copy2(p, dest)
    return str(dest / "run.emd"), [str(dest / os.path.basename(p)) for p in parts]


# --- the mappings ------------------------------------------------------------------------------------
@pytest.mark.parametrize("scan, n, block", [
    ((6, 10), 3, 7), ((8, 12), 2, 6), ((8, 12), 2, 24), ((5, 7), 4, 1), ((5, 7), 1, 35),
    ((37,), 3, 5), ((3, 4, 5), 2, 7), ((3, 4, 5), 3, 20), ((2, 9), 5, 2), ((4, 6), 2, 100)])
def test_mappings_place_every_slot_once(tmp_path, scan, n, block):
    """Each part's stack, mapped through the VDS, lands exactly on its blocks' slots."""
    total = math.prod(scan)
    sources = []
    for r in range(n):
        slots = Part(r, n, block).slots(total)
        if not slots.size:
            continue
        name = f"p{r}.h5"
        with h5py.File(tmp_path / name, "w") as f:
            f["d"] = slots.reshape(-1, 1)
        sources.append((f"./{name}", "d", (slots.size, 1), part_mappings(Part(r, n, block), scan)))
    with h5py.File(tmp_path / "m.h5", "w", libver=("v110", "v110")) as f:
        create_virtual(f, "v", scan + (1,), np.int64, -1, sources)
    with h5py.File(tmp_path / "m.h5", "r") as f:
        got = f["v"][()]
    assert np.array_equal(got.reshape(-1), np.arange(total))


def test_regular_layouts_take_one_mapping_per_part():
    assert len(part_mappings(Part(1, 2, 6), (8, 12))) == 1      # rows hold whole block pairs
    assert len(part_mappings(Part(1, 2, 24), (8, 12))) == 1     # blocks of whole rows
    assert len(part_mappings(Part(0, 2, 1), (8, 12))) == 1      # frame by frame
    assert len(part_mappings(Part(3, 4, 1000), (512, 512))) < 200  # blocks crossing rows


# --- a master of parts from several processes ---------------------------------------------------------
def test_master_is_the_whole_scan(partset):
    tmp, master, parts, report = partset
    assert report.complete and report.frames_written == {"dataset_1": 60}
    with h5py.File(master, "r") as f:
        assert f.attrs["version_major"] == 0 and f.attrs["version_minor"] == 2
        group = f["data/dataset_1"]
        data = group["data"]
        assert data.is_virtual and data.shape == SCAN + FRAME
        assert {m.file_name for m in data.virtual_sources()} == {
            f".{os.sep}run.part{r}.emd" for r in range(N)}
        assert np.array_equal(data[()], expected_scan())
        assert [group[f"dim{i}"].attrs["name"] for i in range(1, 5)] == ["scan_y", "scan_x",
                                                                            "k_y", "k_x"]
        assert np.allclose(group["dim2"][()], 0.25 * np.arange(10))
        assert group.attrs["frames_written"] == 60 and group.attrs["complete"]
    f = emdstream.open(master)
    ds = f["dataset_1"]
    assert ds.frames_written == 60 and ds.complete and ds.frame_grid == SCAN
    assert np.array_equal(ds.values["dose"], np.arange(60).reshape(SCAN) / 2)
    assert not np.isnan(ds.values["timestamp"]).any()
    assert f.metadata["microscope"]["high_tension_kV"] == 300.0
    texts = [t for _, t in f.comments]
    assert sum(t.startswith("[part 2] ") for t in texts) == 3  # started, receiver up, finished
    assert any("receiver 1 up" in t for t in texts)
    assert "user/node" in texts[-1] and "master of 3 part files" in texts[-1]
    f.close()
    assert verify(master) == []


def test_master_opens_in_other_readers(partset):
    _, master, _, _ = partset
    import ncempy.io
    from rsciio.emd import file_reader

    d = ncempy.io.read(master)
    assert np.array_equal(d["data"], expected_scan())
    signals = file_reader(master)
    assert len(signals) == 1  # rosettasciio lists the axes in reverse order
    assert np.array_equal(np.asarray(signals[0]["data"]).transpose(), expected_scan())


@requires_h5dump
def test_master_opens_in_h5dump(partset):
    _, master, _, _ = partset
    out = subprocess.run(["h5dump", "-d", "/data/dataset_1/data", "-s", "2,3,0,0", "-c",
                          "1,2,1,1", master], capture_output=True, text=True, env=h5dump_env())
    assert out.returncode == 0, out.stderr
    assert "(2,3,0,0): 23" in out.stdout and "(2,4,0,0): 24" in out.stdout


def test_moved_file_set_still_reads(partset, tmp_path, monkeypatch):
    master, _ = copy_set(partset, tmp_path / "elsewhere" / "deeper")
    monkeypatch.chdir(tmp_path)
    with h5py.File(master, "r") as f:
        assert np.array_equal(f["data/dataset_1/data"][()], expected_scan())
    assert verify(master) == []


def test_missing_part_is_reported_and_the_rest_reads(partset, tmp_path):
    master, parts = copy_set(partset, tmp_path / "set")
    os.remove(parts[1])
    problems = verify(master)
    assert any("part 1" in p and "missing" in p for p in problems), problems
    out = subprocess.run([sys.executable, "-m", "emdstream", "verify", master],
                         capture_output=True, text=True)
    assert out.returncode == 1 and "missing" in out.stdout
    with h5py.File(master, "r") as f:
        data = f["data/dataset_1/data"][()]
    mine = np.zeros(60, bool)
    mine[Part(1, N, BLOCK).slots(60)] = True
    mine = mine.reshape(SCAN)
    assert (data[mine] == FILL).all()
    assert np.array_equal(data[~mine], expected_scan()[~mine])
    text = format_text(describe(emdstream.open(master)))
    assert "parts   3 files, 2 present" in text and "run.part1.emd  missing" in text


def test_info_shows_parts_and_part_files(partset):
    _, master, parts, _ = partset
    info = describe(emdstream.open(master))
    listed = info["datasets"]["dataset_1"]["parts"]
    assert [p["frames_written"] for p in listed] == [Part(r, N, BLOCK).slots(60).size
                                                    for r in range(N)]
    assert all(p["finished"] and p["problem"] is None for p in listed)
    assert "virtual" in info["datasets"]["dataset_1"]["compression"]
    text = format_text(describe(emdstream.open(parts[2])))
    assert "part    2 of 3, blocks of 7 frames of scan (6, 10)" in text


def test_killed_part_unfinished_then_recovered(tmp_path):
    """A receiver killed mid-scan: the master maps what it flushed; verify names it; after recover
    the part is incomplete (not unfinished) and the master's snapshot counts are flagged."""
    started = [start_part(tmp_path, r, stop_after=5 if r == 1 else -1, mode="kill")
               for r in range(N)]
    for _, proc in started:
        wait_ok(proc)
    parts = [p for p, _ in started]
    master = str(tmp_path / "run.emd")
    report = write_master(master, parts)
    assert report.unfinished == [f".{os.sep}run.part1.emd"] and not report.complete
    assert report.frames_written["dataset_1"] == 60 - Part(1, N, BLOCK).slots(60).size + 5
    problems = verify_master(master)
    assert len(problems) == 1 and "part 1" in problems[0] and "emdstream recover" in problems[0]
    with h5py.File(master, "r", swmr=True) as f:  # the killed part's file has its write flags set
        data = f["data/dataset_1/data"][()].reshape(60, *FRAME)
    slots1 = Part(1, N, BLOCK).slots(60)
    assert np.array_equal(data[slots1[:5], 0, 0], slots1[:5])
    emdstream.recover(parts[1])
    problems = verify(master)
    assert any("incomplete: it holds 5 of its" in p for p in problems), problems
    assert any("snapshot" in p for p in problems), problems
    write_master(master, parts, overwrite=True)
    problems = verify(master)
    assert len(problems) == 1 and "incomplete" in problems[0]
    with h5py.File(master, "r") as f:
        data = f["data/dataset_1/data"][()].reshape(60, *FRAME)
    assert np.array_equal(data[slots1[:5], 0, 0], slots1[:5])
    assert (data[slots1[5:]] == FILL).all()


def test_master_written_during_acquisition_fills_in(tmp_path):
    """Written while a part is still being written: a SWMR reader of the master sees its flushed
    frames (a non-SWMR reader sees the fill value there); verify says it is running; once it
    finishes the master's counts are a stale snapshot until write_master runs again."""
    started = [start_part(tmp_path, r, stop_after=6 if r == 0 else -1, mode="wait")
               for r in range(N)]
    for _, proc in started[1:]:
        wait_ok(proc)
    parts = [p for p, _ in started]
    deadline = time.monotonic() + 30
    while not os.path.exists(parts[0] + ".ready"):
        assert time.monotonic() < deadline and started[0][1].poll() is None
        time.sleep(0.02)
    master = str(tmp_path / "run.emd")
    try:
        write_master(master, parts)
        slots0 = Part(0, N, BLOCK).slots(60)
        with h5py.File(master, "r", swmr=True) as f:
            live = f["data/dataset_1/data"][()].reshape(60, *FRAME)
        assert np.array_equal(live[slots0[:6], 0, 0], slots0[:6])
        assert (live[slots0[6:]] == FILL).all()
        with emdstream.open(master, live=True) as f:  # opens the master with SWMR by itself
            seen = f["dataset_1"].data[()].reshape(60, *FRAME)
        np.testing.assert_array_equal(seen, live)
        with h5py.File(master, "r") as f:  # without SWMR, HDF5 cannot open the part being
            try:                               # written: an error (HDF5 2.0) or the fill value
                plain = f["data/dataset_1/data"][()].reshape(60, *FRAME)
            except OSError as exc:
                assert "already open for write" in str(exc)
            else:
                assert (plain[slots0] == FILL).all()
        problems = verify_master(master)
        assert len(problems) == 1 and "still running" in problems[0]
    finally:
        open(parts[0] + ".go", "w").close()
        wait_ok(started[0][1])
    problems = verify_master(master)
    assert len(problems) == 1 and "snapshot" in problems[0]
    with h5py.File(master, "r") as f:  # the frames are there without rewriting the master
        assert np.array_equal(f["data/dataset_1/data"][()], expected_scan())
    write_master(master, parts, overwrite=True)
    assert verify(master) == []


def test_acquisition_parts_with_several_streams(tmp_path):
    parts = []
    for r in range(2):
        path = str(tmp_path / f"acq.part{r}.emd")
        parts.append(path)
        streams = [Stream("diffraction", (3, 3)), Stream("haadf", (), "float32"),
                   Stream("log", (2,), "int32", n_frames=3)]
        with Acquisition(path, streams, scan_shape=(4, 5), part=(r, 2), block_frames=3) as acq:
            for s in Part(r, 2, 3).slots(20):
                acq["diffraction"].put(np.full((3, 3), s, np.uint16))
                acq["haadf"].put(np.float32(s) * 0.5)
            for i in range(3):
                acq["log"].put(np.array([r, i], np.int32))
    master = str(tmp_path / "acq.emd")
    write_master(master, parts)
    f = emdstream.open(master)
    assert set(f.datasets) == {"diffraction", "haadf", "log_part0", "log_part1"}
    assert np.array_equal(f["diffraction"].data[:, :, 1, 1], np.arange(20).reshape(4, 5))
    assert np.allclose(f["haadf"].data[()], np.arange(20).reshape(4, 5) * 0.5)
    assert np.array_equal(f["log_part1"].data[()], [[1, 0], [1, 1], [1, 2]])
    assert f["haadf"].frames_written == 20
    f.close()
    assert verify(master) == []



def test_unsplit_stream_of_unfinished_part_counts_committed_frames(tmp_path):
    """A stream only one part writes (an open-ended log), mapped while that part is written: the
    master records the frames its part committed (not the preallocated slots), complete False,
    and maps only those frames; rebuilt once the part is finished, it records the final counts."""
    streams = [Stream("diffraction", (3, 3)), Stream("log", (2,), "int32", open_ended=True)]
    parts = [str(tmp_path / f"acq.part{r}.emd") for r in range(2)]
    with Acquisition(parts[1], streams, scan_shape=(4, 5), part=(1, 2), block_frames=3) as acq:
        for s in Part(1, 2, 3).slots(20):
            acq["diffraction"].put(np.full((3, 3), s, np.uint16))
        acq["log"].put(np.array([1, 0], np.int32))
    master = str(tmp_path / "acq.emd")
    with Acquisition(parts[0], streams, scan_shape=(4, 5), part=(0, 2), block_frames=3,
                     flush_seconds=0.02) as acq:
        write_master(master, parts)  # nothing committed yet: no frame
        with emdstream.open(master, live=True) as f:
            assert (f["log_part0"].data.shape, f["log_part0"].frames_written) == ((0, 2), 0)
        acq["log"].put(np.array([0, 7], np.int32))
        deadline = time.monotonic() + 30
        while acq["log"].frames_written < 1:  # flushed: committed in the part's state
            assert time.monotonic() < deadline
            time.sleep(0.01)
        write_master(master, parts, overwrite=True)
        with emdstream.open(master, live=True) as f:
            log = f["log_part0"]
            assert (log.data.shape, log.frames_written, log.complete) == ((1, 2), 1, False)
            assert np.array_equal(log.data[()], [[0, 7]])
            assert log.dims[0].values.shape == (1,)
        for i in (1, 2):
            acq["log"].put(np.array([0, i], np.int32))
        for s in Part(0, 2, 3).slots(20):
            acq["diffraction"].put(np.full((3, 3), s, np.uint16))
    assert any("/data/log_part0: complete is False" in p for p in verify(master))  # stale
    write_master(master, parts, overwrite=True)
    with emdstream.open(master) as f:
        log = f["log_part0"]
        assert (log.data.shape, log.frames_written, log.complete) == ((3, 2), 3, True)
        assert np.array_equal(log.data[()], [[0, 7], [0, 1], [0, 2]])
    assert verify(master) == []

def test_parts_that_do_not_belong_together_are_refused(partset, tmp_path):
    _, master, parts, _ = partset
    other = str(tmp_path / "other.part1.emd")
    with EMDWriter(other, FRAME, "uint16", scan_shape=SCAN, part=(1, N), block_frames=5) as w:
        for _ in Part(1, N, 5).slots(60):
            w.put(np.zeros(FRAME, np.uint16))
    target = str(tmp_path / "bad.emd")
    with pytest.raises(ValueError, match="block_frames"):
        write_master(target, [parts[0], other, parts[2]])
    with pytest.raises(ValueError, match="parts of 3, but 2 files"):
        write_master(target, parts[:2])
    with pytest.raises(ValueError, match="listed at position"):
        write_master(target, [parts[1], str(tmp_path / "nope.emd"), parts[2]])
    with pytest.raises(FileExistsError):
        write_master(master, parts)
    assert os.listdir(tmp_path) == ["other.part1.emd"]  # no master, no temporary file


def test_master_needs_one_existing_part(tmp_path):
    with pytest.raises(FileNotFoundError, match="none of the 2 part files"):
        write_master(str(tmp_path / "m.emd"), [str(tmp_path / "a.emd"), str(tmp_path / "b.emd")])


def test_part_written_before_others_exist(partset, tmp_path):
    """A master written when only part 0 exists maps all three; the others fill in as they come."""
    master, parts = copy_set(partset, tmp_path / "set")
    held = str(tmp_path / "held")
    os.mkdir(held)
    for p in parts[1:]:
        shutil.move(p, held)
    os.remove(master)
    report = write_master(master, parts)
    assert report.missing == [f".{os.sep}run.part1.emd", f".{os.sep}run.part2.emd"]
    for p in parts[1:]:
        shutil.move(os.path.join(held, os.path.basename(p)), p)
    with h5py.File(master, "r") as f:
        assert np.array_equal(f["data/dataset_1/data"][()], expected_scan())
        assert json.loads(f["data/dataset_1"].attrs["master_parts"])[2] == f".{os.sep}run.part2.emd"
    assert any("snapshot" in p for p in verify(master))
