"""Disk space reserved ahead of the end of the file being written (Linux only).

HDF5 appends each new chunk at the file's end. On ext4 a write into blocks not yet allocated costs
the kernel more than one into blocks already allocated: 168 against 105 us of CPU per MB here
(``os.pwrite`` of 0.95 MB pieces, with and without ``fallocate`` first, 2026-11-28; the writer
thread of a ``put_csr`` run spent ~12 % of the process's CPU samples in the kernel's write path).
So the writer thread keeps ``AHEAD`` bytes past the file's end allocated with
``fallocate(FALLOC_FL_KEEP_SIZE)``: the file's size, and so everything HDF5, readers, ``recover``
and the crash rules see, is unchanged; only blocks past the end are taken. A truncate to the
file's own size frees the blocks past it: at close, the finalize journal's own truncate
(``safety.journal``: no syscall is added, so the crash campaigns' kill points stay where they
were); after a writer error, ``release``; after a kill they stay allocated, not counted in the
file's size, until ``recover`` (which truncates or replaces the file) or any truncate.
Best effort: where the call is missing or refused (another OS or file system, a full disk)
nothing is reserved and the writes go on as before. Thread safety: the writer thread only.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import Optional

AHEAD = 64 << 20
_KEEP_SIZE = 0x01  # FALLOC_FL_KEEP_SIZE


def _fallocate():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    except OSError:
        return None
    # fallocate64 takes 64-bit offsets everywhere; plain fallocate only where off_t is 64-bit
    call = getattr(libc, "fallocate64", None)
    if call is None and ctypes.sizeof(ctypes.c_long) == 8:
        call = getattr(libc, "fallocate", None)
    if call is None:
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    call.restype = ctypes.c_int
    return call


_FALLOCATE = _fallocate()


class Reserve:
    def __init__(self, fd: int):
        self._fd = fd
        self._until = 0  # bytes from the file's start allocated (the end of the last reservation)
        self.enabled = _FALLOCATE is not None

    def advance(self, end: Optional[int] = None) -> None:
        """After a write: once the file's end (``end``, or read here) is within half of
        ``AHEAD`` of the reservation's, reserve ``AHEAD`` bytes past it."""
        if not self.enabled:
            return
        try:
            end = os.fstat(self._fd).st_size if end is None else end
        except OSError:
            self.enabled = False
            return
        if end + AHEAD // 2 <= self._until:
            return
        if _FALLOCATE(self._fd, _KEEP_SIZE, end, AHEAD) != 0:  # refused: write as before
            self.enabled = False
            return
        self._until = end + AHEAD

    def release(self) -> None:
        """Free what is reserved past the file's end (before the file is closed)."""
        if self._until:
            release(self._fd)
            self._until = 0


def release(fd: int) -> None:
    """Free the blocks allocated past the end of the file open at ``fd`` (its size unchanged)."""
    try:
        os.ftruncate(fd, os.fstat(fd).st_size)
    except OSError:  # only space past the end is at stake, never the file's bytes
        pass
