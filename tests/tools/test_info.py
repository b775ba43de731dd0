"""``emdstream info`` on real files, as a subprocess: per-frame values (names and ranges, text and
JSON) and a finished file told apart from one whose every position was written."""
import json
import subprocess
import sys

import numpy as np
import pytest

from emdstream import EMDWriter


def info(*args) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "emdstream", "info", *map(str, args)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def stopped_scan(tmp_path_factory):
    """A 4x4 scan stopped after 5 frames, each put with stage_x and dose."""
    path = tmp_path_factory.mktemp("info") / "stopped.emd"
    with EMDWriter(path, frame_shape=(8, 8), dtype="uint16", scan_shape=(4, 4), workers=1) as w:
        for i in range(5):
            values = {"stage_x": -2.5 + i, **({"dose": 0.125} if i < 3 else {})}
            w.put(np.full((8, 8), i, np.uint16), **values)
    return path


def test_json_lists_per_frame_values_with_their_ranges(stopped_scan):
    d = json.loads(info(stopped_scan, "--json").stdout)["datasets"]["dataset_1"]
    assert list(d["values"]) == ["timestamp", "stage_x", "dose"]
    assert d["values"]["stage_x"] == {"frames": 5, "min": -2.5, "max": 1.5}
    assert d["values"]["dose"] == {"frames": 3, "min": 0.125, "max": 0.125}  # left out: NaN
    assert d["values"]["timestamp"]["frames"] == 5
    assert d["finished"] is True and d["positions"] == 16 and d["frames_written"] == 5


def test_text_shows_values_and_how_many_positions_were_written(stopped_scan):
    out = info(stopped_scan).stdout
    assert "/data/dataset_1  [finished, 5 of 16 positions written]" in out
    assert "[complete]" not in out
    lines = [line.split() for line in out.splitlines() if line.startswith("  value ")]
    assert [(w[1], " ".join(w[2:])) for w in lines[1:]] == [("stage_x", "-2.5 .. 1.5 (5 frames)"),
                                                            ("dose", "0.125 .. 0.125 (3 frames)")]
    assert lines[0][1] == "timestamp" and lines[0][-3:] == ["(UTC)", "(5", "frames)"]


def test_a_whole_scan_says_all_positions_written(tmp_path):
    path = tmp_path / "whole.emd"
    with EMDWriter(path, frame_shape=(4,), dtype="float32", scan_shape=(2, 3), workers=1) as w:
        for _ in range(6):
            w.put(np.zeros(4, np.float32))
    assert "/data/dataset_1  [finished, all 6 positions written]" in info(path).stdout
