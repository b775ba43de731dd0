"""The chunk log's chunk records: one as the writer notes it (``ChunkRecord``), all of them as
``salvage`` reads them back (``ChunkTable``).

A log names every version of every chunk written, so a long acquisition's log holds millions. Read
back as Python objects they cost ~730 bytes each (200,000 one-frame chunks: ~200 MiB); the table
keeps one int64 array per dataset instead, ``(n, ndim + 7)``: the chunk's coordinates, then
``FIELDS``, ~90 bytes a version.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

FIELDS = ("offset", "size", "mask", "crc", "checked", "first", "end")
_BLOCK = 4096  # rows turned into Python ints at a time


@dataclass
class ChunkRecord:
    """One chunk version: ``dataset`` "data" or "values" of ``stream``, at chunk ``coord``."""

    stream: str
    dataset: str
    coord: tuple[int, ...]
    offset: int
    size: int
    mask: int
    crc: int
    checked: int  # bytes of the payload the CRC covers (a raw chunk: the frames it held)
    first: int    # the slots this version holds: first .. end - 1
    end: int

    def to_list(self) -> list:
        return [self.stream, self.dataset, list(self.coord), self.offset, self.size, self.mask,
                self.crc, self.checked, self.first, self.end]


class ChunkTable:
    """Every chunk version a log names, per ``(stream, dataset)`` in the order they were logged."""

    def __init__(self) -> None:
        self._pieces: dict[tuple[str, str], list[np.ndarray]] = {}

    def add(self, rows: list) -> None:
        """One record's rows, each ``ChunkRecord.to_list()``."""
        by_key: dict[tuple[str, str], list] = {}
        for row in rows:
            by_key.setdefault((row[0], row[1]), []).append(row[2] + row[3:])
        for key, got in by_key.items():
            self._pieces.setdefault(key, []).append(np.array(got, np.int64))

    def rows(self, stream: str, dataset: str) -> np.ndarray:
        """``(n, ndim + 7)`` int64: coordinates then ``FIELDS``, in log order (n may be 0)."""
        pieces = self._pieces.get((stream, dataset))
        if not pieces:
            return np.zeros((0, len(FIELDS)), np.int64)
        if len(pieces) > 1:
            pieces[:] = [np.concatenate(pieces)]
        return pieces[0]

    def has(self, stream: str, dataset: str) -> bool:
        return bool(self._pieces.get((stream, dataset)))

    def newest_first(self, stream: str, dataset: str) -> Iterator[tuple]:
        """``(coord, offset, size, mask, crc, checked, first, end)`` of each version, grouped by
        chunk coordinate (in coordinate order), the newest version of each first."""
        rows = self.rows(stream, dataset)
        nd = rows.shape[1] - len(FIELDS)
        keys = [-np.arange(len(rows))] + [rows[:, i] for i in reversed(range(nd))]
        order = np.lexsort(keys) if len(rows) else np.zeros(0, np.intp)
        for at in range(0, len(order), _BLOCK):
            for row in rows[order[at:at + _BLOCK]].tolist():
                yield (tuple(row[:nd]), *row[nd:])

    def __iter__(self) -> Iterator[ChunkRecord]:
        """Every version as a ``ChunkRecord`` (log order within a dataset)."""
        for stream, dataset in list(self._pieces):
            rows = self.rows(stream, dataset)
            nd = rows.shape[1] - len(FIELDS)
            for row in rows.tolist():
                yield ChunkRecord(stream, dataset, tuple(row[:nd]), *row[nd:])

    def __len__(self) -> int:
        return sum(len(p) for pieces in self._pieces.values() for p in pieces)
