"""Chunk encoders: compress a whole chunk outside HDF5 into exactly the bytes its HDF5 filter decodes.

One module per codec (``bslz4``, ``zstd``, ``blosc``, ``gzip``; ``base`` is the interface and the
raw ``None`` codec); ``registry`` lists them by the names ``compression=`` takes. Each pairs the
dataset-creation keywords (the stock HDF5 / hdf5plugin filter a reader will use) with an ``encode``
that produces a chunk for ``Dataset.id.write_direct_chunk``.

May import: ``emdstream.errors`` only.
"""
from .base import ChunkEncoder
from .blosc import BloscLZ4
from .bslz4 import BitshuffleLZ4
from .gzip import GzipShuffle
from .registry import COMPRESSIONS, describe_filters, get_encoder
from .zstd import Zstd

__all__ = ["COMPRESSIONS", "BitshuffleLZ4", "BloscLZ4", "ChunkEncoder", "GzipShuffle", "Zstd",
           "describe_filters", "get_encoder"]
