"""A reader process racing the writer sees a growing, consistent set of frames (HDF5 SWMR)."""
import os
import subprocess
import sys
import time

import numpy as np
from support.crash_checks import CHILD
from support.reliability_child import expected_frame

import emdstream

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/: support is there
READER = """
import sys, time, numpy as np, emdstream
sys.path.insert(0, {tests!r})
from support.reliability_child import expected_frame
f = emdstream.open({path!r}, live=True)
seen = []
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    f.refresh()
    ds = f["dataset_1"]
    n = ds.frames_written
    if n:
        got = ds.data[max(0, n - 3):n]  # the newest frames counted must be complete and right
        for j, frame in enumerate(got):
            assert np.array_equal(frame, expected_frame(max(0, n - 3) + j)), (n, j)
    seen.append(n)
    if ds.complete:
        break
    time.sleep(0.01)
f.close()
assert seen == sorted(seen), "count went backwards"
print("COUNTS", len(set(seen)), seen[-1], flush=True)
"""


def test_reader_process_races_writer(tmp_path):
    path = str(tmp_path / "race.emd")
    writer = subprocess.Popen([sys.executable, CHILD, path, "open", "flush=0.05", "frames=3000",
                               "delay=0.001"], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "started"
    reader = subprocess.run([sys.executable, "-c", READER.format(
        tests=TESTS, path=path)], capture_output=True, text=True, timeout=60)
    writer.communicate(timeout=60)
    assert writer.returncode == 0
    assert reader.returncode == 0, reader.stderr
    distinct, last = map(int, reader.stdout.split("COUNTS")[1].split())
    assert distinct >= 5, "the reader should have seen the count grow several times"
    assert last == 3000
    with emdstream.open(path) as f:
        assert f["dataset_1"].frames_written == 3000
        np.testing.assert_array_equal(f["dataset_1"].data[2999], expected_frame(2999))


def test_info_follow_shows_the_count_grow(tmp_path):
    path = str(tmp_path / "follow.emd")
    writer = subprocess.Popen([sys.executable, CHILD, path, "open", "flush=0.05", "frames=1500",
                               "delay=0.001"], stdout=subprocess.PIPE, text=True)
    writer.stdout.readline()
    follow = subprocess.run([sys.executable, "-m", "emdstream", "info", path, "--follow",
                             "--interval", "0.1"], capture_output=True, text=True, timeout=60)
    writer.communicate(timeout=60)
    assert follow.returncode == 0, follow.stderr
    counts = [int(line.split(": ")[1].split()[0]) for line in follow.stdout.splitlines()]
    assert len(counts) >= 3 and counts == sorted(counts) and counts[-1] == 1500


def test_live_reader_in_the_writers_own_process_does_not_break_close(tmp_path):
    path = str(tmp_path / "inproc.emd")
    w = emdstream.EMDWriter(path, (8, 8), "uint16", flush_seconds=0.02)
    for i in range(10):
        w.put(np.full((8, 8), i, np.uint16))
    live = emdstream.open(path, live=True)
    deadline = time.monotonic() + 5
    while live["dataset_1"].frames_written < 10 and time.monotonic() < deadline:
        time.sleep(0.02)
        live.refresh()
    assert live["dataset_1"].frames_written == 10
    w.close()  # finalizing needs the file to itself: the live reader steps aside
    live.refresh()
    ds = live["dataset_1"]
    assert ds.complete and ds.frames_written == 10
    np.testing.assert_array_equal(ds.data[:, 0, 0], np.arange(10))
    live.close()
