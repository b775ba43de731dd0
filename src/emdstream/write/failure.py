"""How the writer thread notices that its file is gone (``file_identity``) and what a producer is
told when the thread fails (``describe_failure``)."""
from __future__ import annotations

import os
from typing import Optional

from emdstream.errors import WriterError


def file_identity(path: str) -> Optional[tuple[int, int]]:
    """(device, inode) of the file at ``path``, None if there is none: the file was deleted or
    replaced underneath the writer when this changes."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def describe_failure(path: str, error: BaseException, sinks: list) -> WriterError:
    """The producer-side exception for a writer-thread ``error``, naming what is safe in the file
    (``sinks``: each stream's ``name`` and ``frames_written()``)."""
    counts = ", ".join(f"{s.frames_written()}" + (f" of {s.name}" if len(sinks) > 1 else "")
                       for s in sinks)
    err = WriterError(
        f"writing {path} failed: {type(error).__name__}: {error}. "
        f"{counts} frame(s) were safely flushed to the file before the failure; "
        f"frames put after that are lost. Run `emdstream recover {path}` to finish the file.")
    err.__cause__ = error
    return err
