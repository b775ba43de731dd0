"""The summed pattern of counted streams (``write.summed``): exact against ``np.add.at``, from
several threads at once, and an index outside the pattern refused instead of written anywhere
(scipy's csc_matvec does not check). That the sum releases the GIL is shown by
``benchmarks/bench_counted.py``, not timed here."""
import threading

import numpy as np
import pytest

from emdstream.write import summed
from emdstream.write.summed import SummedPattern

SIZE = 576 * 576
summed.load()  # scipy's tools in place before a test swaps one out (the first pattern loads them)


@pytest.mark.parametrize("path", ["count", "csc_matvec", "add_at"])
@pytest.mark.parametrize("dtype", [np.uint32, np.int32, np.int64, np.uint64, np.uint16])
@pytest.mark.parametrize("counts_dtype", [np.uint16, np.float32])
def test_summed_pattern_equals_add_at(dtype, counts_dtype, path, monkeypatch):
    if path == "count":  # scipy is installed with the test extra: the GIL-free paths are tested
        assert summed.csc_matvec is not None and summed._COUNT
    elif path == "csc_matvec":  # events without weights as weights of 1
        monkeypatch.setattr(summed, "_COUNT", False)
    else:  # the fallback of a scipy without csc_matvec
        monkeypatch.setattr(summed, "csc_matvec", None)
    rng = np.random.default_rng(1)
    size = min(SIZE, np.iinfo(dtype).max)
    pattern = SummedPattern(size, counts_dtype)
    expected = np.zeros(size, pattern.dtype)
    for n in (0, 1, 1000, 70_000):
        idx = rng.integers(0, size, n).astype(dtype)
        weights = rng.integers(1, 50, n).astype(counts_dtype)
        pattern.add(idx)
        pattern.add(idx[::-1], weights)
        np.add.at(expected, idx, 1)
        np.add.at(expected, idx[::-1], weights.astype(pattern.dtype))
    assert pattern.total().dtype == pattern.dtype
    assert np.array_equal(pattern.total(), expected)


def _add_from_threads(pattern, sizes, times):
    """Each chunk (one per size) added ``times`` times by its own thread, all at once: what the
    pattern should have gained."""
    chunks = [np.random.default_rng(i).integers(0, SIZE, n).astype(np.uint32)
              for i, n in enumerate(sizes)]
    threads = [threading.Thread(target=lambda c=c: [pattern.add(c) for _ in range(times)])
               for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times * np.bincount(np.concatenate(chunks), minlength=SIZE)


def test_summed_pattern_from_threads_at_once():
    pattern = SummedPattern(SIZE, np.uint16)
    gained = _add_from_threads(pattern, [200_000] * 8, 3)
    assert np.array_equal(pattern.total(), gained)


def test_non_native_byte_order_and_sizes_from_threads_at_once():
    """Big-endian indices are added by their values (never their bytes reinterpreted); threads
    adding chunks of different sizes at once each get weights for all their events."""
    pattern = SummedPattern(SIZE, np.uint16)
    idx = np.array([1, 2, 3, SIZE - 1], ">u4")
    pattern.add(idx)
    pattern.add(idx.astype(">i8"), np.array([2, 2, 2, 2], ">u2"))
    want = np.zeros(SIZE, np.int64)
    want[[1, 2, 3, SIZE - 1]] = 3
    assert np.array_equal(pattern.total(), want)
    gained = _add_from_threads(pattern, [1, 10, 100_000, 5, 300_000, 2], 5)
    assert np.array_equal(pattern.total(), want + gained)


@pytest.mark.parametrize("sparse", [True, False], ids=["csc_matvec", "add_at"])
def test_weights_of_another_length_are_refused(sparse, monkeypatch):
    if not sparse:
        monkeypatch.setattr(summed, "csc_matvec", None)
    pattern = SummedPattern(SIZE, np.uint16)
    with pytest.raises(ValueError, match="weights"):
        pattern.add(np.arange(1000, dtype=np.uint32), np.ones(10, np.uint16))
    assert not pattern.total().any()


@pytest.mark.parametrize("bad", [SIZE, 2 ** 32 - 1])
def test_an_index_outside_the_pattern_is_refused(bad):
    pattern = SummedPattern(SIZE, np.uint16)
    idx = np.array([0, 5, bad, 7], np.uint32)
    with pytest.raises(ValueError, match="outside"):
        pattern.add(idx)
    with pytest.raises(ValueError, match="outside"):
        pattern.add(np.array([3, -1], np.int64))
    assert not pattern.total().any()


@pytest.mark.parametrize("weight", [1, 40_000, -3])
def test_integer_parts_never_overflow(weight, monkeypatch):  # events without weights: counted
    """Integer events are summed into int32 and folded into int64 before they could overflow:
    a pixel far past 2**31 (and big negative weights) still comes out exact."""
    monkeypatch.setattr(summed, "INT32_MAX", 1_000_000)  # fold often without 2**31 events
    pattern = SummedPattern(SIZE, np.int32)
    idx = np.full(60_000, 7, np.uint32)
    w = np.full(60_000, weight, np.int32)
    for _ in range(40):
        pattern.add(idx, w)
        pattern.add(idx)
    total = pattern.total()
    assert total[7] == 40 * 60_000 * (weight + 1) and total.sum() == total[7]


def test_counting_is_used_only_where_it_counts_right(monkeypatch):
    """The bincount loop borrowed from scipy is checked when scipy is loaded: a scipy whose
    function counts otherwise (or has another signature) is not used, and the sum stays exact."""
    assert summed._counts_right()

    def wrong(n_idx, col_idxs, n_row, n_col, ap, aj, col_offsets, bp):
        col_offsets[col_idxs] += 2
    monkeypatch.setattr(summed._sparsetools, "csr_column_index1", wrong)
    assert not summed._counts_right()
    monkeypatch.setattr(summed._sparsetools, "csr_column_index1", lambda *args: None)
    assert not summed._counts_right()


def test_scipy_is_imported_by_the_first_pattern_not_by_import_emdstream():
    """``import emdstream`` stays without scipy (~90 ms); the first pattern loads it, counting on."""
    import subprocess
    import sys
    code = ("import sys, emdstream; from emdstream.write import summed; "
            "print('scipy' in sys.modules); summed.SummedPattern(10, 'uint16'); "
            "print('scipy' in sys.modules, summed._COUNT)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "True"]
