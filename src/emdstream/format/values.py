"""Per-frame values: a UTC ``timestamp`` for every frame, plus the named numbers put with it.

``put(frame, stage_z=..., beam_current_pA=...)``: the first put fixes the names. A later put with a
name the first did not have is a ValueError (nothing is taken); a name left out is stored as NaN,
as are all values of a dropped frame. Values travel with their frame in its chunk buffer (one row
of ``MAX_VALUES`` float64 per frame, column 0 the timestamp) into the table
``/data/<name>/frame_values`` (compressed, one row per frame slot). The names are kept in the
streaming state until the file is finalized, then in the table's attribute ``columns`` (JSON).
``emdstream.open(...)[name].values`` gives {name: values shaped like the frame grid}.
"""
from __future__ import annotations

import math
import numbers
import time
from collections.abc import Mapping, Sequence
from typing import Optional

import numpy as np

from emdstream.encoders import GzipShuffle
from emdstream.format.chunk_grid import ChunkGeometry

TIMESTAMP = "timestamp"
MAX_VALUES = 32  # columns of a stream's value table: the timestamp and up to 31 named values


def check_value_name(name: str) -> None:
    if name == TIMESTAMP:
        raise ValueError(f"per-frame value name {TIMESTAMP!r} is reserved: emdstream records each "
                         f"frame's UTC time at put() itself")
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"per-frame value names must be non-empty str without '/', got {name!r}")


class ValueColumns:
    """The names of a stream's per-frame values and their columns (fixed by the first put)."""

    def __init__(self, stream: str, required: Sequence[str] = ()):
        self.stream = stream
        self.required = [k for k in required if k != TIMESTAMP]  # e.g. a Dim's from_values key
        self.names: Optional[list[str]] = None  # without the timestamp; None until the first put
        self._column: dict[str, int] = {}

    def fix(self, values: Mapping[str, object]) -> None:
        """Fix the names from the first put's values (ValueError if they cannot be stored)."""
        names = list(values)
        for name in names:
            check_value_name(name)
        if len(names) >= MAX_VALUES:
            raise ValueError(f"stream {self.stream!r}: at most {MAX_VALUES - 1} per-frame values, "
                             f"got {len(names)}")
        self._check_required(values)
        self.names = names
        self._column = {name: i + 1 for i, name in enumerate(names)}

    def columns(self, values: Mapping[str, object]) -> list[tuple[int, float]]:
        """(column, value) pairs of one put's values; ValueError/TypeError before anything is taken."""
        return self._pairs(values, lambda name, value: as_number(self.stream, name, value))

    def block_columns(self, values: Mapping[str, object], n: int) -> list[tuple[int, np.ndarray]]:
        """(column, n values) pairs for ``put_many``: each value a length-n sequence or a scalar."""
        return self._pairs(values, lambda name, value: as_column(self.stream, name, value, n))

    def _pairs(self, values: Mapping[str, object], convert) -> list:
        if self.names is None:
            self.fix(values)
        elif self.required:
            self._check_required(values)
        out = []
        for name, value in values.items():
            column = self._column.get(name)
            if column is None:
                check_value_name(name)  # the reserved name and bad ones: say so, first
                raise ValueError(f"stream {self.stream!r}: per-frame value {name!r} was not in the "
                                 f"first put, which fixed the names {self.names}")
            out.append((column, convert(name, value)))
        return out

    def _check_required(self, values: Mapping[str, object]) -> None:
        missing = [k for k in self.required if k not in values]
        if missing:
            raise ValueError(f"stream {self.stream!r}: a dim takes its values from {missing}, so "
                             f"every put must give {', '.join(f'{k}=...' for k in missing)}")

    @property
    def all_names(self) -> list[str]:
        return [TIMESTAMP] + (self.names or [])


def as_number(stream: str, name: str, value) -> float:
    if isinstance(value, (numbers.Real, np.bool_)) or (
            isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "biuf"):
        return float(value)
    raise TypeError(f"stream {stream!r}: per-frame value {name}={value!r:.40} is not a real number")


def as_column(stream: str, name: str, value, n: int) -> np.ndarray:
    """``n`` values of one name for ``put_many``: a scalar (repeated) or a length-n sequence."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"stream {stream!r}: per-frame value {name!r} must be numeric, "
                        f"got {arr.dtype}")
    if arr.ndim == 0:
        return np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"stream {stream!r}: per-frame value {name!r} has shape {arr.shape}, "
                         f"expected ({n},) for {n} frames")
    return arr.astype(np.float64)


def now() -> float:
    """The timestamp of a frame: UTC seconds since the epoch."""
    return time.time()


def empty_rows(n: int) -> np.ndarray:
    rows = np.empty((n, MAX_VALUES))  # empty + fill: a third of np.full's cost (per put_compressed)
    rows.fill(math.nan)
    return rows


VALUE_BLOCK_ROWS = 256
# value tables: readable without plugins. Deflate without the shuffle: a block of 1,024 rows, a
# timestamp and 31 unused (NaN) columns, took 240 instead of 315 us and came out smaller (1,852
# against 2,301 bytes; /work/scratch/s2/vt2.py, 2026-11-28), and at 256 bytes a slot these blocks
# cost a counted stream ~7 % of its CPU (1,000 events a slot). Files written before keep theirs.
# Deflated by ISA-L where installed: 63 instead of 395 us a 1,024-row block, 15 instead of 30 us a
# 96-row one, as small (8,903 against 9,001 bytes; /work/scratch/s3, 2026-11-29).
ENCODER = GzipShuffle(level=1, shuffle=False, fast=True)


def block_rows(geometry: ChunkGeometry) -> int:
    """Slots per block: a whole number of data chunks, about ``VALUE_BLOCK_ROWS``, within a row."""
    rows = geometry.k * max(1, VALUE_BLOCK_ROWS // geometry.k)
    return min(rows, geometry.row_length) if geometry.row_length else rows
