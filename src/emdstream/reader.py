"""Reading EMD files: ``emdstream.open`` -> EMDFile -> EMDDataset (lazy data, dims, counts).

Works on finished files and, with ``live=True``, on files still being written (HDF5 SWMR read):
``refresh()`` then shows the frames written so far, with a count that never exceeds what is on disk.
"""
from __future__ import annotations

import os
import time
from typing import Optional

import h5py
import hdf5plugin  # noqa: F401  (registers the compression filters for reading)
import numpy as np

from . import layout
from .dims import Dim
from .metadata import METADATA_GROUPS


class EMDDataset:
    """One ``/data/<name>`` group: lazy ``data`` (an h5py Dataset), ``dims`` and frame counts."""

    def __init__(self, group: h5py.Group, state: Optional[h5py.Group]):
        self.group = group
        self.name = group.name.rsplit("/", 1)[-1]
        self.data: h5py.Dataset = group["data"]
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
                                else self._slots_in_shape())
            self.complete = bool(attrs.get("complete", written is None))

    def _slots_in_shape(self) -> int:
        """Frame slots of a file not written by emdstream: every frame of the data."""
        return int(np.prod(self.data.shape[:max(1, self.data.ndim - 2)]))

    @property
    def frames_written(self) -> int:
        return self.frame_slots - int(self.dropped_frames.size)

    @property
    def frames_dropped(self) -> int:
        return int(self.dropped_frames.size)

    @property
    def dims(self) -> list[Dim]:
        out = []
        for axis in range(self.data.ndim):
            vec = self.group.get(f"dim{axis + 1}")
            if vec is None:
                out.append(Dim(f"axis_{axis}", "", values=np.arange(self.data.shape[axis])))
                continue
            out.append(Dim(_text(vec.attrs.get("name", f"axis_{axis}")),
                           _text(vec.attrs.get("units", "")), values=vec[()].reshape(-1)))
        return out

    def frames(self) -> np.ndarray:
        """The frames written so far, read into memory: ``(n, *frame_shape)`` for a stack;
        for a scan the whole array (unwritten slots hold the fill value)."""
        if self.data.maxshape[0] is None:
            return self.data[: self.frame_slots]
        return self.data[()]

    def __repr__(self) -> str:
        return (f"<EMDDataset {self.name!r} {self.data.shape} {self.data.dtype}, "
                f"{self.frames_written} frames written{'' if self.complete else ' (in progress)'}>")


class EMDFile:
    """An open EMD file: ``datasets`` by name, ``metadata`` by group, ``comments`` in time order."""

    def __init__(self, path: str | os.PathLike, live: bool = False):
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"no such file: {self.path}")
        self.live = live
        self._load()

    def _load(self) -> None:
        live = self.live
        try:
            self.h5 = h5py.File(self.path, "r", swmr=live)
        except OSError as exc:
            hint = (" (it may be still open for writing or from a killed writer: use live=True, "
                    "or `emdstream recover`)" if "already open" in str(exc) else "")
            raise OSError(f"cannot open {self.path} as HDF5: {exc}{hint}") from exc
        if "version_major" not in self.h5.attrs or "data" not in self.h5:
            self.h5.close()
            raise ValueError(f"{self.path} is an HDF5 file but not an EMD file "
                             f"(no version_major attribute or /data group)")
        states = self.h5.get(layout.STATE_GROUP, {})
        self.datasets: dict[str, EMDDataset] = {}
        for name, group in self.h5["data"].items():
            if isinstance(group, h5py.Group) and int(group.attrs.get("emd_group_type", 0)) == 1 \
                    and "data" in group:
                self.datasets[name] = EMDDataset(group, states.get(name))

    @property
    def version(self) -> tuple[int, int]:
        return int(self.h5.attrs["version_major"]), int(self.h5.attrs.get("version_minor", 0))

    @property
    def metadata(self) -> dict[str, dict]:
        return {g: {k: _text(v) for k, v in self.h5[g].attrs.items()}
                for g in METADATA_GROUPS if g in self.h5}

    @property
    def comments(self) -> list[tuple[str, str]]:
        """(UTC timestamp key, text), oldest first; includes entries not yet finalized."""
        entries = [(k, _text(v)) for k, v in self.h5.get("comments", {}).attrs.items()] \
            if "comments" in self.h5 else []
        for state in self.h5.get(layout.STATE_GROUP, {}).values():
            entries += layout.read_log(state)
        return sorted(entries, key=lambda kv: _comment_order(kv[0]))

    def refresh(self, retries: int = 20) -> None:
        """Show what a live file holds now. The file is reopened, since the writer finalizes
        it outside SWMR when it closes: take ``datasets`` anew after a refresh."""
        if not self.live:
            return
        for attempt in range(retries):
            self.h5.close()
            try:
                self._load()
                return
            except (OSError, KeyError, ValueError):  # caught mid-finalize: try again shortly
                if attempt == retries - 1:
                    raise
                time.sleep(0.05)

    def __getitem__(self, name: str) -> EMDDataset:
        return self.datasets[name]

    def close(self) -> None:
        self.h5.close()

    def __enter__(self) -> EMDFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open(path: str | os.PathLike, live: bool = False) -> EMDFile:
    """Open an EMD file for reading; ``live=True`` for a file still being written."""
    return EMDFile(path, live=live)


def _text(value):
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, np.ndarray) and value.dtype.kind == "S":
        return value.astype(str)
    return value


def _comment_order(key: str) -> tuple[str, int]:
    base, _, n = key.partition(" #")
    return base, int(n) if n.isdigit() else 1
