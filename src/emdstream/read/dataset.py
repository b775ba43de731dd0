"""One ``/data/<name>`` group of an open EMD file: lazy data, dims, frame counts, per-frame values.

Thread safety: a dataset of a live file reads under ``live_registry.reopen_lock`` (``LiveData``);
otherwise as h5py objects are.
"""
from __future__ import annotations

from typing import Any, Optional, Protocol

import h5py
import hdf5plugin  # noqa: F401  (registers the compression filters for reading)
import numpy as np

from emdstream.format import layout
from emdstream.format.blocks import frame_slots
from emdstream.format.dims import Dim, dims_from_json
from emdstream.safety.live_registry import reopen_lock


class OpenFile(Protocol):
    """What a dataset needs of its file: the h5py handle, whether it is live, and a reopen."""

    h5: Any
    live: bool

    def reopen(self) -> None: ...


class EMDDataset:
    """One ``/data/<name>`` group: lazy ``data`` (an h5py Dataset), ``dims`` and frame counts
    (``dropped_frames``: the dropped slots, sorted)."""

    def __init__(self, group: h5py.Group, state: Optional[h5py.Group],
                 file: Optional[OpenFile] = None):
        self._group = group
        self.file = file  # kept alive as long as the dataset (a lazy signal over it needs it)
        self.name = group.name.rsplit("/", 1)[-1]
        self.data = LiveData(file, self.name) if file is not None and file.live else group["data"]
        self._state = state
        if state is not None:  # still being written (or from a killed writer)
            committed, dropped = layout.read_progress(state)
            self.frame_slots = committed
            self.dropped_frames = dropped
            self.complete = False
        else:
            attrs = self.group.attrs
            self.dropped_frames = np.asarray(attrs.get("dropped_frames", np.zeros(0, np.int64)))
            written = attrs.get("frames_written")
            self.frame_slots = (int(written) + self.dropped_frames.size if written is not None
                                else frame_slots(self.data.shape, attrs.get("frame_ndim")))
            self.complete = bool(attrs.get("complete", written is None))

    @property
    def group(self) -> h5py.Group:
        """The ``/data/<name>`` group. In a live file it is taken again once the writer in this
        process has closed the file to finalize it (``live_registry``): the finished group."""
        group = self._group
        if not group and self.file is not None and self.file.live:
            with reopen_lock:
                if not self.file.h5:
                    self.file.reopen()
                group = self._group = self.file.h5[f"data/{self.name}"]
        return group

    @property
    def streaming(self) -> bool:
        """Whether the file still holds this stream's streaming state (its writer has not
        finalized it; a snapshot's counts are from that state)."""
        return self._state is not None and bool(self._state)

    @property
    def frames_written(self) -> int:
        return self.frame_slots - int(self.dropped_frames.size)

    @property
    def frames_dropped(self) -> int:
        return int(self.dropped_frames.size)

    def dropped_between(self, start: int, stop: int) -> np.ndarray:
        """The dropped slots of ``start .. stop - 1`` (``dropped_frames`` is sorted: a look-up,
        not a pass over millions of drops)."""
        d = self.dropped_frames
        return d[np.searchsorted(d, start):np.searchsorted(d, stop)]

    @property
    def dims(self) -> list[Dim]:
        with reopen_lock:
            group, out = self.group, []
            for axis in range(self.data.ndim):
                if axis == 0 and self.data.maxshape[0] is None and self.streaming:
                    out.append(self._stack_axis())  # its vector is written at finalize
                    continue
                vec = group.get(f"dim{axis + 1}")
                if vec is None:
                    out.append(Dim(f"axis_{axis}", "", values=np.arange(self.data.shape[axis])))
                    continue
                out.append(Dim(text(vec.attrs.get("name", f"axis_{axis}")),
                               text(vec.attrs.get("units", "")), values=vec[()].reshape(-1)))
            return out

    def _stack_axis(self) -> Dim:
        """The frame axis of a stack still being written, from the dims its writer declared: the
        ``frame_slots`` this snapshot counts."""
        declared = dims_from_json(self._state.attrs["dims"])[0]
        if not declared.from_values:
            return Dim(declared.name, declared.units, values=declared.vector(self.frame_slots))
        values = self.values.get(declared.from_values)  # None: no frame carried it yet
        return Dim(declared.name, declared.units, values=values if values is not None
                   else np.full(self.frame_slots, np.nan))

    @property
    def frame_grid(self) -> tuple[int, ...]:
        """The shape of the frame slots: the scan, or (frames,) of a stack."""
        n = self.group.attrs.get("frame_ndim")
        n = int(n) if n is not None else min(2, self.data.ndim - 1)
        if self.data.maxshape[0] is None:
            return (self.frame_slots,) + self.data.shape[1:self.data.ndim - n]
        return self.data.shape[:self.data.ndim - n]

    @property
    def values(self) -> dict[str, np.ndarray]:
        """Per-frame values ({"timestamp": ..., user keys}) shaped like ``frame_grid``; NaN where
        no frame was written (dropped, not yet written, or a name a put left out)."""
        with reopen_lock:  # a live file's group: see ``group``
            return layout.value_columns(self.group, (self.frame_slots, self.dropped_frames))

    def frames(self) -> np.ndarray:
        """The frames written so far, read into memory: ``(n, *frame_shape)`` for a stack;
        for a scan the whole array (unwritten slots hold the fill value)."""
        if self.data.maxshape[0] is None:
            return self.data[: self.frame_slots]
        return self.data[()]

    def to_hyperspy(self, lazy: bool = False):
        """A HyperSpy signal over this dataset (needs HyperSpy: ``pip install hyperspy``)."""
        from emdstream.interop.hyperspy import to_hyperspy

        return to_hyperspy(self, lazy=lazy)

    def to_py4dstem(self):
        """A py4DSTEM DataCube of this dataset (needs py4DSTEM, numpy < 2: ``pip install py4DSTEM``)."""
        from emdstream.interop.py4dstem import to_py4dstem

        return to_py4dstem(self)

    def __repr__(self) -> str:
        return (f"<EMDDataset {self.name!r} {self.data.shape} {self.data.dtype}, "
                f"{self.frames_written} frames written{'' if self.complete else ' (in progress)'}>")


class LiveData:
    """``data`` of a dataset in a live file: an h5py Dataset whose reads take ``reopen_lock`` and
    reopen the file if the writer in this process closed it to finalize (see ``live_registry``)."""

    def __init__(self, file: OpenFile, name: str):
        self._file = file
        self._name = name

    def _dataset(self) -> h5py.Dataset:
        if not self._file.h5:  # closed under us by a finalizing writer: the file is finished
            self._file.reopen()
        return self._file.h5[f"data/{self._name}/data"]

    def __getitem__(self, selection):
        with reopen_lock:
            return self._dataset()[selection]

    def __getattr__(self, attr: str):
        with reopen_lock:
            return getattr(self._dataset(), attr)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        data = self[()]
        return data if dtype is None else data.astype(dtype)


def text(value):
    """An HDF5 attribute value as str (or array of str) where it is bytes."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, np.ndarray) and value.dtype.kind == "S":
        return value.astype(str)
    return value
