"""The chunk log (``emdstream.safety.chunklog``) and ``recover``'s salvage from it: a crashed
file's frames come back whatever state HDF5's metadata is in, never a frame whose bytes are
damaged, and never from another file's log."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from support import crashcampaign as cc
from support.crash_workload import expected, kept

import emdstream
from emdstream.safety import chunklog
from emdstream.tools.verify import verify


@pytest.fixture(scope="module")
def crashed(tmp_path_factory):
    """A three-stream acquisition killed after streaming: (folder, durable counts)."""
    return cc.crashed_file(cc.Workload("acq", False), str(tmp_path_factory.mktemp("crashed")))


def copy_of(crashed, tmp_path) -> str:
    folder = shutil.copytree(crashed[0], tmp_path / "c")
    return os.path.join(folder, cc.NAME)


def destroy_hdf5_metadata(path):
    """Zero every byte of the file but the chunks the log names: superblock, object headers,
    chunk indexes all gone. The token tying the log to the file, written once at creation and
    never again, stays."""
    log = chunklog.read(path)
    keep = np.zeros(os.path.getsize(path), dtype=bool)
    for r in log.chunks:
        keep[r.offset:r.offset + r.size] = True
    keep[log.token_at:log.token_at + len(log.token)] = True
    data = np.fromfile(path, dtype=np.uint8)
    data[~keep] = 0
    data.tofile(path)


def frames_ok(path, durable):
    with emdstream.open(path) as f:
        for name, n in durable.items():
            ds = f[name]
            assert ds.complete and ds.frames_written >= n
            flat = ds.data[()].reshape((-1,) + ds.data.shape[ds.data.ndim - len(
                expected("acq", name, 0).shape):])
            gone = set(ds.dropped_frames.tolist())
            for i in set(range(ds.frames_written + len(gone))) - gone:
                np.testing.assert_array_equal(flat[i], expected("acq", name, i))
    assert verify(path) == []


def test_every_durable_frame_comes_back_with_all_hdf5_metadata_destroyed(crashed, tmp_path):
    path = copy_of(crashed, tmp_path)
    destroy_hdf5_metadata(path)
    report = emdstream.recover(path)
    assert report.frames_written == crashed[1]
    frames_ok(path, crashed[1])
    assert not os.path.exists(chunklog.log_path(path))


def test_a_damaged_chunk_ends_the_count_before_it(crashed, tmp_path):
    path = copy_of(crashed, tmp_path)
    versions = [r for r in chunklog.read(path).chunks
                if r.stream == "frames" and r.dataset == "data" and r.first == 16]
    with open(path, "r+b") as fh:
        for victim in versions:  # every version of the chunk holding frames 16..23
            fh.seek(victim.offset + victim.size // 2)
            fh.write(b"\xff" * 16)
    report = emdstream.recover(path)
    intact = kept("acq", "frames", 16)  # slots 0..15 intact (two of them dropped), the rest unproven
    assert report.frames_written["frames"] == intact
    assert report.frames_written["haadf"] == crashed[1]["haadf"]
    frames_ok(path, {"frames": intact, "haadf": crashed[1]["haadf"]})


def test_another_files_log_is_never_applied(crashed, tmp_path):
    path = copy_of(crashed, tmp_path)
    other = str(tmp_path / "other.emd")
    subprocess.run([sys.executable, cc.WORKLOAD, other, "writer", "0", "kill"],
                   capture_output=True, timeout=120)
    shutil.copy(chunklog.log_path(other), chunklog.log_path(path))  # the wrong log
    report = emdstream.recover(path)  # HDF5's own recovery: the streams of this file
    assert set(report.frames_written) == {"frames", "haadf", "spectra"}
    frames_ok(path, crashed[1])


def test_the_chunk_crc_is_zlibs_crc32_whichever_library_computes_it(tmp_path):
    # recover checks chunks against CRCs written by another process (maybe without ISA-L):
    # the values must be zlib's
    import zlib
    rng = np.random.default_rng(7)
    for size in (0, 1, 7, 4096, 290_001, 3 << 20):
        data = rng.integers(0, 256, size, dtype=np.uint8)
        assert chunklog.crc(data, size) == zlib.crc32(data.tobytes())
        assert chunklog.crc(data.data, size // 2) == zlib.crc32(data[: size // 2].tobytes())
    # without isal (an exotic platform) the log falls back on zlib's: a file written so is
    # recovered by this process, which has isal
    code = ("import sys; sys.modules['isal'] = None\n"
            "import numpy as np, emdstream, os, time\n"
            "from emdstream.safety import chunklog\n"
            "assert chunklog.crc32.__module__ == 'zlib', chunklog.crc32.__module__\n"
            "w = emdstream.EMDWriter(sys.argv[1], (64, 64), 'uint16', flush_frames=16)\n"
            "for i in range(40): w.put(np.full((64, 64), i, np.uint16))\n"
            "while w.frames_written < 32: time.sleep(0.01)\n"
            "os._exit(9)\n")
    path = str(tmp_path / "a.emd")
    proc = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    destroy_hdf5_metadata(path)  # a salvage that takes each chunk only if its CRC (here) matches
    report = emdstream.recover(path)
    assert report.frames_written["dataset_1"] >= 32
    with emdstream.open(path) as f:
        data = f["dataset_1"].data[()]
    assert len(data) >= 32 and all((data[i] == i).all() for i in range(len(data)))


def test_frames_dropped_in_an_overrun_come_back_from_the_log(tmp_path):
    """A writer that falls behind drops frames (``on_full="drop"``), the process is killed, and
    HDF5's metadata is destroyed: the salvage from the log (dropped slots logged as runs) gets
    every dropped slot and every kept frame back."""
    code = ("import sys, os, json, time, numpy as np, emdstream\n"
            "w = emdstream.EMDWriter(sys.argv[1], (64, 64), 'uint16', compression='gzip',\n"
            "    workers=1, chunk_frames=1, queue_frames=2, on_full='drop', flush_seconds=0.02)\n"
            "base = np.random.default_rng(0).integers(0, 60000, (64, 64)).astype(np.uint16)\n"
            "kept = []\n"
            "for i in range(3001):\n"
            "    base[0, 0] = i\n"
            "    if i % 40 == 0 or i == 3000:  # the writer caught up: this one is kept\n"
            "        while w.frames_written < w.frames_put: time.sleep(0.001)\n"
            "    if w.put(base): kept.append(i)\n"
            "while w.frames_written < len(kept): time.sleep(0.01)  # the drops' flush too\n"
            "json.dump(kept, open(sys.argv[2], 'w'))\n"
            "os._exit(9)\n")
    path, kept_json = str(tmp_path / "overrun.emd"), str(tmp_path / "kept.json")
    proc = subprocess.run([sys.executable, "-c", code, path, kept_json], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    kept = json.load(open(kept_json))
    dropped = sorted(set(range(3001)) - set(kept))
    assert len(dropped) > 100 and len(kept) > 50  # an overrun, with frames in between
    destroy_hdf5_metadata(path)
    report = emdstream.recover(path)
    assert report.frames_written["dataset_1"] == len(kept)
    with emdstream.open(path) as f:
        ds = f["dataset_1"]
        assert list(ds.dropped_frames) == dropped
        data = ds.data[()]
        assert [int(data[i, 0, 0]) for i in kept] == kept
    assert verify(path) == []
