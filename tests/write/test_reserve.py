"""Disk blocks reserved ahead of the file's end while it is written (``write.reserve``): taken
while streaming on ext4/XFS only and never on a nearly full disk, given back at close, after a
writer error (through the file itself, never a descriptor number another file may hold by then)
and by ``recover`` after kill -9; the file's size is never changed by them. Real files, real
threads, a real child process killed with SIGKILL."""
import errno
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from emdstream import Acquisition, Stream
from emdstream.errors import WriterError
from emdstream.safety.past_end import blocks_past_end_of
from emdstream.safety.recover import recover
from emdstream.write import reserve, writer_thread

SRC = os.path.join(os.path.dirname(__file__), "..", "..", "src")


@pytest.fixture
def reservable(tmp_path):
    """tmp_path, where the writer reserves blocks (ext4 or XFS with fallocate)."""
    if reserve._fallocate() is None or reserve.file_system(str(tmp_path)) not in reserve.FILE_SYSTEMS:
        pytest.skip(f"no reservations on {reserve.file_system(str(tmp_path))} here")
    return tmp_path


def put_frames(acq, n):
    frames = np.random.default_rng(0).poisson(2, (16, 128, 128)).astype(np.uint16)
    for i in range(n):
        acq["d"].put(frames[i % 16])


def open_acquisition(path):
    return Acquisition(path, [Stream("d", (128, 128), "uint16", open_ended=True)],
                       flush_seconds=0.05)


def wait_for_reservation(path):
    deadline = time.monotonic() + 10
    while blocks_past_end_of(path) < reserve.AHEAD // 2:
        assert time.monotonic() < deadline, "nothing reserved past the file's end"
        time.sleep(0.02)


def test_blocks_are_reserved_while_writing_and_the_journal_gives_them_back(reservable,
                                                                           monkeypatch):
    monkeypatch.setattr(writer_thread, "compact_if_worth_it", lambda path: False)  # same inode
    path = str(reservable / "run.emd")
    acq = open_acquisition(path)
    put_frames(acq, 400)
    wait_for_reservation(path)
    inode = os.stat(path).st_ino
    acq.close()
    assert os.stat(path).st_ino == inode and blocks_past_end_of(path) == 0
    assert os.path.getsize(path) > 400 * 1000  # the frames are in the file


def test_no_reservation_on_a_nearly_full_disk(reservable, monkeypatch):
    monkeypatch.setattr(reserve, "MIN_FREE", 1 << 62)
    path = str(reservable / "full.emd")
    acq = open_acquisition(path)
    put_frames(acq, 400)
    time.sleep(0.3)
    assert blocks_past_end_of(path) == 0
    acq.close()


def test_no_reservation_on_tmpfs():
    assert reserve.file_system("/dev/shm") in ("tmpfs", None)  # None: no /proc/self/mounts
    assert "tmpfs" not in reserve.FILE_SYSTEMS


def test_a_writer_error_while_streaming_gives_the_blocks_back(reservable, monkeypatch):
    path = str(reservable / "failed.emd")
    real_flush = writer_thread.WriterThread._flush_file
    state = {"fail": False}

    def flush_file(self):
        if state["fail"]:
            raise OSError(errno.EIO, "injected: the disk failed")
        real_flush(self)
    monkeypatch.setattr(writer_thread.WriterThread, "_flush_file", flush_file)
    acq = open_acquisition(path)
    put_frames(acq, 400)
    wait_for_reservation(path)
    state["fail"] = True
    with pytest.raises(WriterError, match="injected"):
        put_frames(acq, 400)
        acq.close()
    assert blocks_past_end_of(path) == 0  # at once: the error is raised once the writer let go
    try:
        acq.close()  # after a put raised: close says it again
    except WriterError:
        pass


def test_an_error_inside_close_frees_the_blocks_by_path_never_another_files(reservable,
                                                                            monkeypatch):
    """The HDF5 file is closed before the finalize journal: a failure after that must not
    truncate whatever file now has the closed descriptor's number."""
    path = str(reservable / "closing.emd")
    victim = str(reservable / "victim.bin")
    opened = []

    def finalize(*args, **kwargs):
        fd = os.open(victim, os.O_RDWR | os.O_CREAT)  # likely the HDF5 file's old number
        os.write(fd, b"x" * 4096)
        assert reserve._fallocate()(fd, reserve._KEEP_SIZE, 0, 8 << 20) == 0
        opened.append(fd)
        raise OSError(errno.ENOSPC, "injected: no space for the journal")
    monkeypatch.setattr(writer_thread.journal, "finalize", finalize)
    acq = open_acquisition(path)
    put_frames(acq, 400)
    wait_for_reservation(path)
    with pytest.raises(WriterError, match="injected"):
        acq.close()
    try:
        assert blocks_past_end_of(path) == 0
        assert blocks_past_end_of(victim) > 0  # its own reservation untouched
    finally:
        for fd in opened:
            os.close(fd)


def test_recover_gives_back_the_blocks_a_killed_writer_reserved(reservable):
    path = str(reservable / "killed.emd")
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time, numpy as np
        from emdstream import Acquisition, Stream
        acq = Acquisition({path!r}, [Stream("d", (128, 128), "uint16", open_ended=True)],
                          flush_seconds=0.05)
        frames = np.random.default_rng(0).poisson(2, (16, 128, 128)).astype(np.uint16)
        for i in range(400):
            acq["d"].put(frames[i % 16])
        while acq["d"].frames_written < 400:
            time.sleep(0.01)
        print("WRITTEN", flush=True)
        time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": SRC})
    try:
        assert child.stdout.readline().strip() == "WRITTEN"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert blocks_past_end_of(path) > reserve.AHEAD // 2  # left behind by the kill
    recover(path)
    assert blocks_past_end_of(path) == 0
