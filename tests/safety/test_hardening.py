"""No data loss at any moment: kill -9 inside close() and inside recover, Ctrl-C inside close(),
forked children, flushing that never waits for the encoder pool, live readers across close,
fsync, slow streams, hopeless files.

The kill campaigns run ``EMDSTREAM_KILL_RUNS`` times each (default 3, keeping the default suite
short; CI runs 100).
"""
import hashlib
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import threading
import time

import h5py
import numpy as np
import pytest
from support.close_child import N_FRAMES, frame, slow_frames

import emdstream
from emdstream import EMDWriter
from emdstream.tools.verify import verify

HERE = os.path.dirname(__file__)
CHILD = os.path.join(HERE, "..", "support", "close_child.py")
RUNS = int(os.environ.get("EMDSTREAM_KILL_RUNS", "3"))
SLOW_APPLY = {"EMDSTREAM_TEST_APPLY_DELAY": "0.002"}  # widen the journal's apply window


def start(path, n_comments, *extra, env=None):
    child = subprocess.Popen([sys.executable, CHILD, path, str(n_comments), *extra],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, **(env or {})})
    assert child.stdout.readline().strip() == "started", child.stderr.read()
    return child


def expect_line(child, word):
    line = child.stdout.readline().split()
    assert line and line[0] == word, (line, child.stderr.read() if child.poll() is not None else "")
    return int(line[1]) if len(line) > 1 else None


def check_recovered(path, durable_before):
    """The file is finished, verifies, and holds every frame it counts, at least ``durable_before``."""
    assert verify(path) == []
    with emdstream.open(path) as f:
        frames, haadf = f["frames"], f["haadf"]
        assert frames.complete and haadf.complete
        n = frames.frames_written
        assert durable_before <= n <= N_FRAMES
        flat = frames.data[()].reshape(-1, 16, 16)
        for i in range(n):
            np.testing.assert_array_equal(flat[i], frame(i))
        if n:  # the names are recorded with the first count that is not zero
            z = frames.values["z"].reshape(-1)
            np.testing.assert_array_equal(z[:n], np.arange(n) * 0.5)
            assert np.isnan(z[n:]).all()
    return n


def close_seconds(tmp_path, n_comments):
    child = start(str(tmp_path / "calibrate.emd"), n_comments, env=SLOW_APPLY)
    expect_line(child, "closing")
    t = time.monotonic()
    expect_line(child, "closed")
    child.wait()
    return time.monotonic() - t


@pytest.mark.campaign
def test_kill_9_at_random_moments_inside_close_leaves_a_recoverable_file(tmp_path):
    rng = random.Random(9)
    window = close_seconds(tmp_path, 1500)
    outcomes = {"finished": 0, "recovered": 0, "journal left": 0}
    for run in range(RUNS):
        path = str(tmp_path / f"close{run}.emd")
        child = start(path, 1500, env=SLOW_APPLY)
        durable = expect_line(child, "closing")
        time.sleep(rng.uniform(0, window * 1.2))
        child.kill()
        child.wait()
        outcomes["journal left"] += os.path.exists(path + ".emdstream-journal")
        report = emdstream.recover(path)
        outcomes["recovered" if report.changed else "finished"] += 1
        check_recovered(path, durable)
        assert not os.path.exists(path + ".emdstream-journal")
    print("kills inside close():", dict(outcomes))
    assert RUNS < 5 or outcomes["recovered"] > 0, f"no kill landed before close() ended: {outcomes}"


@pytest.mark.campaign
def test_kill_9_at_random_moments_inside_recover_then_recover_again(tmp_path):
    rng = random.Random(10)
    env = {**os.environ, **SLOW_APPLY}
    windows = []
    for run in range(RUNS):
        path = str(tmp_path / f"rec{run}.emd")
        child = start(path, 1500, "stop")
        durable = expect_line(child, "durable")
        child.kill()
        child.wait()
        rec = subprocess.Popen([sys.executable, "-m", "emdstream", "recover", path], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        t = time.monotonic()
        if run == 0:  # calibrate: let the first one finish
            out, err = rec.communicate(timeout=60)
            assert rec.returncode == 0, err
            windows.append(time.monotonic() - t)
        else:
            time.sleep(rng.uniform(0, windows[0] * 1.2))
            rec.kill()
            rec.wait()
            report = emdstream.recover(path)
            assert report.frames_written.get("frames", durable) == durable or not report.changed
        assert check_recovered(path, durable) == durable == N_FRAMES


@pytest.mark.campaign
def test_ctrl_c_at_random_moments_inside_close_then_close_again_finishes(tmp_path):
    rng = random.Random(11)
    window = close_seconds(tmp_path, 1500)
    interrupted = 0
    for run in range(RUNS):
        path = str(tmp_path / f"int{run}.emd")
        child = start(path, 1500, env=SLOW_APPLY)
        expect_line(child, "closing")
        time.sleep(rng.uniform(0, window))
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)  # never hangs
        assert f"closed {N_FRAMES}" in out, err
        # a SIGINT after close() returned is ignored by the child: only one inside close()
        # prints "interrupted"
        assert child.returncode == 0 or "interrupted" not in out, err
        interrupted += "interrupted" in out
        assert check_recovered(path, N_FRAMES) == N_FRAMES
    assert RUNS < 4 or interrupted, "no SIGINT landed inside close(): the test tests nothing"


@pytest.mark.campaign
def test_kill_9_inside_a_close_that_compacts_leaves_a_recoverable_file(tmp_path):
    """A slow stream's close() finalizes, then compacts (copy + rename): killed anywhere in it,
    the file recovers with every durable frame and no temporary copy is left."""
    rng = random.Random(12)
    window = None
    for run in range(max(4, RUNS // 2)):
        path = str(tmp_path / f"slow{run}.emd")
        child = start(path, "slow")
        durable = expect_line(child, "closing")
        t = time.monotonic()
        if window is None:  # the first run measures the close
            expect_line(child, "closed")
            window = time.monotonic() - t
            child.wait()
            assert os.path.getsize(path) < 2.5e6  # compacted (2 MB of raw frames, rewritten)
        else:
            time.sleep(rng.uniform(0, window * 1.2))
            child.kill()
            child.wait()
        emdstream.recover(path)
        assert not os.path.exists(path + ".emdstream-compact")
        assert verify(path) == []
        with emdstream.open(path) as f:
            ds = f["dataset_1"]
            n = ds.frames_written
            assert durable <= n <= 40
            np.testing.assert_array_equal(ds.data[:n], slow_frames()[:n])


FORK_THEN_KILL = """
import os, sys, time, numpy as np, emdstream
w = emdstream.EMDWriter({path!r}, (8, 8), "uint16", chunk_frames=4, flush_seconds=0.02)
for i in range(10):
    w.put(np.full((8, 8), i, np.uint16))
{spawn}
for i in range(10, 30):
    w.put(np.full((8, 8), i, np.uint16))
deadline = time.monotonic() + 10
while w.frames_written < 30 and time.monotonic() < deadline:
    time.sleep(0.01)
print("durable", w.frames_written, flush=True)
time.sleep(60)  # killed here
"""
FORK_EXIT = """
pid = os.fork()
if pid == 0:
    try:
        w.put(np.zeros((8, 8), np.uint16))
        print("child put accepted", flush=True)
    except emdstream.EMDStreamError as exc:
        print("child put refused:", exc, flush=True)
    sys.exit(0)  # the normal exit path: HDF5's shutdown runs in the child
os.waitpid(pid, 0)
"""
FORK_POOL = """
import multiprocessing
def work(x):
    return x * x
with multiprocessing.get_context("fork").Pool(2) as pool:
    assert pool.map(work, range(8)) == [x * x for x in range(8)]
"""


@pytest.mark.parametrize("spawn", [FORK_EXIT, FORK_POOL], ids=["fork-exit", "fork-pool"])
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_forked_children_never_touch_the_file_and_recover_keeps_every_frame(tmp_path, spawn):
    path = str(tmp_path / "fork.emd")
    code = FORK_THEN_KILL.format(path=path, spawn=spawn)
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    lines = []
    while not lines or not lines[-1].startswith("durable"):
        line = parent.stdout.readline()
        assert line, parent.stderr.read()
        lines.append(line.strip())
    parent.kill()
    parent.wait()
    if spawn is FORK_EXIT:
        assert any(line.startswith("child put refused") for line in lines), lines
    assert lines[-1] == "durable 30"
    report = emdstream.recover(path)
    assert report.frames_written == {"dataset_1": 30}
    with emdstream.open(path) as f:
        np.testing.assert_array_equal(f["dataset_1"].data[:, 0, 0], np.arange(30))
    assert verify(path) == []


def test_flush_frames_never_waits_for_the_encoder_pool(tmp_path):
    """With a backlog queued, chunks are still compressed several at a time (a flush covers
    what is written, not what is in the pool)."""
    # 100x100: not whole bslz4 blocks, and over 16 KiB (the writer thread compresses smaller
    # chunks itself), so chunks go to the pool
    path = str(tmp_path / "ff.emd")
    w = EMDWriter(path, (100, 100), "uint16", chunk_frames=1, workers=2, flush_frames=1,
                  flush_seconds=None, queue_frames=32)
    running, most = [0], [0]
    lock = threading.Lock()
    encode = w._thread.encoder.encode

    def slow_encode(chunk):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.01)
        try:
            return encode(chunk)
        finally:
            with lock:
                running[0] -= 1

    w._thread.encoder.encode = slow_encode
    for i in range(60):
        w.put(np.full((100, 100), i, np.uint16))
    w.close()
    assert most[0] == 2, "the flush made every chunk wait for the one before"
    with emdstream.open(path) as f:
        np.testing.assert_array_equal(f["dataset_1"].data[:, 0, 0], np.arange(60))


def test_live_reader_thread_never_sees_an_exception_across_close(tmp_path):
    path = str(tmp_path / "view.emd")
    w = EMDWriter(path, (16, 16), "uint16", chunk_frames=4, flush_seconds=0.01)
    for i in range(40):
        w.put(np.full((16, 16), i, np.uint16))
    live = emdstream.open(path, live=True)
    errors, reads, stop = [], [0], threading.Event()

    def view():
        ds = live["dataset_1"]
        while not stop.is_set():
            try:
                ds.data[:4].sum()
                reads[0] += 1
            except Exception as exc:  # what a GUI's live view would crash on
                errors.append(exc)
                return

    t = threading.Thread(target=view)
    t.start()
    time.sleep(0.05)
    w.close()
    time.sleep(0.05)
    stop.set()
    t.join(10)
    assert errors == [] and reads[0] > 0
    live.refresh()
    assert live["dataset_1"].complete and live["dataset_1"].frames_written == 40
    live.close()


def test_fsync_makes_every_flush_durable_before_its_count(tmp_path, monkeypatch):
    """With fsync=True, each flush fsyncs the frames, then writes the count and fsyncs again:
    the count on disk is never ahead of fsynced frames."""
    path = str(tmp_path / "fsync.emd")
    events = []
    real_fsync = os.fsync

    def spy(fd):
        real_fsync(fd)
        with h5py.File(path, "r", swmr=True) as f:  # the count as the disk has it now
            events.append(int(f["emdstream/streams/dataset_1/committed_slots"][()]))

    w = EMDWriter(path, (8, 8), "uint16", chunk_frames=2, flush_seconds=0.02, fsync=True)
    monkeypatch.setattr(os, "fsync", spy)
    for i in range(20):
        w.put(np.full((8, 8), i, np.uint16))
        time.sleep(0.005)
    deadline = time.monotonic() + 5
    while w.frames_written < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    monkeypatch.setattr(os, "fsync", real_fsync)
    w.close()
    assert len(events) >= 4 and events[-1] == 20
    # fsyncs come in pairs: frames (count still old), then the new count
    assert all(a <= b for a, b in zip(events, events[1:]))


def test_slow_stream_file_is_as_small_as_written_at_once(tmp_path):
    rng = np.random.default_rng(0)
    frames = [rng.poisson(3, (256, 256)).astype(np.uint16) for _ in range(24)]
    sizes = {}
    for label, pause in (("slow", 0.012), ("at once", 0)):
        path = str(tmp_path / f"{label}.emd")
        with EMDWriter(path, (256, 256), "uint16", flush_seconds=0.01) as w:
            for fr in frames:
                w.put(fr)
                time.sleep(pause)
        sizes[label] = os.path.getsize(path)
        with emdstream.open(path) as f:
            np.testing.assert_array_equal(f["dataset_1"].data[()], np.stack(frames))
    assert sizes["slow"] <= 1.15 * sizes["at once"], sizes


def test_recover_refuses_a_hopeless_file_in_one_line_and_changes_nothing(tmp_path):
    path = str(tmp_path / "junk.emd")
    with open(path, "wb") as fh:
        fh.write(b"\x89HDF\r\n\x1a\n" + bytes([3, 8, 8, 5]) + os.urandom(4000))
    before = hashlib.sha256(open(path, "rb").read()).hexdigest()
    out = subprocess.run([sys.executable, "-m", "emdstream", "recover", path], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
    assert "superblock" in out.stderr
    assert hashlib.sha256(open(path, "rb").read()).hexdigest() == before


def test_recover_refuses_a_cut_short_copy_of_a_finished_file_and_changes_nothing(tmp_path):
    """A finished file cut short (an interrupted copy) was extended to the end its superblock
    records and called finished; every reader then failed on it (info spun for good)."""
    whole = str(tmp_path / "whole.emd")
    with EMDWriter(whole, (16, 16), "uint16", n_frames=8) as w:
        for i in range(8):
            w.put(np.full((16, 16), i, np.uint16))
    path = str(tmp_path / "cut.emd")
    with open(whole, "rb") as src, open(path, "wb") as dst:
        dst.write(src.read(3000))
    before = hashlib.sha256(open(path, "rb").read()).hexdigest()
    out = subprocess.run([sys.executable, "-m", "emdstream", "recover", path], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2 and "cut short" in out.stderr, out.stdout + out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
    assert hashlib.sha256(open(path, "rb").read()).hexdigest() == before


def test_a_writer_thread_that_fails_to_start_releases_the_file(tmp_path, monkeypatch):
    from emdstream.write import writer_thread

    def refuse(self):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(writer_thread.WriterThread, "start", refuse)
    path = str(tmp_path / "nostart.emd")
    with pytest.raises(RuntimeError, match="start new thread"):
        EMDWriter(path, (8, 8), "uint16")
    monkeypatch.undo()
    # no HDF5 handle and no lock left: the file can be recovered (nothing written) or replaced
    assert not emdstream.safety.filelock.writer_holds(path)
    with EMDWriter(path, (8, 8), "uint16", overwrite=True) as w:
        w.put(np.zeros((8, 8), np.uint16))
    assert emdstream.open(path)["dataset_1"].frames_written == 1


def test_multi_stream_acquisition_killed_mid_stream_recovers_each_stream(tmp_path):
    path = str(tmp_path / "multi.emd")
    child = start(path, 10, "stop")
    durable = expect_line(child, "durable")
    child.kill()
    child.wait()
    with emdstream.open(path, live=True) as f:
        assert f["frames"].frames_written == f["haadf"].frames_written == durable
    report = emdstream.recover(path)
    assert report.frames_written == {"frames": durable, "haadf": durable}
    with emdstream.open(path) as f:
        np.testing.assert_array_equal(f["haadf"].data[()].reshape(-1)[:durable], np.arange(durable))
    check_recovered(path, durable)


_INHERITED = {}  # what a forked pool worker inherits from the test


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_put_in_a_forked_pool_worker_is_refused_at_once(tmp_path):
    path = str(tmp_path / "pool.emd")
    w = _INHERITED["writer"] = EMDWriter(path, (8, 8), "uint16")
    w.put(np.zeros((8, 8), np.uint16))
    with multiprocessing.get_context("fork").Pool(1) as pool:
        answer = pool.apply(_forked_put)
    assert answer.startswith("refused") and "forked child" in answer, answer
    w.close()
    assert emdstream.open(path)["dataset_1"].frames_written == 1


def _forked_put():
    t = time.monotonic()
    try:
        _INHERITED["writer"].put(np.zeros((8, 8), np.uint16))
    except emdstream.EMDStreamError as exc:
        return f"refused: {exc}" if time.monotonic() - t < 1 else "refused, but slowly"
    return "accepted"
