"""Ctrl-C while a producer waits for the writer (or hands it a chunk) never breaks the file.

Real SIGINTs, thousands of them, into a real producer whose writer thread is held up; found: a
``threading.Semaphore`` left locked (the writer's next release hung, close() never returned), a
chunk written by the producer but never counted, places in the queue lost until puts waited for
good, a frame_buffer slot never committed. See ``emdstream.write.room`` and
``emdstream.write.held_interrupts``.
"""
import os
import subprocess
import sys

import pytest

from emdstream.tools.verify import verify

CHILD = os.path.join(os.path.dirname(__file__), "..", "support", "interrupt_child.py")


@pytest.mark.parametrize("kind", ["put", "frame_buffer", "k1", "gathered", "counted"])
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
