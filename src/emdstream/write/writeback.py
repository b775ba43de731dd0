"""Starting the disk write of a file's new bytes while frames still stream in.

Without it, everything written since the file was created waits in the page cache until
``close()`` fsyncs it (a second or more for a few GB), and the kernel throttles the writer at
unpredictable moments once too much memory is dirty. So every ``STEP`` bytes the file grows, the
writer thread asks the kernel to start writing them out (``posix_fadvise(..., DONTNEED)`` starts
writeback of dirty pages and drops pages already clean; it does not wait). Where the call does not
exist (Windows, macOS) nothing is done. Durability is unchanged: only fsync makes a promise.
Thread safety: ``advance`` only in the writer thread (also while it waits for work, without
``io_lock``: nothing here touches HDF5, and taking the lock then would make producers queue their
chunks instead of writing them); a producer writing its own chunk only asks for it (``due``).
"""
from __future__ import annotations

import os
from typing import Optional

STEP = 32 << 20


class Writeback:
    def __init__(self, fd: int):
        self._fd = fd
        self._started = 0  # bytes from the file's start whose writeback was started
        self._asked = False  # a producer has asked the writer thread to advance (``due``)
        self.enabled = hasattr(os, "posix_fadvise")

    def due(self, end: Optional[int]) -> bool:
        """From a producer that wrote a chunk itself: True (once until the writer thread next
        advances) when the writer thread should be woken to advance. The flag is set before the
        caller posts its message and cleared when the writer advances, so a race costs at most
        one extra wake-up."""
        if not self.enabled or self._asked or end is None or end - self._started < STEP:
            return False
        self._asked = True
        return True

    def advance(self, end: Optional[int] = None) -> None:
        """After a write: start writing out what the file gained since, once it is ``STEP``.
        ``end``: the file's size, if the caller has just read it."""
        if not self.enabled:
            return
        self._asked = False  # a producer may ask again (a request it makes now is seen next time)
        try:
            end = os.fstat(self._fd).st_size if end is None else end
            if end - self._started >= STEP:
                os.posix_fadvise(self._fd, self._started, end - self._started,
                                 os.POSIX_FADV_DONTNEED)
                self._started = end
        except OSError:  # advice only: a file system that refuses it gets none, the data goes on
            self.enabled = False
