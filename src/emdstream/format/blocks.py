"""Reading a dataset without loading it whole: chunk-aligned blocks, frame slots."""
from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Optional

import h5py

BLOCK_BYTES = 64 << 20  # read data in chunk-aligned blocks of at most this size


def iter_blocks(data: h5py.Dataset, max_bytes: int = BLOCK_BYTES) -> Iterator[tuple[slice, ...]]:
    """Selections covering ``data`` once, in C order, each at most ``max_bytes`` (or one element row)
    and aligned to the chunks: trailing axes whole, leading axes cut into multiples of the chunk."""
    shape = data.shape
    if not shape:
        yield ()
        return
    chunks = data.chunks or (1,) * len(shape)
    block = list(shape)
    for axis in range(len(shape)):
        rest = data.dtype.itemsize * math.prod(block[axis + 1:])
        if block[axis] * rest <= max_bytes:
            break
        n = max_bytes // rest
        if n >= chunks[axis]:
            n -= n % chunks[axis]
        block[axis] = max(1, n)
        if n >= 1:
            break
    starts = [range(0, n, max(1, b)) for n, b in zip(shape, block)]
    for corner in itertools.product(*starts):
        yield tuple(slice(s, min(s + b, n)) for s, b, n in zip(corner, block, shape))


def frame_slots(shape: tuple[int, ...], frame_ndim: Optional[int] = None) -> int:
    """Frame slots of data of this shape: all axes but the frame axes (``frame_ndim``, which
    emdstream records on each data group; else the last two, or one for 2-D data)."""
    if frame_ndim is None:
        return math.prod(shape[:max(1, len(shape) - 2)])
    return math.prod(shape[:len(shape) - int(frame_ndim)])
