"""The codecs ``compression=`` takes, listed explicitly, and the filter names ``info`` prints."""
from __future__ import annotations

from typing import Optional

from .base import ChunkEncoder
from .blosc import BloscLZ4
from .bslz4 import BitshuffleLZ4
from .gzip import GzipShuffle
from .zstd import Zstd

_ENCODERS: dict[Optional[str], type[ChunkEncoder]] = {
    cls.name: cls for cls in (ChunkEncoder, BitshuffleLZ4, Zstd, BloscLZ4, GzipShuffle)}
COMPRESSIONS = tuple(name for name in _ENCODERS if name) + (None,)
_LABELS = {2: "shuffle", 32026: "blosc2", 32000: "lzf", 3: "fletcher32",
           **{cls.filter_id: cls.label for cls in _ENCODERS.values() if cls.filter_id}}


def get_encoder(compression) -> ChunkEncoder:
    """The encoder for ``compression``: a name in ``COMPRESSIONS`` ("none" = None) or an encoder
    object (e.g. ``Zstd(level=9)``), returned as it is. ValueError for anything else."""
    if isinstance(compression, ChunkEncoder):
        return compression
    if compression == "none":
        compression = None
    try:
        return _ENCODERS[compression]()
    except (KeyError, TypeError):
        raise ValueError(f"compression must be one of {COMPRESSIONS} ('none' = None) or an "
                         f"encoder object such as emdstream.encoders.Zstd(level=9), "
                         f"got {compression!r}") from None


def describe_filters(dataset) -> str:
    """Human-readable name of the filters of an h5py dataset, e.g. ``bitshuffle+lz4``."""
    plist = dataset.id.get_create_plist()
    found = [_LABELS.get(plist.get_filter(i)[0], str(plist.get_filter(i)[0]))
             for i in range(plist.get_nfilters())]
    return "+".join(found) if found else "none"
