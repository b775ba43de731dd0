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


def _stack_writer(path):
    """A stack with a declared frame axis and a per-frame value, flushed often."""
    return emdstream.EMDWriter(path, (8, 8), "uint16", flush_seconds=0.02,
                               dims=[emdstream.Dim("time", "[s]", scale=0.5, offset=10),
                                     emdstream.Dim("y", "[px]"), emdstream.Dim("x", "[px]")])


def _puts(w, first, end):
    for i in range(first, end):
        w.put(np.full((8, 8), i, np.uint16), dose=float(i))


def _live_after(path, w, n):
    """A live view of ``path`` once ``w`` has ``n`` frames durable."""
    deadline = time.monotonic() + 10
    while w.frames_written < n:
        assert time.monotonic() < deadline, "the writer never made its frames durable"
        time.sleep(0.01)
    return emdstream.open(path, live=True)


def test_a_live_stack_shows_its_frame_axis_and_values_as_counted(tmp_path):
    """While a stack is written its frame axis is the declared one (its vector is only written
    at finalize), and its values match the frames the snapshot counts, even once more came."""
    path = str(tmp_path / "stack.emd")
    w = _stack_writer(path)
    _puts(w, 0, 5)
    live = _live_after(path, w, 5)
    ds = live["dataset_1"]
    _puts(w, 5, 12)
    _live_after(path, w, 12).close()
    axis = ds.dims[0]
    assert (axis.name, axis.units, axis.scale, axis.offset) == ("time", "[s]", 0.5, 10.0)
    assert len(axis.values) == ds.frame_slots == 5
    assert ds.values["dose"].shape == ds.frame_grid == (5,)
    np.testing.assert_array_equal(ds.values["dose"], np.arange(5.0))
    w.close()
    live.close()


def test_a_live_dataset_reads_after_its_writer_in_this_process_finalized(tmp_path):
    """The writer closes this process's live readers to finalize (``live_registry``): a dataset
    taken before that still reads its values and dims (from the finished file), not nothing."""
    path = str(tmp_path / "closed.emd")
    w = _stack_writer(path)
    _puts(w, 0, 5)
    live = _live_after(path, w, 5)
    ds = live["dataset_1"]
    w.close()
    np.testing.assert_array_equal(ds.values["dose"], np.arange(5.0))
    assert [(d.name, d.units) for d in ds.dims] == [("time", "[s]"), ("y", "[px]"), ("x", "[px]")]
    np.testing.assert_array_equal(ds.dims[0].values, 10 + 0.5 * np.arange(5))
    np.testing.assert_array_equal(ds.data[:, 0, 0], np.arange(5))
    live.close()


def test_a_live_counted_dataset_reads_events_after_its_writer_finalized(tmp_path):
    path = str(tmp_path / "counted.emd")
    acq = emdstream.Acquisition(path, [emdstream.CountedStream("electrons", frame_shape=(16, 16))],
                                flush_seconds=0.02)
    events = acq["electrons"]
    for i in range(6):
        assert events.put_events(np.array([i, 16 + i, 40], np.uint32))
    deadline = time.monotonic() + 10
    while events.frames_written < 6:
        assert time.monotonic() < deadline, "the writer never made its events durable"
        time.sleep(0.01)
    live = emdstream.open(path, live=True)
    ds = live["electrons"]
    acq.close()
    indptr, indices, _ = ds.rows()
    assert list(np.diff(indptr)) == [3] * 6 and sorted(indices[:3]) == [0, 16, 40]
    assert ds.csr().shape == (6, 256)
    assert ds.frame(3).sum() == 3 and ds.summed_pattern.sum() == 18
    live.close()


def test_refresh_never_pulls_the_file_from_under_a_read_in_another_thread(tmp_path):
    """``refresh`` closes and reopens the file under ``reopen_lock``, the lock every live read
    takes: a viewer thread reading frames while another refreshes never meets a closed file."""
    import threading

    path = str(tmp_path / "race.emd")
    w = emdstream.EMDWriter(path, (8, 8), "uint16", flush_seconds=0.02)
    for i in range(10):
        w.put(np.full((8, 8), i, np.uint16))
    live = _live_after(path, w, 10)
    ds, errors, stop = live["dataset_1"], [], threading.Event()

    def read_frames():
        while not stop.is_set():
            try:
                ds.data[0]
            except Exception as exc:  # noqa: BLE001  (any failure is the finding)
                errors.append(repr(exc))
    reader = threading.Thread(target=read_frames)
    reader.start()
    end = time.monotonic() + 3
    while time.monotonic() < end:
        live.refresh()
    stop.set()
    reader.join()
    w.close()
    live.close()
    assert not errors, errors[:3]
