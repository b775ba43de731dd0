"""gzip: HDF5's built-in byte shuffle (done with NumPy), then deflate via ``zlib`` (filters 2 + 1);
with ``shuffle=False`` deflate alone (filter 1). ``fast=True`` (emdstream's own small tables): level
1, deflated by ISA-L (``isal``) where installed, else by zlib (other deflate streams, the same
bytes decoded)."""
from __future__ import annotations

import zlib
from typing import Any

try:
    from isal import isal_zlib
except ImportError:  # zlib's deflate at level 1
    isal_zlib = None

import numpy as np

from .base import ChunkEncoder


class GzipShuffle(ChunkEncoder):
    name, filter_id, label = "gzip", 1, "gzip"

    def __init__(self, level: int = 4, shuffle: bool = True, fast: bool = False):
        self.level = 1 if fast else level
        self.shuffle = shuffle
        self.fast = fast

    def _deflate(self, data) -> bytes:
        if self.fast and isal_zlib is not None:
            return isal_zlib.compress(data, 1)
        return zlib.compress(data, self.level)

    def dataset_options(self) -> dict[str, Any]:
        return dict(compression="gzip", compression_opts=self.level, shuffle=self.shuffle)

    def encode(self, chunk: np.ndarray) -> bytes:
        flat = np.ascontiguousarray(chunk).reshape(-1)
        if not self.shuffle:
            return self._deflate(flat.data)
        # HDF5 shuffle filter: all first bytes of each element, then all second bytes, ...
        shuffled = flat.view(np.uint8).reshape(-1, flat.itemsize).T.copy()
        return self._deflate(shuffled.data)
