"""Hypothesis-fuzzed metadata and frames: accepted exactly, or refused clearly with nothing lost."""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from support.frames import write_frames

import emdstream
from emdstream import EMDWriter

FRAME = (4, 5)
SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

storable = st.one_of(
    st.integers(-2**62, 2**62), st.floats(allow_nan=False), st.booleans(),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
            max_size=40),
    hnp.arrays(st.sampled_from([np.int8, np.uint16, np.int64, np.float32, np.float64]),
               hnp.array_shapes(max_dims=2, max_side=4)),
)
unstorable = st.one_of(st.none(), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                       st.lists(st.text(max_size=3), min_size=1, max_size=3),
                       st.builds(object), st.complex_numbers(allow_nan=False))
keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=12)


@SETTINGS
@given(good=st.dictionaries(keys, storable, max_size=5), bad=st.dictionaries(keys, unstorable, max_size=2))
def test_metadata_round_trips_or_is_refused_before_the_file_exists(tmp_path, good, bad):
    path = str(tmp_path / "meta.emd")
    if os.path.exists(path):
        os.remove(path)
    metadata = {**good, **bad}
    if bad:
        with pytest.raises(TypeError, match="unsupported metadata value"):
            EMDWriter(path, FRAME, "uint8", n_frames=1, microscope=metadata)
        assert not os.path.exists(path)
        return
    write_frames(path, np.zeros((1,) + FRAME, np.uint8), n_frames=1, microscope=metadata)
    with emdstream.open(path) as f:
        got = f.metadata["microscope"]
    assert set(got) == set(metadata)
    for key, value in metadata.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(got[key], value)
        else:
            assert got[key] == value


frames = st.one_of(
    hnp.arrays(st.sampled_from(["uint8", "uint16", "int16", "int32", "uint32", "float32",
                                "float64", "complex64", "bool"]),
               st.sampled_from([FRAME, (5, 4), (4, 5, 1), (20,)]),
               elements=None),
    st.builds(list, st.just([[1] * 5] * 4)), st.text(max_size=3), st.none(), st.integers(),
)


@SETTINGS
@given(puts=st.lists(frames, min_size=1, max_size=8))
def test_frames_are_stored_exactly_or_refused_without_losing_others(tmp_path, puts):
    path = str(tmp_path / "frames.emd")
    if os.path.exists(path):
        os.remove(path)
    accepted = []
    with EMDWriter(path, FRAME, "float32", chunk_frames=3) as w:
        for frame in puts:
            arr = np.asarray(frame) if isinstance(frame, (np.ndarray, list)) else None
            ok = (arr is not None and arr.shape == FRAME and np.can_cast(arr.dtype, np.float32, "safe"))
            if ok:
                w.put(frame)
                accepted.append(np.asarray(arr, np.float32))
            else:
                with pytest.raises((ValueError, TypeError)):
                    w.put(frame)
    with emdstream.open(path) as f:
        ds = f["dataset_1"]
        assert ds.frames_written == len(accepted)
        np.testing.assert_array_equal(ds.data[()], np.array(accepted, np.float32).reshape((-1,) + FRAME))
