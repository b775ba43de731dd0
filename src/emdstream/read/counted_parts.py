"""The events of a master file's counted stream, joined from its part files in scan order.

A master (``parallel.master_counted``) maps each part's counts image into the scan, but a part's
events are a CSR of its own local slots (its blocks' slots, ``indptr`` from 0), interleaved with the
other parts' blocks in the scan. ``PartEvents`` reads the rows of scan slots ``start .. stop - 1``
from the part files themselves (their paths stored in the master, relative to it): scan slot ``s``
is part ``(s // B) % n``'s local slot ``(s // B // n) * B + s % B``. Each part counts as far as its
own commit point (a part still being written is opened with SWMR, like ``open_h5`` does), so a
reader of the master sees events as they are committed in the parts, like the counts image. A
slot of a missing part, or one its part has not committed, has no events.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator
from typing import Optional

import h5py
import numpy as np

from emdstream.format import counted as profile
from emdstream.format import layout
from emdstream.safety.h5open import open_h5


def committed_slots(f: h5py.File, name: str) -> int:
    """Slots of ``/data/<name>`` of a part (or any emdstream file) whose events are committed:
    from the streaming state while written (or after a kill), from the counts once finished."""
    state = f.get(layout.state_path(name))
    if state is not None:
        return layout.read_progress(state)[0]
    attrs = f[f"data/{name}"].attrs
    return int(attrs.get("frames_written", 0)) + int(attrs.get("frames_dropped", 0))


def is_master(group: h5py.Group) -> bool:
    """Whether a counted ``/data/<name>`` group is a master's (its events are in the parts)."""
    return layout.MASTER_ATTR in group.attrs


class PartEvents:
    """Rows of a master's counted stream, read from the part files (see the module)."""

    def __init__(self, group: h5py.Group):
        attrs = group.attrs
        self.name = group.name.rsplit("/", 1)[-1]
        self.count = int(attrs["part_count"])
        self.block = int(attrs["block_frames"])
        self.total = math.prod(int(n) for n in attrs["scan_shape"])
        stored = attrs[layout.MASTER_ATTR]
        stored = json.loads(stored.decode() if isinstance(stored, bytes) else stored)
        here = os.path.dirname(os.path.abspath(group.file.filename))
        self.paths = [os.path.normpath(os.path.join(here, s)) for s in stored]

    def where(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(part rank, local slot) of each scan slot."""
        block = slots // self.block
        return block % self.count, (block // self.count) * self.block + slots % self.block

    @contextlib.contextmanager
    def _part(self, rank: int) -> Iterator[Optional[tuple[h5py.Group, int]]]:
        """(the part's counted group, its committed slots), or None when the file is missing."""
        path = self.paths[rank]
        if not os.path.exists(path):
            yield None
            return
        with open_h5(path) as f:
            yield f[f"data/{self.name}"], committed_slots(f, self.name)

    def parts(self) -> Iterator[tuple[h5py.Group, int]]:
        """Each present part's (counted group, committed slots), one open at a time."""
        for rank in range(self.count):
            with self._part(rank) as part:
                if part is not None:
                    yield part

    def rows(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
        """(indptr from 0, indices, counts or None) of scan slots ``start .. stop - 1``."""
        slots = np.arange(start, stop, dtype=np.int64)
        ranks, local = self.where(slots)
        starts = np.zeros(slots.size, np.int64)
        lengths = np.zeros(slots.size, np.int64)
        pieces: list[tuple[np.ndarray, Optional[np.ndarray]]] = []
        base, weighted, dtype = 0, False, np.dtype(np.uint16)
        for rank in np.unique(ranks):
            with self._part(int(rank)) as part:
                if part is None:
                    continue
                group, committed = part
                at = np.flatnonzero((ranks == rank) & (local < committed))
                if not at.size:
                    continue
                lo, hi = int(local[at].min()), int(local[at].max()) + 1
                indptr, indices, counts = profile.read_rows(group, lo, hi)
                starts[at] = base + indptr[local[at] - lo]
                lengths[at] = indptr[local[at] - lo + 1] - indptr[local[at] - lo]
                if counts is not None:
                    weighted, dtype = True, counts.dtype
                pieces.append((indices, counts))
                base += indices.size
        indptr = np.zeros(slots.size + 1, np.int64)
        np.cumsum(lengths, out=indptr[1:])
        if not pieces:
            return indptr, np.zeros(0, profile.INDEX_DTYPE), None
        take = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1])
        indices = np.concatenate([i for i, _ in pieces])[take]
        if not weighted:
            return indptr, indices, None
        counts = np.concatenate([c if c is not None else np.ones(i.size, dtype)
                                 for i, c in pieces])[take]
        return indptr, indices, counts

    def has_counts(self) -> bool:
        return any(profile.has_counts(group) for group, _ in self.parts())

    def counts_dtype(self) -> Optional[np.dtype]:
        for group, _ in self.parts():
            if profile.has_counts(group):
                return group[profile.EVENTS]["counts"].dtype
        return None

    def events(self) -> int:
        """Committed events of every present part."""
        return sum(profile.events_before(group, slots) for group, slots in self.parts())

    def summed_pattern(self) -> Optional[np.ndarray]:
        """The present parts' committed events summed, or None without parts."""
        total = None
        for group, slots in self.parts():
            part = profile.summed_pattern(group, profile.events_before(group, slots))
            total = part if total is None else total + part
        return total
