"""Ctrl-C while a producer waits for the writer (or hands it a chunk) never breaks the file.

Real SIGINTs, thousands of them, into a real producer whose writer thread is held up; found: a
``threading.Semaphore`` left locked (the writer's next release hung, close() never returned), a
chunk written by the producer but never counted, places in the queue lost until puts waited for
good, a frame_buffer slot never committed. See ``emdstream.write.room`` and
``emdstream.write.held_interrupts``.
"""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import emdstream
from emdstream import EMDWriter
from emdstream.tools.verify import verify

CHILD = os.path.join(os.path.dirname(__file__), "..", "support", "interrupt_child.py")


@pytest.mark.parametrize("kind", ["put", "frame_buffer", "k1", "gathered", "counted",
                                  "counted_slots"])
def test_sigint_storm_while_waiting_for_room_then_close_finishes_with_every_frame(tmp_path, kind):
    path = str(tmp_path / f"{kind}.emd")
    child = subprocess.run([sys.executable, CHILD, kind, path], capture_output=True, text=True,
                           timeout=120)
    out = child.stdout.split()
    assert child.returncode == 0 and "closed" in out, child.stdout + child.stderr[-3000:]
    done, interrupts = int(out[out.index("put") + 1]), int(out[out.index("put") + 2])
    written, taken = int(out[out.index("closed") + 1]), int(out[out.index("closed") + 2])
    assert interrupts > 0, "no SIGINT reached a put: the test tests nothing"
    assert done == 300, f"only {done} puts completed: the producer waited for good"
    assert written == taken >= done  # every frame taken is in the file, and counted
    assert verify(path) == []


class _InterruptsWhenRead:
    """A per-frame value that sends this process SIGINT while the put reads it (inside the put)."""

    def __array__(self, dtype=None, copy=None):
        os.kill(os.getpid(), signal.SIGINT)
        return np.arange(4, dtype=np.float64)


@pytest.fixture
def ctrl_c():
    """SIGINT raises KeyboardInterrupt, as in a terminal, also where the tests were started in a
    background job (which starts them with SIGINT ignored)."""
    started_with = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, started_with)


def test_a_sigint_inside_a_put_raises_when_the_put_has_ended_with_its_frames_taken(tmp_path,
                                                                                   ctrl_c):
    path = str(tmp_path / "held.emd")
    with EMDWriter(path, (8, 8), "uint16", n_frames=8, chunk_frames=2) as w:
        frames = np.arange(4 * 64, dtype=np.uint16).reshape(4, 8, 8)
        with pytest.raises(KeyboardInterrupt):
            w.put_many(frames, z=_InterruptsWhenRead())
        assert w.frames_put == 4  # taken whole, then interrupted
        w.put_many(frames, z=np.zeros(4))
    with emdstream.open(path) as f:
        assert f["dataset_1"].frames_written == 8
        np.testing.assert_array_equal(f["dataset_1"].data[:4], frames)
        np.testing.assert_array_equal(f["dataset_1"].values["z"][:4], np.arange(4))


def test_the_program_s_own_sigint_handler_keeps_working_around_puts(tmp_path, ctrl_c):
    calls = []
    previous = signal.getsignal(signal.SIGINT)
    try:
        with EMDWriter(str(tmp_path / "h.emd"), (4, 4), "uint16", n_frames=4) as w:
            w.put(np.zeros((4, 4), np.uint16))
            signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))
            w.put(np.zeros((4, 4), np.uint16))  # wraps the new handler
            os.kill(os.getpid(), signal.SIGINT)  # outside a put: the program's handler runs
            time.sleep(0.01)
            assert calls == [signal.SIGINT]
            signal.signal(signal.SIGINT, previous)
            w.put(np.zeros((4, 4), np.uint16))
            assert signal.getsignal(signal.SIGINT) is not previous  # guarded while writing
        assert signal.getsignal(signal.SIGINT) is previous  # the last writer closed: given back
    finally:
        signal.signal(signal.SIGINT, previous)


FORK_INSIDE_A_PUT = '''
import os, signal, sys, threading, time
import numpy as np
from emdstream import EMDWriter
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (see ctrl_c)
w = EMDWriter(sys.argv[1], (8, 8), "uint16", n_frames=64, chunk_frames=2, queue_frames=4)
hold = threading.Event()

def stall():
    with w._thread.io_lock:  # the writer thread cannot write: the main thread's puts wait
        hold.set()
        time.sleep(1.5)

def fork_from_this_thread():
    time.sleep(0.5)  # the main thread is waiting inside put by now
    pid = os.fork()
    if pid == 0:  # this thread is the child's main thread, outside any put
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)
            os._exit(0)  # the SIGINT was swallowed
        except KeyboardInterrupt:
            os._exit(7)
    _, status = os.waitpid(pid, 0)
    print("child", os.waitstatus_to_exitcode(status), flush=True)

threading.Thread(target=stall, daemon=True).start()
hold.wait()
forker = threading.Thread(target=fork_from_this_thread)
forker.start()
for i in range(12):
    w.put(np.full((8, 8), i, np.uint16))
forker.join()
w.close()
'''


def test_a_child_forked_while_the_main_thread_is_inside_a_put_still_gets_ctrl_c(tmp_path):
    out = subprocess.run([sys.executable, "-c", FORK_INSIDE_A_PUT, str(tmp_path / "f.emd")],
                         capture_output=True, text=True, timeout=60)
    assert "child 7" in out.stdout, out.stdout + out.stderr[-2000:]


def test_a_sigint_held_in_a_put_is_not_lost_when_another_handler_raises_as_the_put_ends(ctrl_c):
    """Another signal's Python handler raising inside the hold's exit, after the count went down
    (forced onto the first line after it with a trace function), must not leave the SIGINT noted
    and held for good: the KeyboardInterrupt is raised there, or at the start of the next hold,
    before its body runs. (Raising on the count's own line, before it runs, leaves the count up:
    the hold then stays on; not solved, see held_interrupts.)"""
    import inspect
    import signal
    import sys

    from emdstream.write import held_interrupts as hi
    from emdstream.write.held_interrupts import held_interrupts

    class Other(Exception):
        pass

    def other(signum, frame):
        raise Other("another handler")

    code = hi.HeldInterrupts.__exit__.__code__
    count_line = next(i for i, line in enumerate(inspect.getsourcelines(code)[0],
                                                 code.co_firstlineno) if "_Held.depth -= 1" in line)

    def tracer(frame, event, arg):
        if frame.f_code is not code:
            return None
        passed = [False]  # the count's line has run

        def local(frame, event, arg):
            if event != "line":
                return local
            if passed[0]:
                sys.settrace(None)
                frame.f_trace = None
                signal.raise_signal(signal.SIGUSR1)  # its handler raises Other on this line
            passed[0] = frame.f_lineno == count_line
            return local
        return local

    old = signal.signal(signal.SIGUSR1, other)
    ran = []
    try:
        with pytest.raises((KeyboardInterrupt, Other)) as info:
            with held_interrupts:
                signal.raise_signal(signal.SIGINT)  # noted, held to the end of the block
                assert hi._Held.caught
                sys.settrace(tracer)
        if not isinstance(info.value, KeyboardInterrupt):  # the next hold raises it first
            with pytest.raises(KeyboardInterrupt):
                with held_interrupts:
                    ran.append(True)
        assert not ran and not hi._Held.caught and not hi._Held.depth
    finally:
        sys.settrace(None)
        signal.signal(signal.SIGUSR1, old)
        hi._Held.caught, hi._Held.depth = False, 0


def test_ctrl_c_reaches_a_producer_waiting_for_a_failed_writer_to_let_go(tmp_path, ctrl_c,
                                                                        monkeypatch):
    """A producer's own chunk write fails (``put_compressed``, ``write_now``): it waits for the
    writer thread to let go of the file before raising. A writer thread stuck there (a dead disk:
    ``_abandon`` made to take 2 s) must not leave the producer deaf to Ctrl-C."""
    import threading

    from emdstream.encoders import BitshuffleLZ4
    from emdstream.write import sink, writer_thread

    real_abandon, real_write = writer_thread.WriterThread._abandon, sink.StreamSink.write_chunk

    def stuck_abandon(self):
        time.sleep(2)
        real_abandon(self)

    def write_chunk(self, *args, **kwargs):
        if threading.current_thread() is threading.main_thread():
            threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
            raise OSError(5, "injected: the disk failed under the producer")
        return real_write(self, *args, **kwargs)
    monkeypatch.setattr(writer_thread.WriterThread, "_abandon", stuck_abandon)
    monkeypatch.setattr(sink.StreamSink, "write_chunk", write_chunk)
    w = EMDWriter(str(tmp_path / "stuck.emd"), (64, 64), "uint16", chunk_frames=1, n_frames=500)
    blob = np.asarray(BitshuffleLZ4().encode(np.ones((64, 64), np.uint16))).tobytes()
    t = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        for _ in range(500):
            w.put_compressed(blob)
            time.sleep(0.001)  # the writer thread idles: the producer writes its own chunks
    assert time.monotonic() - t < 1.5, "Ctrl-C waited for the stuck writer thread"
    with pytest.raises(emdstream.WriterError, match="under the producer"):
        w.close()
