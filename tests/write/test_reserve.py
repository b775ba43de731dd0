"""Disk blocks reserved ahead of the file's end while it is written (``write.reserve``): taken
while streaming, given back at close, after a failure, and by ``recover`` after kill -9; the
file's size is never changed by them. Real files, a real child process killed with SIGKILL."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from emdstream import Acquisition, Stream
from emdstream.safety.recover import recover
from emdstream.write import reserve

SRC = os.path.join(os.path.dirname(__file__), "..", "..", "src")


def allocated(path):
    return os.stat(path).st_blocks * 512


@pytest.fixture
def reservable(tmp_path):
    """tmp_path, where the file system takes reservations past a file's end."""
    probe = tmp_path / "probe"
    fd = os.open(probe, os.O_RDWR | os.O_CREAT)
    try:
        if reserve._FALLOCATE is None or reserve._FALLOCATE(fd, reserve._KEEP_SIZE, 0, 1 << 20):
            pytest.skip("no fallocate(FALLOC_FL_KEEP_SIZE) here")
    finally:
        os.close(fd)
        probe.unlink()
    return tmp_path


def put_frames(acq, n):
    frames = np.random.default_rng(0).poisson(2, (16, 128, 128)).astype(np.uint16)
    for i in range(n):
        acq["d"].put(frames[i % 16])


def test_blocks_are_reserved_while_writing_and_given_back_at_close(reservable):
    path = str(reservable / "run.emd")
    acq = Acquisition(path, [Stream("d", (128, 128), "uint16", open_ended=True)],
                      flush_seconds=0.05)
    put_frames(acq, 400)
    deadline = time.monotonic() + 10
    while allocated(path) < os.path.getsize(path) + reserve.AHEAD // 2:
        assert time.monotonic() < deadline, "nothing reserved past the file's end"
        time.sleep(0.02)
    acq.close()
    size = os.path.getsize(path)
    assert allocated(path) < size + (1 << 20)
    assert size > 400 * 1000  # the frames are in the file


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
    assert allocated(path) > os.path.getsize(path) + reserve.AHEAD // 2  # left behind by the kill
    recover(path)
    assert allocated(path) < os.path.getsize(path) + (1 << 20)
