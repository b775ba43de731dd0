"""Disk space reserved ahead of the end of the file being written (Linux, ext4 and XFS only).

HDF5 appends each new chunk at the file's end. On ext4 a write into blocks not yet allocated costs
the kernel more than one into blocks already allocated: 168 against 105 us of CPU per MB here
(``os.pwrite`` of 0.95 MB pieces, with and without ``fallocate`` first, 2026-11-28; the writer
thread of a ``put_csr`` run spent ~12 % of the process's CPU samples in the kernel's write path).
So the writer thread keeps ``AHEAD`` bytes past the file's end allocated with
``fallocate(FALLOC_FL_KEEP_SIZE)``: the file's size, and so everything HDF5, readers, ``recover``
and the crash rules see, is unchanged; only blocks past the end are taken
(``safety.past_end``). Never on a disk with less than ``MIN_FREE`` free (the blocks would be
taken from the chunk log, the finalize journal and other writers), nor on other file systems
(tmpfs would pin 64 MiB of memory per file for nothing).

Freed: at close by the finalize journal's own truncate (``safety.journal``; no syscall is added,
so the crash campaigns' kill points stay where they were), and first, before the file is closed,
by ``release_if_short`` when the disk has less than ``MIN_FREE`` free (the journal must fit); after
a writer error by ``release`` while the file is still open (``forget`` once it is closed: its
descriptor number may belong to another file by then), else by path
(``safety.past_end.free_past_end_of``); after a kill, by ``recover``. Best effort: where the
call is missing or refused nothing is reserved and the writes go on as before. Thread safety: the
writer thread only.
"""
from __future__ import annotations

import ctypes
import errno
import os
import shutil
import sys
from typing import Optional

from emdstream.safety.past_end import free_past_end

AHEAD = 64 << 20
MIN_FREE = 4 * AHEAD
FILE_SYSTEMS = ("ext4", "xfs")  # where it was measured or is known to help; not tmpfs, not NFS
_KEEP_SIZE = 0x01  # FALLOC_FL_KEEP_SIZE
_call = None  # libc's fallocate64, looked up by the first Reserve (False: none)


def _fallocate():
    global _call
    if _call is None:
        _call = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(None, use_errno=True)  # the process's own libc: no search
            except OSError:
                libc = None
            # fallocate64 takes 64-bit offsets everywhere; plain fallocate where off_t is 64-bit
            call = getattr(libc, "fallocate64", None)
            if call is None and ctypes.sizeof(ctypes.c_long) == 8:
                call = getattr(libc, "fallocate", None)
            if call is not None:
                call.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
                call.restype = ctypes.c_int
                _call = call
    return _call or None


def file_system(path: str) -> Optional[str]:
    """The type of the file system ``path`` lies on (Linux ``/proc/self/mounts``), or None."""
    try:
        with open("/proc/self/mounts") as fh:
            mounts = [line.split()[1:3] for line in fh]
    except OSError:
        return None
    real = os.path.realpath(path)
    best, kind = "", None
    for point, fstype in mounts:
        point = point.replace("\\040", " ")
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fstype
    return kind


class Reserve:
    def __init__(self, fd: int, path: str):
        self._fd: Optional[int] = fd
        self._path = path
        self._reserved = False  # blocks may be allocated past the end (set before each call)
        self._until = 0  # the end of the last reservation
        self.enabled = _fallocate() is not None and file_system(path) in FILE_SYSTEMS

    def advance(self, end: Optional[int] = None) -> None:
        """After a write: once the file's end (``end``, or read here) is within half of
        ``AHEAD`` of the reservation's, reserve ``AHEAD`` bytes past it."""
        if not self.enabled or self._fd is None:
            return
        try:
            end = os.fstat(self._fd).st_size if end is None else end
            if end + AHEAD // 2 <= self._until:
                return
            if shutil.disk_usage(self._path).free < MIN_FREE:
                return  # the disk is nearly full: leave its blocks to the rest
        except OSError:
            self.enabled = False
            return
        self._reserved = True
        if _fallocate()(self._fd, _KEEP_SIZE, end, AHEAD) == 0:
            self._until = end + AHEAD
        elif ctypes.get_errno() != errno.EINTR:  # refused: write as before (EINTR: next time)
            self.enabled = False

    def release(self) -> None:
        """Free what is reserved past the end of the file (while it is still open)."""
        if self._reserved and self._fd is not None:
            try:
                free_past_end(self._fd)
            except OSError:  # only space past the end is at stake, never the file's bytes
                pass
        self._reserved, self._until = False, 0

    def release_if_short(self) -> None:
        """Before the file is closed: free the reservation if the disk is nearly full."""
        try:
            short = self._reserved and shutil.disk_usage(self._path).free < MIN_FREE
        except OSError:
            short = self._reserved
        if short:
            self.release()

    @property
    def reserved(self) -> bool:
        """Blocks may be allocated past the end (``release`` or a truncate frees them)."""
        return self._reserved

    def forget(self) -> None:
        """The file is closed: its descriptor is no longer this file's."""
        self._fd = None
        self.enabled = False
