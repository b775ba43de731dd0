"""Closing from several places, forks, settings: the writer never hangs and never returns early."""
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import emdstream
from emdstream import EMDWriter


def test_second_close_waits_until_the_file_is_finished(tmp_path, monkeypatch):
    path = str(tmp_path / "double.emd")
    w = EMDWriter(path, (128, 128), "uint16", compression="gzip", workers=1, queue_frames=600)
    # the writer cannot finish the file until the gate opens: the first close is held mid-way
    gate = threading.Event()
    encode = w._thread.encoder.encode

    def gated_encode(chunk):
        assert gate.wait(30), "the test never opened the gate"
        return encode(chunk)

    monkeypatch.setattr(w._thread.encoder, "encode", gated_encode)
    frame = np.random.default_rng(0).poisson(3, (128, 128)).astype(np.uint16)
    for _ in range(600):
        w.put(frame)
    first = threading.Thread(target=w.close)
    second_returned = threading.Event()
    seen_by_second = {}

    def second_close():
        w.close()  # while the first close is still writing
        seen_by_second["frames_written"] = w.frames_written  # finished, not merely "closed"
        with emdstream.open(path) as f:
            seen_by_second["complete"] = f["dataset_1"].complete
            seen_by_second["in_file"] = f["dataset_1"].frames_written
        second_returned.set()

    second = threading.Thread(target=second_close)
    try:
        first.start()
        deadline = time.monotonic() + 10
        while not w.closed:  # the first close has started
            assert time.monotonic() < deadline, "the first close never started"
            time.sleep(0.001)
        second.start()
        # nothing can be finished while the gate is shut, so the second close must still wait
        assert not second_returned.wait(0.3), "the second close returned before the file was finished"
        assert w.frames_written == 0 and first.is_alive()  # both closes really overlap
    finally:
        gate.set()
    assert second_returned.wait(30), "the second close never returned"
    first.join(30)
    second.join(30)
    assert not first.is_alive() and not second.is_alive()
    assert seen_by_second == {"frames_written": 600, "complete": True, "in_file": 600}
    with emdstream.open(path) as f:
        assert f["dataset_1"].complete and f["dataset_1"].frames_written == 600


FORK = """
import os, sys, time, numpy as np, emdstream
w = emdstream.EMDWriter({path!r}, (8, 8), "uint16")
w.put(np.zeros((8, 8), np.uint16))
pid = os.fork()
if pid == 0:
    sys.exit(0)  # the normal exit path: atexit hooks run in the child
deadline = time.monotonic() + 10
while not os.waitpid(pid, os.WNOHANG)[0]:
    if time.monotonic() > deadline:
        os.kill(pid, 9)
        sys.exit("the forked child hung at exit")
    time.sleep(0.05)
w.close()
print("frames", w.frames_written)
"""


def test_forked_child_exits_without_waiting_for_the_parents_writer(tmp_path):
    path = str(tmp_path / "fork.emd")
    out = subprocess.run([sys.executable, "-c", FORK.format(path=path)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "frames 1" in out.stdout.splitlines(), out.stdout  # exactly one frame, counted
    assert emdstream.open(path)["dataset_1"].frames_written == 1


@pytest.mark.parametrize("option", [dict(workers=0), dict(workers=-1), dict(workers="2"),
                                    dict(flush_seconds=0), dict(flush_frames=0),
                                    dict(queue_frames=-5), dict(chunk_frames=1.5)])
def test_bad_settings_are_refused_before_the_file_exists(tmp_path, option):
    path = str(tmp_path / "bad.emd")
    with pytest.raises(ValueError, match=next(iter(option))):
        EMDWriter(path, (8, 8), "uint16", **option)
    assert not os.path.exists(path)


def test_flush_frames_alone_makes_a_partial_chunk_durable(tmp_path):
    path = str(tmp_path / "ff.emd")
    w = EMDWriter(path, (8, 8), "uint16", flush_seconds=None, flush_frames=10)
    for i in range(25):  # one chunk of 1024 frames, far from full
        w.put(np.full((8, 8), i, np.uint16))
    deadline = time.monotonic() + 5
    while w.frames_written < 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    with emdstream.open(path, live=True) as f:
        n = f["dataset_1"].frames_written
        assert n >= 20
        np.testing.assert_array_equal(f["dataset_1"].data[:n, 0, 0], np.arange(n))
    w.close()


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="posix_fadvise: Linux and BSDs")
@pytest.mark.parametrize("how", ["put", "put_compressed"])
def test_writeback_starts_while_streaming_not_at_close(tmp_path, how):
    """The writer thread starts the disk write of each 32 MiB the file gains (``writeback``): the
    page cache does not hold the whole file dirty until close(); also when the producer writes
    the chunks itself (put_compressed), and never in the producer's thread."""
    from emdstream.encoders import BitshuffleLZ4
    from emdstream.write import writeback

    path = str(tmp_path / "wb.emd")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 1 << 16, (8, 256, 256), dtype=np.uint16)  # noise: stored raw
    blobs = [np.asarray(BitshuffleLZ4().encode(f)).tobytes() for f in frames]
    started, threads = [], set()
    real = os.posix_fadvise

    def spy(fd, offset, length, advice):
        started.append((offset, length, advice))
        threads.add(threading.current_thread().name)
        return real(fd, offset, length, advice)

    os.posix_fadvise = spy
    try:
        with EMDWriter(path, (256, 256), "uint16", n_frames=1024) as w:
            for i in range(1024):  # 128 MiB of incompressible frames
                if how == "put":
                    w.put(frames[i % 8])
                else:
                    w.put_compressed(blobs[i % 8])
                if i % 64 == 63:
                    time.sleep(0.02)  # a detector's pauses: the writer thread runs meanwhile
            during = len(started)
    finally:
        os.posix_fadvise = real
    assert during >= 2 and len(started) >= 3
    assert threads == {f"emdstream-writer-{os.path.basename(path)}"}
    assert all(advice == os.POSIX_FADV_DONTNEED for *_, advice in started)
    ends = [offset + length for offset, length, _ in started]
    assert [offset for offset, _, _ in started] == [0] + ends[:-1]  # contiguous, in order
    assert all(length >= writeback.STEP for _, length, _ in started)
    with emdstream.open(path) as f:
        np.testing.assert_array_equal(f["dataset_1"].data[1023], frames[1023 % 8])


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="posix_fadvise: Linux and BSDs")
def test_a_file_system_that_refuses_writeback_advice_still_gets_every_frame(tmp_path, monkeypatch):
    import errno

    def refuse(fd, offset, length, advice):
        raise OSError(errno.EINVAL, "advice not supported here")

    monkeypatch.setattr(os, "posix_fadvise", refuse)
    path = str(tmp_path / "noadvice.emd")
    frames = np.random.default_rng(1).integers(0, 1 << 16, (8, 256, 256), dtype=np.uint16)
    with EMDWriter(path, (256, 256), "uint16", n_frames=640) as w:
        for i in range(640):  # 80 MiB of incompressible frames: past the first writeback step
            w.put(frames[i % 8])
    with emdstream.open(path) as f:
        assert f["dataset_1"].frames_written == 640
        np.testing.assert_array_equal(f["dataset_1"].data[639], frames[639 % 8])


@pytest.mark.parametrize("chunk_frames", [1, 4])
def test_the_writers_bookkeeping_does_not_grow_with_the_chunks_written(tmp_path, chunk_frames):
    """A long acquisition keeps its memory: the writer remembers a chunk's (and a value block's)
    last size only while it is partly written (a rewrite of the same size must not land in place),
    not for every chunk ever written; a partial chunk written at each flush still reads back."""
    path = str(tmp_path / "long.emd")
    w = EMDWriter(path, (8, 8), "uint16", chunk_frames=chunk_frames, flush_seconds=0.02)
    frames = np.arange(3000 * 64, dtype=np.uint16).reshape(3000, 8, 8) % 7
    for i, frame in enumerate(frames):
        w.put(frame, z=float(i))
        if i in (1001, 2002):  # a partial chunk (and value block) made durable, then grown
            deadline = time.monotonic() + 10
            while w.frames_written <= i and time.monotonic() < deadline:
                time.sleep(0.01)
    w.close()
    sink = w._thread.sinks[0]
    assert len(sink.stored) <= 1 and len(sink.values._stored) <= 1
    with emdstream.open(path) as f:
        np.testing.assert_array_equal(f["dataset_1"].data[()], frames)
        np.testing.assert_array_equal(f["dataset_1"].values["z"], np.arange(3000.0))


def test_value_blocks_of_an_overrun_are_let_go(tmp_path):
    """One-frame chunks dropped in an overrun store no value rows: their rows count as written
    (NaN), so each block of rows is written and let go instead of held until close."""
    path = str(tmp_path / "overrun.emd")
    w = EMDWriter(path, (64, 64), "uint16", compression="gzip", workers=1, chunk_frames=1,
                  queue_frames=2, on_full="drop", flush_seconds=0.02)
    base = np.random.default_rng(0).integers(0, 60000, (64, 64)).astype(np.uint16)
    kept = []
    for i in range(3000):
        base[0, 0] = i
        if i % 40 == 0:  # the writer caught up: this frame is kept, however busy the machine
            caught_up = time.monotonic() + 10
            while w.frames_written < w.frames_put:
                assert time.monotonic() < caught_up, "the writer never caught up"
                time.sleep(0.001)
        if w.put(base, z=float(i)):
            kept.append(i)
    deadline = time.monotonic() + 10
    table = w._thread.sinks[0].values
    while (w.frames_written < len(kept) or len(table._blocks) > 1) and \
            time.monotonic() < deadline:  # flushes after the last drop
        time.sleep(0.01)
    held = len(table._blocks)
    w.close()
    assert 50 < len(kept) < 2900 and held <= 1  # 3,000 rows: 12 blocks of 256
    with emdstream.open(path) as f:
        z = f["dataset_1"].values["z"]
        np.testing.assert_array_equal(z[kept], np.asarray(kept, float))
        assert np.isnan(np.delete(z, kept)).all()
