"""Salvaging a counted stream's events (``format.counted``) from the chunk log (``salvage``).

The log names every chunk of ``events/indices``, ``events/counts`` and ``events/indptr`` with the
elements it holds; ``salvage`` writes back the newest intact version of each. A slot counts only
if its ``indptr`` entries and all its events survived: the stream's count is cut to the slots
below the first one that lacks any of them.
"""
from __future__ import annotations

from collections.abc import Callable

import h5py
import numpy as np

from emdstream.format import counted

Restore = Callable[[h5py.Dataset, str], list[tuple[int, int]]]  # (dataset, log key) -> ranges


def restore_events(group: h5py.Group, restore: Restore, count: int,
                   logged: Callable[[str], bool]) -> int:
    """Write back the events of ``group`` (a no-op for a dense stream) with ``restore``; returns
    ``count`` cut to the slots whose events are whole. ``logged(key)``: whether the log names any
    chunk of that dataset: a stream has counts if any chunk of them was written, and then its
    events count only as far as their counts survived (a lost first counts chunk is a loss, not a
    stream without counts)."""
    if not counted.is_counted(group):
        return count
    events = group[counted.EVENTS]
    held = {key: _prefix(restore(events[key], f"{counted.EVENTS}/{key}"))
            for key in counted.EVENT_KEYS}
    rows = min(count, max(1, held["indptr"]) - 1)  # the skeleton holds indptr[0] = 0
    if rows <= 0:
        return 0
    weighted = logged(f"{counted.EVENTS}/counts")
    limit = min(held["indices"], held["counts"]) if weighted else held["indices"]
    ends = events["indptr"][1:rows + 1]
    return int(np.searchsorted(ends, limit, side="right"))


def _prefix(ranges: list[tuple[int, int]]) -> int:
    """How many elements from 0 on the restored chunks hold without a gap."""
    end = 0
    for first, last in sorted(ranges):
        if first > end:
            break
        end = max(end, last)
    return end
