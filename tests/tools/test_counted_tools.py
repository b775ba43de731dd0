"""info, verify and preview on a counted stream: the events are described, checked and drawn."""
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
from support.counted import events_of

import emdstream
from emdstream import Acquisition, CountedStream
from emdstream.tools.verify import verify

SHAPE = (32, 48)


@pytest.fixture
def counted_file(tmp_path):
    path = str(tmp_path / "c.emd")
    with Acquisition(path, scan_shape=(4, 5), streams=[CountedStream("electrons", SHAPE)]) as acq:
        for slot in range(20):
            acq["electrons"].put_events(events_of(slot))
    return path


def run(*args):
    return subprocess.run([sys.executable, "-m", "emdstream", *args], capture_output=True, text=True)


def test_info_describes_the_events(counted_file):
    out = run("info", counted_file)
    assert out.returncode == 0, out.stderr
    n = sum(events_of(s).size for s in range(20))
    assert f"events  {n} in 32x48 frames" in out.stdout
    info = json.loads(run("info", counted_file, "--json").stdout)
    assert info["datasets"]["electrons"]["events"]["events"] == n


def test_verify_accepts_and_then_catches_damaged_events(counted_file):
    assert verify(counted_file) == []
    with h5py.File(counted_file, "r+") as f:
        f["data/electrons/events/indices"][3] = SHAPE[0] * SHAPE[1] + 5
    problems = verify(counted_file)
    assert any("outside the frame" in p for p in problems), problems
    with h5py.File(counted_file, "r+") as f:
        f["data/electrons/events/indices"][3] = 0
        f["data/electrons/data"][0, 0] += 1
    problems = verify(counted_file)
    assert any("counts image differs" in p for p in problems), problems


def test_preview_draws_counts_image_and_summed_pattern(counted_file, tmp_path):
    pytest.importorskip("matplotlib")
    from emdstream.tools.preview import compute_panels

    _, panels = compute_panels(counted_file)
    titles = [p.title for p in panels]
    assert titles == ["electrons: events per position", "electrons: summed pattern (log)"]
    image = panels[0].values
    assert image.shape == (4, 5) and image.reshape(-1)[7] == events_of(7).size
    assert np.array_equal(panels[1].values, emdstream.open(counted_file)["electrons"].summed_pattern)
    out = run("preview", counted_file, "-o", str(tmp_path / "p.png"))
    assert out.returncode == 0, out.stderr
