"""The kinds of stream ``emdstream view`` shows (``KINDS``: the first that ``accepts`` a stream).

Single values per position (HAADF) make a navigation image; frames (2-D patterns, 1-D spectra) a
virtual image, the latest frame and the mean; a counted-event stream its counts image, the latest
frame and the summed pattern; a dataset without frame slots (a summed pattern) is shown as it is.
To show a new kind of stream, subclass ``StreamView`` (or ``IncrementalView``) and put the class
first in ``KINDS``.
"""
from __future__ import annotations

import functools
from typing import Any, Optional

import numpy as np

from emdstream.encoders import describe_filters
from emdstream.format.counted import EVENT_KEYS, EVENTS
from emdstream.read.counted import CountedDataset
from emdstream.read.dataset import EMDDataset
from emdstream.read.file import EMDFile
from emdstream.tools.preview import bright_field_disk, frame_ndim  # the same detector as preview
from emdstream.tools.view_panels import Panel
from emdstream.tools.view_streams import IncrementalView, StreamView

DETECTOR_FRAMES = 32  # the virtual detector is placed from the mean of the first frames


def place_detector(mean: np.ndarray) -> np.ndarray:
    """The virtual bright-field detector over a mean pattern: ``bright_field_disk`` once isolated
    hot pixels (brighter than twice their brightest neighbour) are lowered to that neighbour."""
    padded = np.pad(mean.astype(np.float64), 1)
    around = functools.reduce(np.maximum, (padded[:-2, 1:-1], padded[2:, 1:-1],
                                           padded[1:-1, :-2], padded[1:-1, 2:]))
    return bright_field_disk(np.where(mean > 2 * around, around, mean))



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
    has_frames = True

    def __init__(self, name: str, ds: EMDDataset):
        super().__init__(name, ds)
        self.detector: Optional[np.ndarray] = None
        self.detector_frames = 0
        self.total = np.zeros(self.frame_shape)
        self.summed = 0
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

    def nav_note(self) -> str:
        if self.detector is None or len(self.frame_shape) != 2:
            return ""
        return (f"detector: {int(self.detector.sum())} px, where the mean of the first "
                f"{self.detector_frames} frames is above half its maximum")

    def panels(self) -> list[Panel]:
        out = super().panels() + self.latest_panels()
        if self.summed:
            out.append(Panel(f"{self.name}/mean", self.name, "frame",
                             f"{self.name}: mean of {self.summed} frames",
                             self.total / self.summed, log=self.total.ndim == 2, cmap="inferno",
                             outline=self.detector if len(self.frame_shape) == 2 else None))
        return out


class CountedView(IncrementalView):
    """A counted-event stream (``CountedDataset``): its counts image (events per slot, the
    stream's ``data``) is the navigation image; the latest frame and the summed pattern so far
    are made dense from the events, the pattern from the new slots' events only."""

    kind = "counted"
    nav_title = "counts image (events per position)"
    has_frames = True

    def __init__(self, name: str, ds: CountedDataset):
        super().__init__(name, ds)
        self.pattern = np.zeros(ds.frame_shape)
        self.events = 0

    @classmethod
    def accepts(cls, ds: EMDDataset) -> bool:
        return isinstance(ds, CountedDataset)

    @staticmethod
    def read_frame(ds: CountedDataset, index: int) -> np.ndarray:
        return ds.frame(index)

    def reduce(self, frames: np.ndarray) -> np.ndarray:
        return frames.astype(np.float64)

    def slot_bytes(self) -> int:
        return max(16, 12 * self.events // max(1, self.done))  # about 12 bytes an event

    def take(self, ds: CountedDataset, start: int, stop: int) -> None:
        indptr, indices, counts = ds.rows(start, stop)
        self.pattern += np.bincount(indices, weights=counts,
                                    minlength=self.pattern.size).reshape(self.pattern.shape)
        self.events += int(indptr[-1])

    def panels(self) -> list[Panel]:
        return super().panels() + self.latest_panels() + [
            Panel(f"{self.name}/summed", self.name, "frame",
                  f"{self.name}: {self.events:,} events of {self.done} slots summed",
                  self.pattern, log=True, cmap="inferno")]

    def status(self, f: EMDFile, ds: EMDDataset) -> dict[str, Any]:
        """As any stream's, the storage and compression ratio being those of the events."""
        out = super().status(f, ds)
        events = [ds.group[f"{EVENTS}/{key}"] for key in EVENT_KEYS if key in ds.group[EVENTS]]
        stored = sum(int(e.id.get_storage_size()) for e in events)
        raw = sum(e.size * e.dtype.itemsize for e in events)
        out.update(stored_bytes=stored, ratio=raw / stored if stored and raw else None,
                   compression=describe_filters(events[0]) if events else out["compression"])
        return out


class ImageView(StreamView):
    """A dataset without frame slots (a counted stream's summed pattern, a reference image):
    shown as it is."""

    kind = "image"

    def __init__(self, name: str, ds: EMDDataset):
        super().__init__(name, ds)
        self.image: Optional[np.ndarray] = None

    @classmethod
    def accepts(cls, ds: EMDDataset) -> bool:
        return ds.frame_grid == () and ds.data.ndim in (1, 2)

    def update(self, ds: EMDDataset) -> bool:
        changed = super().update(ds)
        if changed or self.image is None:
            self.image = np.asarray(ds.data[()], dtype=np.float64)
        return changed

    def panels(self) -> list[Panel]:
        return [Panel(f"{self.name}/image", self.name, "frame", self.name, self.image,
                      log=self.image.ndim == 2, cmap="inferno")]


KINDS: list[type[StreamView]] = [CountedView, ImageView, ScalarView, FrameView, StreamView]


def kind_of(ds: EMDDataset) -> type[StreamView]:
    """The first kind in ``KINDS`` that accepts the stream."""
    return next(kind for kind in KINDS if kind.accepts(ds))


def view_for(name: str, ds: EMDDataset) -> StreamView:
    """A view of the stream, of its kind."""
    return kind_of(ds)(name, ds)
