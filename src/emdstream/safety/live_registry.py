"""The one rule between live readers in the writer's own process and a finalizing writer.

HDF5 shares one open file between all handles of a process: a live reader in the writer's own
process holds the writer's file open, and closing that reader after the writer finalized would
write the writer's stale superblock. So the writer thread, before it closes its SWMR handle to
finalize, closes this process's live readers of the file (``close_live_readers``), all under
``reopen_lock``. Live readers do their reads and reopens under the same lock (``reader.LiveData``),
reopening the file if it was closed under them: a live view in another thread never sees the file
closed, and after the writer closed, its next read shows the finished file.
"""
from __future__ import annotations

import os
import threading
import weakref

reopen_lock = threading.RLock()
live_files: weakref.WeakSet = weakref.WeakSet()  # EMDFile objects opened with live=True


def close_live_readers(path: str | os.PathLike) -> None:
    """Close this process's live readers of ``path`` (call with ``reopen_lock`` held)."""
    for f in list(live_files):
        if f.h5 and os.path.exists(f.path) and os.path.samefile(f.path, path):
            f.h5.close()
