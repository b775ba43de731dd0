"""kill -9 of a real process streaming a counted stream: every frame the writer reported durable
keeps exactly its events (and counts and values) in the live file and after `recover`."""
import os
import random
import re
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from support.counted import events_of

import emdstream

DURABLE = re.compile(r"durable (\d+)$")
CHILD = os.path.join(os.path.dirname(os.path.dirname(__file__)), "support", "counted_child.py")


def check_counted(ds, n):
    matrix = ds.csr(0, n)
    assert matrix.shape[0] == n
    for slot in range(n):
        row = slice(matrix.indptr[slot], matrix.indptr[slot + 1])
        assert np.array_equal(matrix.indices[row], events_of(slot)), f"slot {slot}"
        assert np.all(matrix.data[row] == slot % 7 + 1), f"slot {slot}"
    if n:  # before the first durable frame no value name is recorded yet
        x = ds.values["x"].reshape(-1)[:n]
        assert np.array_equal(x, np.arange(n))


@pytest.mark.parametrize("mode", ["scan", "open"])
def test_kill_9_keeps_every_durable_frames_events(tmp_path, mode):
    rng = random.Random(f"counted-{mode}")
    seen = []
    for run in range(4):
        path = str(tmp_path / f"{mode}{run}.emd")
        child = subprocess.Popen([sys.executable, CHILD, path, mode], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "started", child.stderr.read()
        first = ""  # a busy machine may take seconds to the first durable frame: wait for it
        while child.poll() is None and not int((DURABLE.match(first.strip()) or [0, 0])[1]):
            first = child.stdout.readline()
        time.sleep(rng.uniform(0.0, 1.0))
        child.kill()
        out, err = child.communicate()
        out = first + out
        # a line cut by the kill gives at most a smaller lower bound
        durable = [int(m.group(1)) for m in map(DURABLE.match, out.splitlines()) if m]
        durable = durable[-1] if durable else 0
        seen.append(durable)
        with emdstream.open(path, live=True) as f:
            n = f["electrons"].frames_written
            assert n >= durable
            check_counted(f["electrons"], n)
        report = emdstream.recover(path)
        assert report.frames_written["electrons"] >= durable
        with emdstream.open(path) as f:
            e = f["electrons"]
            assert e.complete
            n = e.frames_written
            assert n >= durable
            check_counted(e, n)
            weights = np.repeat([s % 7 + 1 for s in range(n)], [events_of(s).size for s in range(n)])
            expected = np.bincount(np.concatenate([events_of(s) for s in range(n)]), weights,
                                   minlength=e.frame_shape[0] * e.frame_shape[1])
            assert np.array_equal(e.summed_pattern.reshape(-1), expected)
        with h5py.File(path, "r") as h5:
            events = h5["data/electrons/events"]
            assert events["indptr"].shape == (n + 1,) if mode == "open" else True
            assert events["indices"].shape[0] == events["indptr"][n]
    assert sum(d > 0 for d in seen) >= 3, seen
