"""gzip: HDF5's built-in byte shuffle (done with NumPy), then deflate via ``zlib`` (filters 2 + 1);
with ``shuffle=False`` deflate alone (filter 1)."""
from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from .base import ChunkEncoder


class GzipShuffle(ChunkEncoder):
    name, filter_id, label = "gzip", 1, "gzip"

    def __init__(self, level: int = 4, shuffle: bool = True):
        self.level = level
        self.shuffle = shuffle

    def dataset_options(self) -> dict[str, Any]:
        return dict(compression="gzip", compression_opts=self.level, shuffle=self.shuffle)

    def encode(self, chunk: np.ndarray) -> bytes:
        flat = np.ascontiguousarray(chunk).reshape(-1)
        if not self.shuffle:
            return zlib.compress(flat.data, self.level)
        # HDF5 shuffle filter: all first bytes of each element, then all second bytes, ...
        shuffled = flat.view(np.uint8).reshape(-1, flat.itemsize).T.copy()
        return zlib.compress(shuffled.data, self.level)
