"""Counted-stream test data: deterministic event lists per frame slot, and checks against a file."""
import numpy as np

SHAPE = (32, 48)  # a small detector: flat indices up to 1535


def events_of(slot: int, shape=SHAPE, most: int = 60) -> np.ndarray:
    """The flat pixel indices of frame slot ``slot`` (the same in every process)."""
    rng = np.random.default_rng(slot)
    return rng.integers(0, shape[0] * shape[1], int(rng.integers(0, most)), dtype=np.uint32)


def csr_of(slots, shape=SHAPE):
    """(indptr, indices) of the given slots, in order."""
    lists = [events_of(s, shape) for s in slots]
    indptr = np.concatenate([[0], np.cumsum([len(x) for x in lists])]).astype(np.int64)
    indices = np.concatenate(lists) if lists else np.zeros(0, np.uint32)
    return indptr, indices


def check_events(dataset, n: int, dropped=(), shape=SHAPE) -> None:
    """The first ``n`` slots of a counted dataset hold exactly the events of ``events_of``
    (none for a dropped slot), in the csr, the counts image and per frame."""
    matrix = dataset.csr(0, n)
    assert matrix.shape == (n, shape[0] * shape[1])
    image = np.asarray(dataset.counts_image).reshape(-1)
    for slot in range(n):
        expected = np.zeros(0, np.uint32) if slot in dropped else events_of(slot, shape)
        row = matrix.indices[matrix.indptr[slot]:matrix.indptr[slot + 1]]
        assert np.array_equal(row, expected), f"slot {slot}"
        if slot not in dropped:
            assert image[slot] == expected.size, f"slot {slot}"
