"""Reading EMD files: ``emdstream.open`` -> EMDFile -> EMDDataset (lazy data, dims, counts).

Works on finished files and, with ``live=True``, on files still being written (HDF5 SWMR read):
``refresh()`` then shows the frames written so far, with a count that never exceeds what is on disk.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping

import h5py
import hdf5plugin  # noqa: F401  (registers the compression filters for reading)

from emdstream.format import counted, layout
from emdstream.format.metadata import METADATA_GROUPS
from emdstream.read.counted import CountedDataset
from emdstream.read.dataset import EMDDataset, text
from emdstream.safety.h5open import open_h5
from emdstream.safety.live_registry import live_files, reopen_lock


class EMDFile(Mapping):
    """An open EMD file, a read-only mapping of its streams (``/data/<name>`` groups) in the order
    they were made: ``ef["diffraction"]``, ``"haadf" in ef``, ``len(ef)``, ``list(ef)``,
    ``ef.items()``; ``metadata`` by group, ``comments`` in time order. A context manager;
    ``close()`` closes the HDF5 file."""

    # an open file is itself, not its contents: equal only to itself, hashable (weak sets)
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __init__(self, path: str | os.PathLike, live: bool = False):
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"no such file: {self.path}")
        self.live = live
        with reopen_lock:
            self.reopen()
        if live:
            live_files.add(self)

    def reopen(self) -> None:
        """(Re)open the HDF5 file (call with ``live_registry.reopen_lock`` held)."""
        try:
            self.h5 = open_h5(self.path, live=True) if self.live else h5py.File(self.path, "r")
        except OSError as exc:
            hint = (" (it may be still open for writing or from a killed writer: use live=True, "
                    "or `emdstream recover`)" if "already open" in str(exc) else "")
            raise OSError(f"cannot open {self.path} as HDF5: {exc}{hint}") from exc
        self._find_datasets()

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
                kind = CountedDataset if counted.is_counted(group) else EMDDataset
                self.datasets[name] = kind(group, states.get(name), self)

    @property
    def version(self) -> tuple[int, int]:
        return int(self.h5.attrs["version_major"]), int(self.h5.attrs.get("version_minor", 0))

    @property
    def metadata(self) -> dict[str, dict]:
        return {g: {k: text(v) for k, v in self.h5[g].attrs.items()}
                for g in METADATA_GROUPS if g in self.h5}

    @property
    def comments(self) -> list[tuple[str, str]]:
        """(UTC timestamp key, text), oldest first; includes entries not yet finalized."""
        entries = [(k, text(v)) for k, v in self.h5.get("comments", {}).attrs.items()] \
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
            try:
                with reopen_lock:  # a LiveData read in another thread never sees it closed
                    self.h5.close()
                    self.reopen()
                return
            except (OSError, KeyError, ValueError):  # caught mid-finalize: try again shortly
                if attempt == retries - 1:
                    raise
                time.sleep(0.05)

    def __getitem__(self, name: str) -> EMDDataset:
        try:
            return self.datasets[name]
        except KeyError:
            there = ", ".join(map(repr, self.datasets)) or "none"
            raise KeyError(f"no stream {name!r} in {self.path}; its streams: {there}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.datasets)

    def __len__(self) -> int:
        return len(self.datasets)

    def __repr__(self) -> str:
        state = "closed" if not self.h5 else ", ".join(self.datasets) or "no streams"
        return f"<EMDFile {os.path.basename(self.path)!r}{' (live)' if self.live else ''}: {state}>"

    def close(self) -> None:
        self.h5.close()

    def __enter__(self) -> EMDFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open(path: str | os.PathLike, live: bool = False) -> EMDFile:
    """Open an EMD file for reading; ``live=True`` for a file still being written."""
    return EMDFile(path, live=live)


def _comment_order(key: str) -> tuple[str, int]:
    base, _, n = key.partition(" #")
    return base, int(n) if n.isdigit() else 1
