"""The narrow handle a stream has on its file (``FileSession``), instead of the ``Acquisition``.

A ``StreamWriter`` needs four things of the file it writes to: whether it still takes frames
(closed, forked away, or its writer thread failed), what ``put`` does when a queue is full
(``on_full``), how many of its frames are durable, and whether to name the stream in messages.
Thread safety: the flags are set by the acquisition (under its close lock, or in a forked child)
and read by producers without a lock; a stale read only delays the error to the next call.
"""
from __future__ import annotations

from typing import Optional, Protocol

from emdstream.errors import WriterClosedError, WriterError


class WriterState(Protocol):
    """What the session asks of the writer thread."""

    pid: int
    error: Optional[BaseException]

    def frames_written(self, index: int) -> int: ...

    def failure(self) -> WriterError: ...

    def write_now(self, index: int, chunk) -> bool: ...


class FileSession:
    """One file's state as its streams see it."""

    def __init__(self, path: str, on_full: str, n_streams: int):
        self.path = path
        self.on_full = on_full
        self.n_streams = n_streams
        self.closed = False   # no more puts
        self.forked = False   # this process is a forked child of the writer's
        self.writer: Optional[WriterState] = None  # attached once the writer thread exists

    def raise_if_unusable(self) -> None:
        """WriterError (forked child, writer thread failed) or WriterClosedError, else nothing."""
        if self.forked:
            pid = self.writer.pid if self.writer is not None else "?"
            raise WriterError(f"the writer for {self.path} belongs to process {pid}; "
                              f"a forked child cannot write to it")
        if self.writer is not None and self.writer.error is not None:
            raise self.writer.failure()
        if self.closed:
            raise WriterClosedError(f"writer for {self.path} is closed")

    def frames_written(self, index: int) -> int:
        """Frames of stream ``index`` durably in the file."""
        return self.writer.frames_written(index) if self.writer is not None else 0

    def write_now(self, index: int, chunk) -> bool:
        """Write an encoded chunk of stream ``index`` from the calling producer's thread if the
        writer thread is waiting for work (``WriterThread.write_now``); False: queue it."""
        return self.writer is not None and self.writer.write_now(index, chunk)

    def where(self, name: str) -> str:
        """`` (stream 'name')`` in a file of several streams, else nothing: for messages."""
        return f" (stream {name!r})" if self.n_streams > 1 else ""
