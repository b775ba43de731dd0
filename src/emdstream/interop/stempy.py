"""A counted stream as the file stempy reads: ``emdstream convert run.emd out.h5 --to stempy``.

    import stempy.io
    array = stempy.io.load_electron_counts("out.h5")   # SparseArray: same events, scan, frame

The layout of stempy's ``SparseArray.write_to_hdf5`` (version 3): ``electron_events/frames``, one
variable-length uint32 list of flat pixel indices per scan position (C order), with attributes
``Nx``/``Ny`` = the frame's (H, W); ``electron_events/scan_positions`` (0..n-1) with ``Nx``/``Ny``
= the scan's (columns, rows). A stack (no scan) is written as a scan of one row. Per-event counts
have no place in that layout: an event of count c is written c times.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import h5py
import numpy as np

from emdstream.read.file import EMDFile

STEMPY_VERSION = 3
_BLOCK = 65536  # scan positions written per step


@dataclass
class StempyReport:
    src: str
    dst: str
    stream: str
    positions: int
    events: int

    def __str__(self) -> str:
        return (f"{self.src} -> {self.dst}: stempy electron counts of /data/{self.stream}, "
                f"{self.positions} scan positions, {self.events} events "
                f"(stempy.io.load_electron_counts opens it)")


def to_stempy(src: str | os.PathLike, dst: str | os.PathLike, overwrite: bool = False,
              stream: Optional[str] = None) -> StempyReport:
    """Write counted stream ``stream`` (default: the file's only one) of ``src`` as stempy's
    electron-counts file ``dst``."""
    dst = os.fspath(dst)
    if os.path.exists(dst) and not overwrite:
        raise FileExistsError(f"{dst} already exists; use --overwrite to replace it")
    with EMDFile(src) as f:
        counted = [name for name, ds in f.datasets.items() if getattr(ds, "counted", False)]
        if not counted or (stream is not None and stream not in counted):
            raise ValueError(f"{os.fspath(src)} has no counted stream {stream or ''}; "
                             f"counted streams: {counted}")
        if stream is None and len(counted) > 1:
            raise ValueError(f"{os.fspath(src)} has several counted streams {counted}: name one")
        ds = f[stream or counted[0]]
        grid = ds.frame_grid
        scan = (grid[-2], grid[-1]) if len(grid) >= 2 else (1, grid[0])
        positions = int(np.prod(grid))
        tmp = f"{dst}.emdstream-partial"
        events = 0
        with h5py.File(tmp, "w") as out:
            out.attrs["version"] = STEMPY_VERSION
            group = out.create_group("electron_events")
            positions_ds = group.create_dataset("scan_positions", data=np.arange(positions))
            positions_ds.attrs["Nx"], positions_ds.attrs["Ny"] = scan[1], scan[0]
            frames = group.create_dataset("frames", (positions,),
                                          dtype=h5py.vlen_dtype(np.dtype(np.uint32)))
            frames.attrs["Nx"], frames.attrs["Ny"] = ds.frame_shape
            for first in range(0, positions, _BLOCK):
                last = min(positions, first + _BLOCK)
                block = _event_lists(ds, first, last)
                events += sum(x.size for x in block)
                frames[first:last] = block
        os.replace(tmp, dst)
    return StempyReport(os.fspath(src), dst, ds.name, positions, events)


def _event_lists(ds, first: int, last: int) -> np.ndarray:
    """Slots ``first .. last - 1`` as an object array of uint32 index lists (empty where not
    written)."""
    lists = np.empty(last - first, dtype=object)
    stop = min(last, ds.frame_slots)
    empty = np.zeros(0, np.uint32)
    for i in range(last - first):
        lists[i] = empty
    if stop > first:
        indptr, indices, counts = ds.rows(first, stop)
        if counts is not None:  # stempy has no counts: an event counted c times, c times
            times = np.asarray(counts).astype(np.int64)
            indices = np.repeat(indices, times)
            indptr = np.concatenate([[0], np.cumsum(times)])[indptr]
        for i in range(stop - first):
            lists[i] = indices[indptr[i]:indptr[i + 1]].astype(np.uint32)
    return lists
