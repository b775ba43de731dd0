"""The slots a stream dropped, and how the writer thread learns of new ones.

A detector that outruns the disk with ``on_full="drop"`` can drop millions of frames in one
acquisition. So the slots are kept sorted in an ``array`` (8 bytes each, not a list of Python
ints), and each flush takes only the slots dropped since the last one (``DroppedSlots.since``): no
work at a flush grows with the frames dropped before it. A slot is dropped either with no chunk
buffer for it (``append``: the writer is behind; it is above every slot dropped before) or inside
a chunk buffer (``insert``: a ``frame_buffer`` left with an exception, a slot still open at close;
rare, anywhere). A flush that finds a slot dropped at or below the highest one it took before
takes the whole list again. Thread safety: a ``DroppedSlots`` is used under its assembler's lock,
and read (``take``, under that lock, copies only) by one reader, the writer thread, which works
out the change (``DroppedTake.change``) after letting go of the lock.
"""
from __future__ import annotations

import bisect
from array import array
from dataclasses import dataclass

import numpy as np

from emdstream.format.chunk_grid import ChunkGeometry


@dataclass(frozen=True)
class DroppedSeen:
    """What the reader has taken: ``count`` slots, the highest of them ``top``."""

    count: int = 0
    top: int = -1


@dataclass(frozen=True)
class DroppedChange:
    """The dropped slots ``first`` .. ``count - 1`` (``slots``), as of one snapshot; ``whole``: a
    slot at or below the reader's ``top`` was dropped since it last looked, so these are all of
    them (``first`` 0), replacing what it has. ``chunkless``: see ``DroppedSlots.since``."""

    first: int
    slots: np.ndarray
    seen: DroppedSeen
    whole: bool
    chunkless: np.ndarray

    @property
    def count(self) -> int:
        return self.seen.count


class DroppedSlots:
    """A stream's dropped slots, sorted."""

    def __init__(self) -> None:
        self._slots = array("q")
        self._in_buffer = array("q")  # the slots dropped inside a chunk buffer, sorted
        self._inserted: list[int] = []  # ... since the reader last looked

    def append(self, slot: int) -> None:
        """The next slot was dropped, with no chunk buffer for it."""
        self._slots.append(slot)

    def insert(self, slot: int) -> None:
        """A slot of a chunk buffer was dropped."""
        bisect.insort(self._slots, slot)
        bisect.insort(self._in_buffer, slot)
        self._inserted.append(slot)

    def below(self, slot: int) -> int:
        """How many dropped slots lie below ``slot``."""
        return bisect.bisect_left(self._slots, slot)

    def __len__(self) -> int:
        return len(self._slots)

    def since(self, seen: DroppedSeen, geometry: ChunkGeometry, assigned: int) -> DroppedChange:
        """``take`` and ``DroppedTake.change`` in one (for a caller that holds no lock)."""
        return self.take(seen, geometry, assigned).change(geometry)

    def take(self, seen: DroppedSeen, geometry: ChunkGeometry, assigned: int) -> DroppedTake:
        """Under the lock: copies of what changed since ``seen`` (memory copies only; the work
        is ``DroppedTake.change``, outside the lock, so a dropping ``put`` never waits for it)."""
        below = sorted(s for s in self._inserted if s <= seen.top)
        self._inserted = []
        count = len(self._slots)
        lowest = below[0] if below else self._slots[seen.count] if count > seen.count else None
        if lowest is None:
            return DroppedTake(seen, seen, [], array("q"), array("q"), assigned)
        lo = 0 if below else bisect.bisect_left(
            self._slots, geometry.chunk_slots(geometry.locate(lowest)[0])[0])
        tail = self._slots[lo:]  # every slot of the chunks the new ones lie in (all: whole)
        buffered = self._in_buffer[bisect.bisect_left(self._in_buffer, tail[0]):]
        return DroppedTake(seen, DroppedSeen(count, self._slots[-1]), below, tail, buffered,
                           assigned)


@dataclass(frozen=True)
class DroppedTake:
    """What ``DroppedSlots.take`` copied: ``tail``, the dropped slots from the first chunk holding
    a new one on (all of them if ``below``: slots dropped at or below ``seen.top`` since),
    ``buffered``, those of them dropped inside a chunk buffer."""

    seen: DroppedSeen  # what the reader had
    now: DroppedSeen   # what it has once it takes this
    below: list[int]
    tail: array
    buffered: array
    assigned: int      # slots assigned when taken

    def change(self, geometry: ChunkGeometry) -> DroppedChange:
        """The slots dropped since ``seen``: only the new ones, unless one lies at or below
        ``seen.top`` (then all of them). ``chunkless``: the slots of every chunk the new drops
        leave entirely dropped with no chunk buffer (all its slots assigned), sorted: no chunk
        write will store their value rows."""
        tail = np.frombuffer(self.tail, np.int64)
        above = tail[np.searchsorted(tail, self.seen.top, "right"):]
        new = np.sort(np.r_[np.asarray(self.below, np.int64), above]) if self.below else above
        whole = bool(self.below)
        return DroppedChange(0 if whole else self.seen.count, tail if whole else above, self.now,
                             whole, self._chunkless(tail, new, geometry))

    def _chunkless(self, tail: np.ndarray, new: np.ndarray, geometry: ChunkGeometry) -> np.ndarray:
        """The slots of the chunks holding ``new`` slots that are all dropped, none of them
        inside a chunk buffer (such a chunk is written, with its value rows). ``tail`` holds every
        dropped slot of those chunks."""
        if not new.size:
            return new
        if (new[-1] - new[0]) // geometry.k < new.size:  # dense (an overrun): chunk by chunk
            firsts, ends = geometry.chunks_between(int(new[0]), int(new[-1]))
            fresh = np.searchsorted(new, ends) - np.searchsorted(new, firsts) > 0
            firsts, ends = firsts[fresh], ends[fresh]
        else:  # a few: slot by slot
            firsts, ends = geometry.chunk_bounds(new)
            at = np.r_[0, np.flatnonzero(np.diff(firsts)) + 1]  # new is sorted: each chunk once
            firsts, ends = firsts[at], ends[at]
        buffered = np.frombuffer(self.buffered, np.int64)
        held = np.searchsorted(tail, ends) - np.searchsorted(tail, firsts)
        had_buffer = np.searchsorted(buffered, ends) - np.searchsorted(buffered, firsts) > 0
        whole = (ends <= self.assigned) & (held == ends - firsts) & ~had_buffer
        firsts, lengths = firsts[whole], (ends - firsts)[whole]
        starts = np.repeat(firsts - np.cumsum(lengths) + lengths, lengths)
        return starts + np.arange(int(lengths.sum()))
