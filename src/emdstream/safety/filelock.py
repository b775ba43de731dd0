"""An advisory lock that tells a live writer's file from a killed writer's file."""
from __future__ import annotations

import fcntl
import os


def writer_holds(path: str | os.PathLike) -> bool:
    """True if a live emdstream writer (in any process) has the file open (see ``hold``)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def hold(path: str | os.PathLike) -> int:
    """Mark the file as being written (a shared flock on a private descriptor); returns the fd.

    HDF5 drops its own lock on a file in SWMR-write mode, so readers can open it; this lock lets
    ``recover`` tell a live writer from a killed one. The kernel releases it when the process dies.
    """
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def release(fd: int) -> None:
    os.close(fd)  # closing the descriptor drops its flock
