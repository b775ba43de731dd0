"""The encoder interface: a whole chunk in, exactly the bytes its HDF5 filter decodes out.

Encoders run on the write path's threads, so each uses a library that releases the GIL while
compressing. Thread safety: an encoder object holds settings only and may be used from any thread.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np


class ChunkEncoder:
    """Base: no filter; the chunk's raw bytes. Each subclass names itself (``name``, what
    ``compression=`` takes) and the HDF5 filter that decodes its chunks (``filter_id``); the
    registry of names is ``encoders.registry``: a new codec is added there, by name."""

    name: Optional[str] = None
    filter_id: Optional[int] = None  # HDF5 filter id (None: no filter)
    label: str = "none"              # how ``info`` names the filter

    def dataset_options(self) -> dict[str, Any]:
        """Keywords for ``h5py.Group.create_dataset`` that declare the matching HDF5 filter."""
        return {}

    def for_frames(self, frame_bytes: int, itemsize: int) -> ChunkEncoder:
        """The encoder a stream of frames of ``frame_bytes`` bytes (elements of ``itemsize``)
        uses (parameters that suit them, where this one leaves them open): this one."""
        return self

    def encode(self, chunk: np.ndarray):
        """The bytes of ``chunk`` as stored on disk (any buffer ``write_direct_chunk`` takes)."""
        return np.ascontiguousarray(chunk).data

    def check_encoded(self, blob: Any, nbytes: int, itemsize: int, gathered: bool = False):
        """``blob`` as a buffer to store as it is, if it can be this codec's encoding of a frame of
        ``nbytes`` bytes (the cheap checks; the body is not decoded); ValueError otherwise.
        ``gathered``: it goes into a multi-frame chunk under the stream's own header, so it must
        use the stream's own parameters."""
        raise ValueError(f"compression {self.name!r} does not take frames compressed elsewhere; "
                         f"put_compressed takes bslz4 (HDF5 filter 32008) frames")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
