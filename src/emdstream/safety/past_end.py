"""Disk blocks allocated past a file's end (``write.reserve`` keeps some ahead of the file being
written): how many there are, and freeing them. A truncate to the file's own size frees them and
changes no byte of the file, so it is safe at any moment, a kill included."""
from __future__ import annotations

import os

SLACK = 1 << 20  # blocks past the end below this are the file system's own rounding


def blocks_past_end(fd: int) -> int:
    """Bytes allocated past the end of the file open at ``fd`` (0 where none or unknown)."""
    st = os.fstat(fd)
    allocated = getattr(st, "st_blocks", 0) * 512
    return max(0, allocated - st.st_size - SLACK)


def free_past_end(fd: int) -> None:
    """Free the blocks allocated past the end of the file open at ``fd``."""
    os.ftruncate(fd, os.fstat(fd).st_size)


def blocks_past_end_of(path: str) -> int:
    """``blocks_past_end`` of the file at ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return blocks_past_end(fd)
    finally:
        os.close(fd)


def free_past_end_of(path: str) -> None:
    """Free the blocks a killed or failed writer left reserved past the end of ``path`` (the
    caller holds the file's lock, so no writer appends meanwhile, and has seen blocks there)."""
    fd = os.open(path, os.O_RDWR)
    try:
        free_past_end(fd)
    finally:
        os.close(fd)
