"""What ``emdstream view`` knows of a file: per stream, counts, rates, storage and display images,
kept up to date through the live reader, reading only the frames that are new since the last poll.

Each stream gets a view by its kind (``KINDS``, the first that ``accepts`` it): single values per
position (HAADF) make a navigation image; frames (2-D patterns, 1-D spectra) a virtual image, the
latest frame and the mean. To show a new kind of stream, subclass ``StreamView`` (or
``IncrementalView``) and put the class first in ``KINDS``.
"""
from __future__ import annotations

import functools
import math
import time
from collections import deque
from typing import Any, Optional

import numpy as np

from emdstream.encoders import describe_filters
from emdstream.format.layout import RAW_REASONS, state_path
from emdstream.read.dataset import EMDDataset
from emdstream.read.file import EMDFile
from emdstream.tools.preview import bright_field_disk, frame_ndim  # the same detector as preview
from emdstream.tools.view_panels import Panel

BATCH_BYTES = 32 << 20   # frame data read per stream and poll at most; the rest at the next polls
DETECTOR_FRAMES = 32     # the virtual detector is placed from the mean of the first frames
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


def place_detector(mean: np.ndarray) -> np.ndarray:
    """The virtual bright-field detector over a mean pattern: ``bright_field_disk`` once isolated
    hot pixels (brighter than twice their brightest neighbour) are lowered to that neighbour."""
    padded = np.pad(mean.astype(np.float64), 1)
    around = functools.reduce(np.maximum, (padded[:-2, 1:-1], padded[2:, 1:-1],
                                           padded[1:-1, :-2], padded[1:-1, 2:]))
    return bright_field_disk(np.where(mean > 2 * around, around, mean))


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
        self.reduced = np.full(math.prod(self.grid), np.nan)
        self.dropped = np.zeros(self.reduced.size, dtype=bool)

    def ready(self, ds: EMDDataset) -> bool:
        return True

    def reduce(self, frames: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def update(self, ds: EMDDataset) -> bool:
        changed = super().update(ds)
        if ds.frame_slots <= self.done or not self.ready(ds):
            return changed
        stop = min(ds.frame_slots, self.done + max(1, BATCH_BYTES // self.frame_bytes))
        if stop > self.reduced.size:  # a growing stack
            grow = max(stop, 2 * self.reduced.size) - self.reduced.size
            self.reduced = np.concatenate([self.reduced, np.full(grow, np.nan)])
            self.dropped = np.concatenate([self.dropped, np.zeros(grow, dtype=bool)])
        frames = read_slots(ds.data, self.grid, self.done, stop)
        lost = np.isin(np.arange(self.done, stop), ds.dropped_frames)
        self.dropped[self.done:stop] = lost
        self.reduced[self.done:stop][~lost] = self.reduce(frames[~lost])
        self.done = stop
        return True

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


class ScalarView(IncrementalView):
    """One value per frame slot (HAADF, a counter): the values are the navigation image."""

    kind = "scalar"
    nav_title = "image"

    @classmethod
    def accepts(cls, ds: EMDDataset) -> bool:
        return frame_ndim(ds) == 0

    def reduce(self, frames: np.ndarray) -> np.ndarray:
        return frames.astype(np.float64)


class FrameView(IncrementalView):
    """2-D frames (diffraction patterns) or 1-D spectra: the virtual bright field (the disk of the
    mean of the first ``DETECTOR_FRAMES`` frames) or the total counts per slot, the latest frame
    and the mean so far."""

    kind = "frames"

    def __init__(self, name: str, ds: EMDDataset):
        super().__init__(name, ds)
        self.detector: Optional[np.ndarray] = None
        self.detector_frames = 0
        self.total = np.zeros(self.frame_shape)
        self.summed = 0
        self.latest: Optional[tuple[int, np.ndarray]] = None
        self.nav_title = "virtual bright field" if len(self.frame_shape) == 2 else "total counts"
        dtype = ds.data.dtype
        self.ceiling = float(np.iinfo(dtype).max) if dtype.kind in "iu" else None

    @classmethod
    def accepts(cls, ds: EMDDataset) -> bool:
        return frame_ndim(ds) in (1, 2)

    def ready(self, ds: EMDDataset) -> bool:
        """Frames are read once enough are there to place the detector (or no more will come)."""
        return (self.detector is not None or ds.frames_written >= DETECTOR_FRAMES or ds.complete
                or ds.frame_slots >= self.reduced.size)

    def reduce(self, frames: np.ndarray) -> np.ndarray:
        if frames.shape[0] == 0:
            return np.zeros(0)
        if self.detector is None:
            mean = frames.mean(axis=0, dtype=np.float64)
            self.detector = (place_detector(mean) if mean.ndim == 2
                             else np.ones(mean.shape, dtype=bool))
            self.detector_frames = frames.shape[0]
        self.total += frames.sum(axis=0, dtype=np.float64)
        self.summed += frames.shape[0]
        return frames[:, self.detector].sum(axis=-1, dtype=np.float64)

    def update(self, ds: EMDDataset) -> bool:
        changed = super().update(ds)
        written = np.setdiff1d(np.arange(max(0, ds.frame_slots - 64), ds.frame_slots),
                               ds.dropped_frames)
        if written.size and (self.latest is None or self.latest[0] != written[-1]):
            last = int(written[-1])
            self.latest = last, read_slots(ds.data, self.grid, last, last + 1)[0]
            changed = True
        return changed

    def nav_note(self) -> str:
        if self.detector is None or len(self.frame_shape) != 2:
            return ""
        return (f"detector: {int(self.detector.sum())} px, where the mean of the first "
                f"{self.detector_frames} frames is above half its maximum")

    def panels(self) -> list[Panel]:
        out = super().panels()
        if self.latest is not None:
            index, frame = self.latest
            where = ", ".join(map(str, np.unravel_index(index, self.grid)))
            out.append(Panel(f"{self.name}/latest", self.name, "frame",
                             f"{self.name}: latest frame #{index} ({where})",
                             frame.astype(np.float64), log=frame.ndim == 2, cmap="inferno",
                             ceiling=self.ceiling))
        if self.summed:
            out.append(Panel(f"{self.name}/mean", self.name, "frame",
                             f"{self.name}: mean of {self.summed} frames",
                             self.total / self.summed, log=self.total.ndim == 2, cmap="inferno",
                             outline=self.detector if len(self.frame_shape) == 2 else None))
        return out


KINDS: list[type[StreamView]] = [ScalarView, FrameView, StreamView]


def view_for(name: str, ds: EMDDataset) -> StreamView:
    """The view of the first kind in ``KINDS`` that accepts the stream."""
    return next(kind for kind in KINDS if kind.accepts(ds))(name, ds)
