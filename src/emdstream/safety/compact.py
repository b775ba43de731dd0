"""Giving back the dead space that rewriting partly filled chunks leaves in a finished file.

A slow stream makes its partly filled chunk durable at every flush by writing it again; HDF5
does not reuse the older, smaller copies, so the file grows by the sum of them (2.4x the data for
32 frames at 5 fps, before this). A finished file with much dead space is therefore copied, object
by object (HDF5's object copy moves chunks as they are, without decoding), into a new file that
replaces it atomically: a kill leaves the finished file as it was, plus a temporary copy that
``recover`` removes.
"""
from __future__ import annotations

import os

import h5py

from emdstream.format.layout import LIBVER

DEAD_FRACTION = 0.10      # compact when more than this share of the file is dead...
DEAD_MIN_BYTES = 256 << 10  # ...and at least this much (small files are mostly HDF5 metadata)


def temp_path(path: str | os.PathLike) -> str:
    return os.fspath(path) + ".emdstream-compact"


def dead_bytes(path: str | os.PathLike) -> int:
    """File size minus the bytes the datasets' data occupy (an upper bound of the dead space)."""
    used = 0

    def visit(_name, obj) -> None:
        nonlocal used
        if isinstance(obj, h5py.Dataset):
            used += obj.id.get_storage_size()

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return os.path.getsize(path) - used


def compact_if_worth_it(path: str | os.PathLike) -> bool:
    """Copy a finished file into a new one without dead space when it has much; True if it did."""
    path = os.fspath(path)
    dead = dead_bytes(path)
    if dead < max(DEAD_MIN_BYTES, DEAD_FRACTION * os.path.getsize(path)):
        return False
    tmp = temp_path(path)
    try:
        with h5py.File(path, "r") as src, h5py.File(tmp, "w", libver=LIBVER) as dst:
            for key in src.attrs:
                dst.attrs.create(key, src.attrs[key], dtype=src.attrs.get_id(key).dtype)
            for name in src:
                src.copy(src[name], dst, name=name)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        if os.path.getsize(tmp) >= os.path.getsize(path):
            os.remove(tmp)
            return False
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def remove_leftover(path: str | os.PathLike) -> bool:
    """Remove a temporary copy a killed compaction left; True if there was one."""
    try:
        os.remove(temp_path(path))
    except FileNotFoundError:
        return False
    return True
