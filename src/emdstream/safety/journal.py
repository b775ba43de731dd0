"""Finalizing a file all at once or not at all: HDF5's writes go to a redo journal, then the file.

HDF5 has no metadata journal. Finalizing (trimming, dim vectors, values, comments, counts, removing
the streaming state) rewrites metadata all over the file, and a kill in the middle of it used to
leave a file no tool could open. So finalizing opens the file through h5py's ``fileobj`` driver on
a ``ShadowFile``: reads see the file plus the writes made so far, writes land in memory pages and
never reach the file. Once HDF5 has closed the file:

1. the file is fsynced (a complete journal must never point at data the disk does not have yet),
   the dirty pages and the final size go to ``<path>.emdstream-journal``, ending in a checksum,
   and the journal is fsynced (with its directory);
2. the pages are written into the file, the file is cut to its final size and fsynced;
3. the journal is removed.

A kill before step 1 ends leaves the file untouched and a journal whose checksum fails:
``replay`` deletes it and the file is recovered from its streaming state as usual. A kill during
step 2 or 3 leaves a complete journal: ``replay`` applies it again (whole pages at fixed offsets,
so applying twice is applying once). Only one process finalizes a file at a time: the writer,
which holds its file lock, or ``recover``, which checks that no writer holds it.
"""
from __future__ import annotations

import hashlib
import io
import os
import struct
import time
from collections.abc import Callable
from typing import Optional

import h5py

from emdstream.format import layout
from emdstream.safety.live_registry import reopen_lock

PAGE = 4096
MAGIC = b"EMDSJRN1"
_HEAD = struct.Struct("<8sQI")   # magic, final file size, number of pages
_PAGE_NO = struct.Struct("<Q")
_DIGEST = 32


def journal_path(path: str | os.PathLike) -> str:
    return os.fspath(path) + ".emdstream-journal"


class ShadowFile(io.RawIOBase):
    """A file as HDF5's ``fileobj`` driver sees it: the file on disk overlaid with the writes so
    far, which stay in memory pages (``pages``) until ``journal`` applies them."""

    def __init__(self, path: str | os.PathLike):
        super().__init__()
        self._fd = os.open(path, os.O_RDONLY)
        self.size = os.fstat(self._fd).st_size
        self._clean_limit = self.size  # bytes of the file on disk still valid (after truncation)
        self.pages: dict[int, bytearray] = {}
        self._pos = 0

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self.size}[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def _disk(self, n: int, offset: int) -> bytes:
        """``n`` bytes of the file on disk at ``offset``, zeros past its valid end."""
        valid = max(0, min(n, self._clean_limit - offset))
        data = os.pread(self._fd, valid, offset) if valid else b""
        return data + bytes(n - len(data))

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        start = self._pos
        end = min(start + len(view), self.size)
        pos = start
        while pos < end:
            page, off = divmod(pos, PAGE)
            dirty = self.pages.get(page)
            if dirty is not None:
                take = min(PAGE - off, end - pos)
                view[pos - start:pos - start + take] = dirty[off:off + take]
            else:  # a run of clean pages in one read
                run_end = (page + 1) * PAGE
                while run_end < end and run_end // PAGE not in self.pages:
                    run_end += PAGE
                take = min(run_end, end) - pos
                view[pos - start:pos - start + take] = self._disk(take, pos)
            pos += take
        self._pos = max(start, end)
        return self._pos - start

    def write(self, buffer) -> int:
        data = memoryview(buffer).cast("B")
        pos, done = self._pos, 0
        while done < len(data):
            page, off = divmod(pos + done, PAGE)
            dirty = self.pages.get(page)
            if dirty is None:
                dirty = self.pages[page] = bytearray(self._disk(PAGE, page * PAGE))
            take = min(PAGE - off, len(data) - done)
            dirty[off:off + take] = data[done:done + take]
            done += take
        self._pos = pos + done
        self.size = max(self.size, self._pos)
        return done

    def truncate(self, size: Optional[int] = None) -> int:
        size = self._pos if size is None else size
        self._clean_limit = min(self._clean_limit, size)
        for page in [p for p in self.pages if p * PAGE >= size]:
            del self.pages[page]
        last = self.pages.get(size // PAGE)
        if last is not None:
            last[size % PAGE:] = bytes(PAGE - size % PAGE)
        self.size = size
        return size

    def flush(self) -> None:
        pass

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


def finalize(path: str | os.PathLike, closing_comment: str,
             on_applied: Optional[Callable[[], None]] = None) -> dict[str, tuple[int, int]]:
    """Finalize every stream of a file (``layout.finalize``) through the journal; returns
    {stream: (frames written, frames dropped)}. The file must not be open for writing elsewhere.
    ``on_applied`` runs once the finished file is fsynced, before the journal is removed."""
    path = os.fspath(path)
    with ShadowFile(path) as shadow:
        with h5py.File(shadow, "r+", libver=layout.LIBVER) as f:
            counts = layout.finalize(f, closing_comment)
        pages, size = shadow.pages, shadow.size
        os.fsync(shadow.fileno())  # what the finished file points to is on disk before the journal
    _write_journal(path, pages, size)
    with reopen_lock:  # live readers in this process do not reopen a half-applied file
        _apply(path, pages, size, on_applied)
    return counts


def replay(path: str | os.PathLike) -> Optional[bool]:
    """Finish or discard a journal a killed finalization left: True if it was applied, False if it
    was incomplete (deleted; the file was never touched), None if there was none."""
    jpath = journal_path(path)
    try:
        with open(jpath, "rb") as fh:
            blob = fh.read()
    except FileNotFoundError:
        return None
    parsed = _parse(blob)
    if parsed is None:
        os.remove(jpath)
        _fsync_dir(jpath)
        return False
    pages, size = parsed
    _apply(os.fspath(path), pages, size)
    return True


def _write_journal(path: str, pages: dict[int, bytearray], size: int) -> None:
    jpath = journal_path(path)
    digest = hashlib.blake2b(digest_size=_DIGEST)
    with open(jpath, "wb") as fh:
        for part in _records(pages, size):
            digest.update(part)
            fh.write(part)
        fh.write(digest.digest())
        fh.flush()
        os.fsync(fh.fileno())
    _fsync_dir(jpath)


def _records(pages: dict[int, bytearray], size: int):
    yield _HEAD.pack(MAGIC, size, len(pages))
    for page in sorted(pages):
        yield _PAGE_NO.pack(page) + bytes(pages[page])


def _parse(blob: bytes) -> Optional[tuple[dict[int, bytes], int]]:
    if len(blob) < _HEAD.size + _DIGEST:
        return None
    body, digest = blob[:-_DIGEST], blob[-_DIGEST:]
    if hashlib.blake2b(body, digest_size=_DIGEST).digest() != digest:
        return None
    magic, size, count = _HEAD.unpack_from(body)
    record = _PAGE_NO.size + PAGE
    if magic != MAGIC or len(body) != _HEAD.size + count * record:
        return None
    pages = {}
    for i in range(count):
        at = _HEAD.size + i * record
        pages[_PAGE_NO.unpack_from(body, at)[0]] = body[at + _PAGE_NO.size:at + record]
    return pages, size


def _apply(path: str, pages, size: int, on_applied: Optional[Callable[[], None]] = None) -> None:
    fd = os.open(path, os.O_RDWR)
    delay = float(os.environ.get("EMDSTREAM_TEST_APPLY_DELAY", 0))  # tests: widen the window
    try:
        for page in sorted(pages):
            os.pwrite(fd, pages[page], page * PAGE)
            if delay:
                time.sleep(delay)
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)
    if on_applied is not None:
        on_applied()
    jpath = journal_path(path)
    try:
        os.remove(jpath)
    except FileNotFoundError:
        return
    _fsync_dir(jpath)


def _fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
