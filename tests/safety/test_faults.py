"""Real faults in a real producer process: file-size limit, full disk, file deleted, forgotten close."""
import os
import shutil
import subprocess
import sys
import textwrap
import time
import uuid

import numpy as np
import pytest
from support.crash_checks import CHILD, check_frames, frames_in

import emdstream

SRC = os.path.join(os.path.dirname(__file__), "..", "..", "src")


def run_child(path, mode, *opts, timeout=60):
    return subprocess.run([sys.executable, CHILD, path, mode, *opts], capture_output=True,
                          text=True, timeout=timeout)


def written_line(stdout):
    return int(stdout.rsplit("WRITTEN ", 1)[1].split()[0])


def assert_failure_reported_and_frames_kept(out, path, cause):
    assert out.returncode == 3, out.stdout + out.stderr
    assert "ERROR WriterError" in out.stdout and cause in out.stdout, out.stdout
    assert "CLOSE-ERROR WriterError" in out.stdout  # close says it again, does not hang
    n = written_line(out.stdout)
    assert f"{n} frame(s) were safely flushed" in out.stdout
    with emdstream.open(path, live=True) as f:
        assert f["dataset_1"].frames_written == n
    check_frames(frames_in(path, n, "open"), n)
    return n


def test_file_size_limit_reaches_the_producer(tmp_path):
    path = str(tmp_path / "limited.emd")
    out = run_child(path, "open", "fsize=3000000", "compression=none")
    n = assert_failure_reported_and_frames_kept(out, path, "File too large")
    assert n > 0
    assert emdstream.recover(path).frames_written["dataset_1"] >= n  # the log may hold one flush more


@pytest.fixture
def small_tmpfs(tmp_path):
    mount = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)])


def test_full_disk_reaches_the_producer(small_tmpfs, tmp_path):
    path = str(small_tmpfs / "full.emd")
    out = run_child(path, "open", "compression=none")
    saved = str(tmp_path / "copy.emd")
    shutil.copy(path, saved)  # recover where there is room
    n = assert_failure_reported_and_frames_kept(out, saved, "No space left on device")
    assert n > 0
    assert emdstream.recover(saved).frames_written["dataset_1"] == n  # a copy without its chunk log


def test_file_deleted_underneath_reaches_the_producer(tmp_path):
    path = str(tmp_path / "deleted.emd")
    child = subprocess.Popen([sys.executable, CHILD, path, "open", "flush=0.05"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    child.stdout.readline()
    time.sleep(0.3)
    os.remove(path)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 3, out + err
    assert "ERROR WriterError" in out and "deleted or replaced" in out


def script(code):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": SRC})


def test_forgotten_close_finishes_the_file_at_exit(tmp_path):
    path = str(tmp_path / "forgot.emd")
    out = script(f"""
        import numpy as np, emdstream
        w = emdstream.EMDWriter({path!r}, (8, 8), "uint16")
        for i in range(25):
            w.put(np.full((8, 8), i, np.uint16))
        print("exiting without close")
        """)
    assert out.returncode == 0, out.stderr
    with emdstream.open(path) as f:
        ds = f["dataset_1"]
        assert ds.complete and ds.frames_written == 25
        np.testing.assert_array_equal(ds.data[:, 0, 0], np.arange(25))
        assert any("interpreter exit" in text for _, text in f.comments)


def test_exception_in_with_block_keeps_frames_and_propagates(tmp_path):
    path = str(tmp_path / "raised.emd")
    out = script(f"""
        import numpy as np, emdstream
        with emdstream.EMDWriter({path!r}, (8, 8), "uint16", scan_shape=(4, 5)) as w:
            for i in range(7):
                w.put(np.full((8, 8), i, np.uint16))
            raise RuntimeError("stage lost position")
        """)
    assert out.returncode == 1 and "stage lost position" in out.stderr
    with emdstream.open(path) as f:
        ds = f["dataset_1"]
        assert ds.complete and ds.frames_written == 7 and ds.data.shape == (4, 5, 8, 8)
        assert ds.data[1, 1, 0, 0] == 6 and ds.data[1, 2, 0, 0] == np.iinfo(np.uint16).max
        assert any("aborted by RuntimeError: stage lost position" in t for _, t in f.comments)
        assert any("stopped early: 7 of 20" in t for _, t in f.comments)


def test_no_thread_left_after_a_failed_writer(tmp_path):
    import threading

    path = str(tmp_path / "gone.emd")
    w = emdstream.EMDWriter(path, (8, 8), "uint16", flush_seconds=0.02)
    w.put(np.zeros((8, 8), np.uint16))
    os.remove(path)
    deadline = time.monotonic() + 10
    with pytest.raises(emdstream.WriterError, match="deleted or replaced"):
        while time.monotonic() < deadline:
            w.put(np.zeros((8, 8), np.uint16))
            time.sleep(0.005)
    with pytest.raises(emdstream.WriterError):
        w.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("emdstream")]


def _slow_abandon(monkeypatch):
    """The writer thread takes 0.3 s to let go of the file after an error (a slow disk, a busy
    machine): what the producer is told must wait for it."""
    from emdstream.write import writer_thread

    real = writer_thread.WriterThread._abandon

    def abandon(self):
        time.sleep(0.3)
        real(self)
    monkeypatch.setattr(writer_thread.WriterThread, "_abandon", abandon)


def _assert_let_go(path):
    """The file is free for ``emdstream recover`` the moment the producer hears of the failure."""
    from emdstream.safety import filelock
    from emdstream.safety.past_end import blocks_past_end_of

    assert not filelock.writer_holds(path), "the producer was told before the writer let go"
    assert blocks_past_end_of(path) == 0


def test_a_writer_thread_error_reaches_the_producer_once_the_file_is_let_go(tmp_path, monkeypatch):
    from emdstream.write import writer_thread

    _slow_abandon(monkeypatch)

    def failing_flush(self):
        raise OSError(5, "injected: the disk failed")
    monkeypatch.setattr(writer_thread.WriterThread, "_flush_file", failing_flush)
    path = str(tmp_path / "failed.emd")
    w = emdstream.EMDWriter(path, (64, 64), "uint16", flush_seconds=0.02)
    frame = np.ones((64, 64), np.uint16)
    deadline = time.monotonic() + 10
    with pytest.raises(emdstream.WriterError, match="injected"):
        while time.monotonic() < deadline:
            w.put(frame)
            time.sleep(0.001)
    _assert_let_go(path)
    with pytest.raises(emdstream.WriterError):
        w.close()


def test_a_producers_own_write_failing_reaches_it_once_the_file_is_let_go(tmp_path, monkeypatch):
    """``put_compressed`` writes a ready chunk in the caller's thread while the writer thread
    idles (``write_now``): a failure there is reported once the writer thread has let go too."""
    import threading

    from emdstream.encoders import BitshuffleLZ4
    from emdstream.write import sink

    _slow_abandon(monkeypatch)
    real_write = sink.StreamSink.write_chunk

    def write_chunk(self, *args, **kwargs):
        if threading.current_thread() is threading.main_thread():
            raise OSError(5, "injected: the disk failed under the producer")
        return real_write(self, *args, **kwargs)
    monkeypatch.setattr(sink.StreamSink, "write_chunk", write_chunk)
    path = str(tmp_path / "failed_now.emd")
    blob = np.asarray(BitshuffleLZ4().encode(np.ones((64, 64), np.uint16))).tobytes()
    w = emdstream.EMDWriter(path, (64, 64), "uint16", chunk_frames=1, n_frames=2000)
    with pytest.raises(emdstream.WriterError, match="under the producer"):
        for _ in range(2000):
            w.put_compressed(blob)
            time.sleep(0.001)  # the writer thread idles: the producer writes its own chunks
    _assert_let_go(path)
    with pytest.raises(emdstream.WriterError):
        w.close()
