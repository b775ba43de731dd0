"""zstd: ``numcodecs.Zstd`` (libzstd), a plain zstd frame, what HDF5 filter 32015 decodes."""
from __future__ import annotations

from typing import Any

import hdf5plugin
import numpy as np

from .base import ChunkEncoder


class Zstd(ChunkEncoder):
    name, filter_id, label = "zstd", 32015, "zstd"

    def __init__(self, level: int = 3):
        from numcodecs import Zstd as _Zstd

        self.level = level
        self._codec = _Zstd(level=level)

    def dataset_options(self) -> dict[str, Any]:
        return dict(hdf5plugin.Zstd(clevel=self.level))

    def encode(self, chunk: np.ndarray) -> bytes:
        return self._codec.encode(np.ascontiguousarray(chunk))
