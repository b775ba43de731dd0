"""The slots a stream dropped, and how the writer thread learns of new ones.

A detector that outruns the disk with ``on_full="drop"`` can drop millions of frames in one
acquisition. So the slots are kept sorted in an ``array`` (8 bytes each, not a list of Python
ints), and each flush takes only the slots dropped since the last one (``DroppedSlots.since``): no
work at a flush grows with the frames dropped before it. Slots are appended as frames are dropped;
a slot inserted below the last one (a ``frame_buffer`` left with an exception after later slots
were dropped, or still open at close) is rare, and makes the next flush take the whole list again.
Thread safety: a ``DroppedSlots`` is used under its assembler's lock.
"""
from __future__ import annotations

import bisect
from array import array
from dataclasses import dataclass

import numpy as np

from emdstream.format.chunk_grid import ChunkGeometry


@dataclass(frozen=True)
class DroppedSeen:
    """What a reader (the writer thread) has taken: ``count`` slots, ``rewrites`` inserts ago."""

    count: int = 0
    rewrites: int = 0


@dataclass(frozen=True)
class DroppedChange:
    """The dropped slots ``first`` .. ``count - 1`` (``slots``), as of one snapshot; ``whole``: a
    slot was inserted below the end since the reader last looked, so these are all of them
    (``first`` 0), replacing what it has."""

    first: int
    slots: array
    seen: DroppedSeen
    whole: bool
    chunkless: np.ndarray  # see DroppedSlots.since

    @property
    def count(self) -> int:
        return self.seen.count


class DroppedSlots:
    def __init__(self) -> None:
        self._slots = array("q")
        self._rewrites = 0  # slots inserted below the last one so far
        self._inserted: list[int] = []  # ... since the reader last looked

    def append(self, slot: int) -> None:
        """The next slot was dropped (above every slot dropped before)."""
        self._slots.append(slot)

    def insert(self, slot: int) -> None:
        """A slot dropped out of order (anywhere)."""
        if self._slots and slot < self._slots[-1]:
            self._rewrites += 1
            self._inserted.append(slot)
        bisect.insort(self._slots, slot)

    def below(self, slot: int) -> int:
        """How many dropped slots lie below ``slot``."""
        return bisect.bisect_left(self._slots, slot)

    def __len__(self) -> int:
        return len(self._slots)

    def since(self, seen: DroppedSeen, geometry: ChunkGeometry, assigned: int) -> DroppedChange:
        """The slots dropped since ``seen`` (copies): only the new ones, unless one was inserted
        below the end since (then all of them). ``chunkless``: the slots of every chunk these new
        drops leave entirely dropped (all its slots assigned, ``assigned`` so far), sorted: no
        chunk write will store their value rows. One reader, which passes the ``seen`` of the
        change it last got."""
        whole = seen.rewrites != self._rewrites
        first = 0 if whole else seen.count
        every = np.frombuffer(self._slots, np.int64)
        appended = len(every) - seen.count - len(self._inserted)  # all above the others
        new = every[len(every) - appended:]
        if self._inserted:  # below the end: sorted in
            new = np.sort(np.concatenate([np.asarray(self._inserted, np.int64), new]))
            self._inserted = []
        return DroppedChange(first, self._slots[first:],
                             DroppedSeen(len(self._slots), self._rewrites), whole,
                             _chunkless(every, new, geometry, assigned))


def _chunkless(every: np.ndarray, new: np.ndarray, geometry: ChunkGeometry,
               assigned: int) -> np.ndarray:
    if geometry.k == 1:
        return new.copy()  # not a view of the array, which may grow after
    if not new.size:
        return new.copy()
    if (new[-1] - new[0]) // geometry.k < new.size:  # dense (an overrun): chunk by chunk
        firsts, ends = geometry.chunks_between(int(new[0]), int(new[-1]))
        fresh = np.searchsorted(new, ends) - np.searchsorted(new, firsts) > 0
        firsts, ends = firsts[fresh], ends[fresh]
    else:  # a few: slot by slot
        firsts, ends = geometry.chunk_bounds(new)
        at = np.r_[0, np.flatnonzero(np.diff(firsts)) + 1]  # new is sorted: each chunk once
        firsts, ends = firsts[at], ends[at]
    held = np.searchsorted(every, ends) - np.searchsorted(every, firsts)  # dropped slots in each
    whole = (ends <= assigned) & (held == ends - firsts)
    firsts, lengths = firsts[whole], (ends - firsts)[whole]
    starts = np.repeat(firsts - np.cumsum(lengths) + lengths, lengths)
    return starts + np.arange(int(lengths.sum()))
