"""Per-frame value names: ``timestamp`` is reserved, whether on the first put or a later one, and
the message says so; the limit of 31 names (docs/file-format.md)."""
import numpy as np
import pytest

import emdstream
from emdstream import EMDWriter


@pytest.mark.parametrize("first", [{}, {"stage_x": 1.0}])
def test_timestamp_is_reserved_on_any_put(tmp_path, first):
    path = tmp_path / "t.emd"
    with EMDWriter(path, frame_shape=(4,), dtype="uint16", workers=1) as w:
        if first:
            w.put(np.zeros(4, np.uint16), **first)
        with pytest.raises(ValueError, match=r"'timestamp' is reserved: emdstream records each "
                                             r"frame's UTC time at put\(\) itself"):
            w.put(np.ones(4, np.uint16), timestamp=5.0, **first)
        w.put(np.ones(4, np.uint16), **first)  # nothing was taken; the writer goes on
    with emdstream.open(path) as f:
        ds = f["dataset_1"]
        assert ds.frames_written == 1 + bool(first)
        assert np.isfinite(ds.values["timestamp"]).all() and ds.values["timestamp"].min() > 1e9


def test_31_names_fit_and_32_do_not(tmp_path):
    names = {f"v{i}": float(i) for i in range(31)}
    with EMDWriter(tmp_path / "ok.emd", frame_shape=(4,), dtype="uint16", workers=1) as w:
        w.put(np.zeros(4, np.uint16), **names)
    with emdstream.open(tmp_path / "ok.emd") as f:
        values = f["dataset_1"].values
    assert list(values) == ["timestamp", *names] and values["v30"][0] == 30.0
    with EMDWriter(tmp_path / "no.emd", frame_shape=(4,), dtype="uint16", workers=1) as w, \
            pytest.raises(ValueError, match="at most 31 per-frame values, got 32"):
        w.put(np.zeros(4, np.uint16), **names, v31=31.0)
