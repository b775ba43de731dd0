"""blosc-lz4: ``numcodecs.Blosc`` (c-blosc 1.x, the library HDF5 filter 32001 is built on; the
``blosc2`` package writes a newer chunk format that filter 32001 refuses)."""
from __future__ import annotations

from typing import Any

import hdf5plugin
import numpy as np

from .base import ChunkEncoder


class BloscLZ4(ChunkEncoder):
    name, filter_id, label = "blosc-lz4", 32001, "blosc"

    def __init__(self, level: int = 5):
        from numcodecs import Blosc

        self.level = level
        self._codec = Blosc(cname="lz4", clevel=level, shuffle=Blosc.SHUFFLE, blocksize=0)

    def dataset_options(self) -> dict[str, Any]:
        return dict(hdf5plugin.Blosc(cname="lz4", clevel=self.level,
                                     shuffle=hdf5plugin.Blosc.SHUFFLE))

    def encode(self, chunk: np.ndarray) -> bytes:
        return self._codec.encode(np.ascontiguousarray(chunk))
