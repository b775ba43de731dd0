"""The frames every benchmark writes: banks of distinct frames per workload, the chunks emdstream
makes of them, and the check that a file holds what was put."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

BANK_FRAMES = 64
MiB = 1 << 20
GiB = 1 << 30


def make_bank(workload: str, shape: tuple[int, int], n: int = BANK_FRAMES, seed: int = 1) -> np.ndarray:
    """``n`` distinct uint16 frames of a workload."""
    h, w = shape
    bank = np.empty((n, h, w), dtype=np.uint16)
    rng = np.random.default_rng(seed)
    if workload == "zeros":
        bank[...] = 0
    elif workload == "noise":
        for i in range(n):
            bank[i] = rng.integers(0, 1 << 16, size=(h, w), dtype=np.uint16)
    elif workload == "detector":
        # A counting detector in 4D-STEM: Poisson counts, a bright direct-beam disk (radius h/8)
        # near the centre whose position and brightness vary from frame to frame, weak diffuse
        # background and a few hot pixels.
        yy, xx = np.ogrid[:h, :w]
        radius = max(2.0, min(h, w) / 8)
        for i in range(n):
            cy = h / 2 + rng.uniform(-radius / 4, radius / 4)
            cx = w / 2 + rng.uniform(-radius / 4, radius / 4)
            r2 = (yy - cy) ** 2 + (xx - cx) ** 2
            lam = np.where(r2 < radius ** 2, rng.uniform(20, 60), 0.05 + 0.5 * np.exp(-r2 / (h * w / 4)))
            counts = rng.poisson(lam)
            hot = rng.integers(0, h * w, size=max(1, h * w // 20000))
            counts.reshape(-1)[hot] = rng.integers(1000, 60000, size=hot.size)
            np.minimum(counts, 65535, out=counts)
            bank[i] = counts
    else:
        raise ValueError(f"unknown workload {workload!r}")
    return bank


def chunk_frames_for(shape: tuple[int, int], chunk_frames: Optional[int]) -> int:
    """The frames per chunk emdstream uses (its own default when ``chunk_frames`` is None)."""
    from emdstream.format.chunk_grid import ChunkGeometry
    return ChunkGeometry(tuple(shape), 2, None, None, chunk_frames).k


def distinct_chunks(bank: np.ndarray, k: int) -> list[np.ndarray]:
    """The distinct k-frame chunks of the cycled bank (chunk j = frames j*k .. j*k+k-1 mod B)."""
    b = len(bank)
    if b % k == 0:
        return [bank[j * k:(j + 1) * k] for j in range(b // k)]  # views, no copy
    n_distinct = math.lcm(b, k) // k
    return [np.take(bank, np.arange(j * k, (j + 1) * k) % b, axis=0) for j in range(n_distinct)]


def check_written(path: str, n: int, bank: np.ndarray) -> tuple[int, dict]:
    """Assert an emdstream file holds frames 0, n/2, n-1 of ``bank`` cycled; (stored bytes, data
    group attributes)."""
    import h5py
    import hdf5plugin  # noqa: F401  (filters for reading back)

    with h5py.File(path, "r") as f:
        d = f["data/dataset_1/data"]
        assert d.shape == (n,) + bank.shape[1:], d.shape
        for i in (0, n // 2, n - 1):
            assert np.array_equal(d[i], bank[i % len(bank)]), f"frame {i} differs"
        return int(d.id.get_storage_size()), dict(d.parent.attrs)
