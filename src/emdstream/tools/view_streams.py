"""What ``emdstream view`` knows of a stream: counts, rates, storage and per-frame values
(``StreamView``), and one number per frame slot read incrementally through the live reader, only
the frames new since the last poll (``IncrementalView``). The kinds of stream: ``view_kinds``.
"""
from __future__ import annotations

import math
import time
from collections import deque
from typing import Any, Optional

import numpy as np

from emdstream.encoders import describe_filters
from emdstream.format.layout import RAW_REASONS, state_path
from emdstream.read.dataset import EMDDataset
from emdstream.read.file import EMDFile
from emdstream.tools.preview import frame_ndim
from emdstream.tools.view_panels import Panel

BATCH_BYTES = 32 << 20   # frame data read per stream and poll at most; the rest at the next polls
RATE_WINDOW_S = 3.0      # frames/s over the frames of the last seconds
SERIES_POINTS = 400      # per-frame values sent for the plots
IDLE_S = 10.0            # no new frame for this long (and 3 frame periods): no rate, no ETA


def read_slots(data, grid: tuple[int, ...], start: int, stop: int) -> np.ndarray:
    """Frame slots ``start:stop`` (C order over ``grid``) as one array, read row by row."""
    if len(grid) <= 1:
        return np.asarray(data[start:stop])
    parts, slot, row = [], start, grid[-1]
    while slot < stop:
        lead = tuple(int(i) for i in np.unravel_index(slot // row, grid[:-1]))
        first = slot % row
        last = min(row, first + stop - slot)
        parts.append(np.asarray(data[lead + (slice(first, last),)]))
        slot += last - first
    return np.concatenate(parts)


def frame_rate(times: np.ndarray, recent_only: bool) -> Optional[float]:
    """Frames per second from per-frame timestamps: over the last ``RATE_WINDOW_S`` (at least 10
    frames) while writing, over all of them once finished."""
    t = np.sort(times[np.isfinite(times)])
    if recent_only and t.size:
        window = t[t >= t[-1] - RATE_WINDOW_S]
        t = window if window.size >= 10 else t[-10:]
    span = float(t[-1] - t[0]) if t.size >= 2 else 0.0
    return (t.size - 1) / span if span > 0 else None


class StreamView:
    """Any stream: counts, progress, rate, storage, per-frame values. No images."""

    kind = "data"
    has_frames = False  # a click on a navigation image can show this stream's frames

    def __init__(self, name: str, ds: EMDDataset):
        self.name = name
        self.n_lead = ds.data.ndim - frame_ndim(ds)
        self.frame_shape = tuple(ds.data.shape[self.n_lead:])
        self.frame_bytes = max(1, math.prod(self.frame_shape) * ds.data.dtype.itemsize)
        self.grid = ds.frame_grid
        self.slots = -1
        self.times = np.zeros(0)
        self.series: dict[str, Any] = {}
        self.history: deque = deque(maxlen=100)  # (monotonic time, frame slots) per poll

    @classmethod
    def accepts(cls, ds: EMDDataset) -> bool:
        return True

    @staticmethod
    def read_frame(ds: EMDDataset, index: int) -> np.ndarray:
        """Frame slot ``index`` (flat) of ``ds``."""
        return read_slots(ds.data, ds.frame_grid, index, index + 1)[0]

    def update(self, ds: EMDDataset) -> bool:
        """Take in what is new in ``ds``; True if what the page draws changed."""
        self.grid = ds.frame_grid
        self.history.append((time.monotonic(), ds.frame_slots))
        if ds.frame_slots == self.slots:
            return False
        self.slots = ds.frame_slots
        self._read_values(ds)
        return True

    def _read_values(self, ds: EMDDataset) -> None:
        columns = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in ds.values.items()}
        stamps = columns.pop("timestamp", None)
        if stamps is None:
            return
        ok = np.flatnonzero(np.isfinite(stamps))
        order = ok[np.argsort(stamps[ok], kind="stable")]
        self.times = stamps[order]
        pick = np.unique(np.linspace(0, order.size - 1, min(order.size, SERIES_POINTS)).astype(int))
        self.series = {"t": self.times[pick].tolist(), "n": (pick + 1).tolist(),
                       "values": {k: v[order][pick].tolist() for k, v in columns.items()}}

    def panels(self) -> list[Panel]:
        return []

    def shown_slots(self) -> int:
        return max(self.slots, 0)

    def status(self, f: EMDFile, ds: EMDDataset) -> dict[str, Any]:
        data = ds.data
        total = math.prod(data.shape[:self.n_lead]) if data.maxshape[0] is not None else None
        stored = int(data.id.get_storage_size())
        rate, source = frame_rate(self.times, not ds.complete), "timestamps"
        if rate is None and not ds.complete:
            rate, source = self._rate_from_counts(), "counts"
        left = None if total is None or ds.complete else total - ds.frame_slots
        age = time.time() - float(self.times[-1]) if self.times.size else None
        idle = bool(not ds.complete and age is not None and age > max(IDLE_S, 3 / (rate or 1)))
        if idle:
            rate = None
        return {
            "kind": self.kind, "frames_written": ds.frames_written,
            "frames_dropped": ds.frames_dropped, "n_frames": total, "frame_slots": ds.frame_slots,
            "complete": ds.complete, "progress": ds.frame_slots / total if total else None,
            "fps": rate, "fps_from": source if rate else None, "idle": idle,
            "eta_s": left / rate if left is not None and rate else None,
            "last_frame_age_s": age,
            "raw_chunks": raw_chunks(f, ds), "stored_bytes": stored,
            "ratio": ds.frame_slots * self.frame_bytes / stored if stored and ds.frame_slots else None,
            "compression": describe_filters(data), "dtype": str(data.dtype),
            "frame_shape": list(self.frame_shape), "grid": list(self.grid),
            "shown_frames": self.shown_slots()}

    def _rate_from_counts(self) -> Optional[float]:
        """Frames/s from the counts seen at the polls of the last ``RATE_WINDOW_S`` seconds."""
        now = time.monotonic()
        recent = [(t, n) for t, n in self.history if now - t <= RATE_WINDOW_S] or [(now, 0)]
        (t0, n0), (t1, n1) = recent[0], recent[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 and n1 > n0 else None


def raw_chunks(f: EMDFile, ds: EMDDataset) -> dict[str, int]:
    """Chunks stored uncompressed, by reason, as the writer recorded them (finished: the data
    group's ``raw_chunks_<reason>`` attributes; while writing: its streaming state)."""
    attrs = ds.group.attrs
    if any(f"raw_chunks_{r}" in attrs for r in RAW_REASONS):
        return {r: int(attrs.get(f"raw_chunks_{r}", 0)) for r in RAW_REASONS}
    rows = f.h5.get(f"{state_path(ds.name)}/raw_chunks")
    last = {int(first): int(why) for why, first in (rows[()] if rows is not None else [])}
    return {r: sum(1 for why in last.values() if why == i) for i, r in enumerate(RAW_REASONS)}


class IncrementalView(StreamView):
    """A stream with one number per frame slot (``reduce``), read incrementally: each poll reads
    at most ``BATCH_BYTES`` of frames not read before."""

    nav_title = "values"

    def __init__(self, name: str, ds: EMDDataset):
        super().__init__(name, ds)
        self.done = 0  # frame slots read
        self.latest: Optional[tuple[int, np.ndarray]] = None  # (slot, frame) if has_frames
        self.ceiling: Optional[float] = None  # the detector's saturation value
        self.reduced = np.full(math.prod(self.grid), np.nan)
        self.dropped = np.zeros(self.reduced.size, dtype=bool)

    def ready(self, ds: EMDDataset) -> bool:
        return True

    def reduce(self, frames: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def slot_bytes(self) -> int:
        """Bytes read per frame slot: sizes the batches."""
        return self.frame_bytes

    def take(self, ds: EMDDataset, start: int, stop: int) -> None:
        """Anything else to read of slots ``start:stop`` (after ``reduce``)."""

    def update(self, ds: EMDDataset) -> bool:
        changed = super().update(ds)
        if self.has_frames:
            changed |= self._follow_latest(ds)
        if ds.frame_slots <= self.done or not self.ready(ds):
            return changed
        stop = min(ds.frame_slots, self.done + max(1, BATCH_BYTES // self.slot_bytes()))
        if stop > self.reduced.size:  # a growing stack
            grow = max(stop, 2 * self.reduced.size) - self.reduced.size
            self.reduced = np.concatenate([self.reduced, np.full(grow, np.nan)])
            self.dropped = np.concatenate([self.dropped, np.zeros(grow, dtype=bool)])
        frames = read_slots(ds.data, self.grid, self.done, stop)
        lost = np.zeros(stop - self.done, dtype=bool)
        lost[ds.dropped_between(self.done, stop) - self.done] = True
        self.dropped[self.done:stop] = lost
        self.reduced[self.done:stop][~lost] = self.reduce(frames[~lost])
        self.take(ds, self.done, stop)
        self.done = stop
        return True

    def _follow_latest(self, ds: EMDDataset) -> bool:
        """Read the last written frame if it is new; True then."""
        last = max(0, ds.frame_slots - 64)
        written = np.setdiff1d(np.arange(last, ds.frame_slots),
                               ds.dropped_between(last, ds.frame_slots))
        if not written.size or (self.latest is not None and self.latest[0] == written[-1]):
            return False
        self.latest = int(written[-1]), self.read_frame(ds, int(written[-1]))
        return True

    def latest_panels(self) -> list[Panel]:
        if self.latest is None:
            return []
        index, frame = self.latest
        where = ", ".join(map(str, np.unravel_index(index, self.grid)))
        return [Panel(f"{self.name}/latest", self.name, "frame",
                      f"{self.name}: latest frame #{index} ({where})", frame.astype(np.float64),
                      log=frame.ndim == 2, cmap="inferno", ceiling=self.ceiling)]

    def shown_slots(self) -> int:
        return self.done

    def nav_note(self) -> str:
        return ""

    def panels(self) -> list[Panel]:
        n = math.prod(self.grid)
        shape = self.grid if len(self.grid) <= 2 else (math.prod(self.grid[:-1]), self.grid[-1])
        return [Panel(f"{self.name}/navigation", self.name, "navigation",
                      f"{self.name}: {self.nav_title}", self.reduced[:n].reshape(shape),
                      self.dropped[:n].reshape(shape), note=self.nav_note(), filled=self.done)]
