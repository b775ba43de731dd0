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

from emdstream.format import layout
from emdstream.format.blocks import frame_slots
from emdstream.format.dims import Dim
from emdstream.format.metadata import METADATA_GROUPS
from emdstream.safety.live_registry import live_files, reopen_lock
from emdstream.safety.superblock import read_superblock


# --- the EMD objects ----------------------------------------------------------------------------
class EMDDataset:
    """One ``/data/<name>`` group: lazy ``data`` (an h5py Dataset), ``dims`` and frame counts."""

    def __init__(self, group: h5py.Group, state: Optional[h5py.Group],
                 file: Optional[EMDFile] = None):
        self.group = group
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
        return layout.value_columns(self.group)

    def frames(self) -> np.ndarray:
        """The frames written so far, read into memory: ``(n, *frame_shape)`` for a stack;
        for a scan the whole array (unwritten slots hold the fill value)."""
        if self.data.maxshape[0] is None:
            return self.data[: self.frame_slots]
        return self.data[()]

    def to_hyperspy(self, lazy: bool = False):
        """A HyperSpy signal over this dataset (needs ``pip install 'emdstream[hyperspy]'``)."""
        from emdstream.interop.hyperspy import to_hyperspy

        return to_hyperspy(self, lazy=lazy)

    def to_py4dstem(self):
        """A py4DSTEM DataCube of this dataset (needs ``pip install 'emdstream[py4dstem]'``)."""
        from emdstream.interop.py4dstem import to_py4dstem

        return to_py4dstem(self)

    def __repr__(self) -> str:
        return (f"<EMDDataset {self.name!r} {self.data.shape} {self.data.dtype}, "
                f"{self.frames_written} frames written{'' if self.complete else ' (in progress)'}>")


class LiveData:
    """``data`` of a dataset in a live file: an h5py Dataset whose reads take ``reopen_lock`` and
    reopen the file if the writer in this process closed it to finalize (see ``live_registry``)."""

    def __init__(self, file: EMDFile, name: str):
        self._file = file
        self._name = name

    def _dataset(self) -> h5py.Dataset:
        if not self._file.h5:  # closed under us by a finalizing writer: the file is finished
            self._file._load()
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


class EMDFile:
    """An open EMD file: ``datasets`` by name, ``metadata`` by group, ``comments`` in time order."""

    def __init__(self, path: str | os.PathLike, live: bool = False):
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"no such file: {self.path}")
        self.live = live
        with reopen_lock:
            self._load()
        if live:
            live_files.add(self)

    def _load(self) -> None:
        try:
            self.h5 = self._open_live() if self.live else h5py.File(self.path, "r")
        except OSError as exc:
            hint = (" (it may be still open for writing or from a killed writer: use live=True, "
                    "or `emdstream recover`)" if "already open" in str(exc) else "")
            raise OSError(f"cannot open {self.path} as HDF5: {exc}{hint}") from exc
        self._find_datasets()

    def _open_live(self) -> h5py.File:
        """SWMR where a writer may be at work: the write flags are set, the file is shorter than
        its recorded end (a writer's last write failed: a SWMR reader does not check the end), or
        it is a master file whose parts may be being written."""
        try:
            sb = read_superblock(self.path)
            swmr = bool(sb.flags) or os.path.getsize(self.path) < sb.offset + sb.eof
        except (ValueError, OSError):
            swmr = False  # HDF5's own open says what is wrong
        h5 = h5py.File(self.path, "r", swmr=swmr)
        if not swmr and any(layout.MASTER_ATTR in g.attrs for g in h5.get("data", {}).values()
                            if isinstance(g, h5py.Group)):
            h5.close()
            h5 = h5py.File(self.path, "r", swmr=True)
        return h5

    def _find_datasets(self) -> None:
        if "version_major" not in self.h5.attrs or "data" not in self.h5:
            self.h5.close()
            raise ValueError(f"{self.path} is an HDF5 file but not an EMD file "
                             f"(no version_major attribute or /data group)")
        states = self.h5.get(f"{layout.STATE_GROUP}/streams", {})
        self.datasets: dict[str, EMDDataset] = {}
        for name, group in self.h5["data"].items():
            if isinstance(group, h5py.Group) and int(group.attrs.get("emd_group_type", 0)) == 1 \
                    and "data" in group:
                self.datasets[name] = EMDDataset(group, states.get(name), self)

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
        if layout.STATE_GROUP in self.h5:
            entries += layout.read_log(self.h5)
        return sorted(entries, key=lambda kv: _comment_order(kv[0]))

    def refresh(self, retries: int = 20) -> None:
        """Show what a live file holds now. The file is reopened, since the writer finalizes
        it outside SWMR when it closes:
        take ``datasets`` anew after a refresh."""
        if not self.live:
            return
        for attempt in range(retries):
            self.h5.close()
            try:
                with reopen_lock:
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
