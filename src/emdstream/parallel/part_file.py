"""What a part file holds, as ``write_master`` maps it (``read_part_file``): the streams split by
block (``PartStream``), the streams one part writes alone (``OtherStream``), its metadata and
comments; counted as far as the part has committed, whether it is finished or still written."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Optional

import h5py
import numpy as np

from emdstream.format import layout
from emdstream.format.dims import Dim
from emdstream.format.metadata import METADATA_GROUPS
from emdstream.format.parts import Part, read_part


@dataclass
class PartStream:
    """One partitioned stream (``/data/<name>``) of one part file."""

    name: str
    part: Part
    scan_shape: tuple[int, ...]
    dims: list[Dim]              # of the whole scan
    frame_shape: tuple[int, ...]
    dtype: np.dtype
    fillvalue: object
    n_local: int                 # frames of the part's stack: its blocks' slots, fewer once a
                                 # part stopped early is finished (trimmed)
    frames_written: int
    dropped_local: np.ndarray    # indices into the stack
    finished: bool               # False: streaming state left (being written, or killed)
    columns: Optional[list[str]]  # per-frame value names


@dataclass
class OtherStream:
    """A stream of a part file that is not split by block (its own ``n_frames``)."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    fillvalue: object
    dims: list[tuple[str, str, np.ndarray]]
    attrs: dict


@dataclass
class PartFile:
    path: str                    # absolute
    streams: dict[str, PartStream] = field(default_factory=dict)
    others: dict[str, OtherStream] = field(default_factory=dict)
    metadata: dict[str, dict] = field(default_factory=dict)
    comments: list[tuple[str, str]] = field(default_factory=list)

    @property
    def rank(self) -> int:
        return next(iter(self.streams.values())).part.rank

    @property
    def count(self) -> int:
        return next(iter(self.streams.values())).part.count


def read_part_file(path: str | os.PathLike) -> PartFile:
    """What a part file holds (finished or still being written). ValueError if it is no part file."""
    from emdstream.read.dataset import EMDDataset
    from emdstream.safety.h5open import open_emd

    path = os.path.abspath(os.fspath(path))
    with open_emd(path, "part file ") as f:
        out = PartFile(path)
        states = f.get(f"{layout.STATE_GROUP}/streams", {})
        for name, group in f.get("data", {}).items():
            if not isinstance(group, h5py.Group) or "data" not in group:
                continue
            data = group["data"]
            state = states.get(name)
            ds = EMDDataset(group, state)
            info = read_part(group.attrs)
            if info is None:
                out.others[name] = _other_stream(group, state, ds)
                continue
            part, scan_shape, dims = info
            columns = None
            table = group.get(layout.VALUES)
            if table is not None:
                columns = (json.loads(table.attrs["columns"]) if "columns" in table.attrs
                           else layout.read_value_names(state) if state is not None else None)
            out.streams[name] = PartStream(
                name, part, scan_shape, dims, tuple(data.shape[1:]), data.dtype, data.fillvalue,
                int(data.shape[0]), ds.frames_written, np.asarray(ds.dropped_frames, np.int64),
                state is None, columns)
        if not out.streams:
            raise ValueError(f"{path} is not a part file (no /data group with part_rank: write it "
                             f"with EMDWriter(..., part=(rank, n), block_frames=B))")
        out.metadata = {g: dict(f[g].attrs) for g in METADATA_GROUPS if g in f}
        comments = [(k, _text(v)) for k, v in f["comments"].attrs.items()] if "comments" in f else []
        if layout.STATE_GROUP in f:
            comments += layout.read_log(f)
        out.comments = comments
    return out


def _other_stream(group: h5py.Group, state: Optional[h5py.Group], ds) -> OtherStream:
    """A stream not split by block, as far as it counts now: a finished one as finalized; one being
    written (or killed) up to its committed slots, by its state as a split stream (not its
    preallocated stack: ``finalize`` trims it and writes the counts)."""
    data, attrs = group["data"], group.attrs
    counts = {k: attrs[k] for k in ("frames_written", "frames_dropped", "complete", "frame_ndim",
                                    "dropped_frames") if k in attrs}
    shape = data.shape
    if state is not None:
        shape = ((ds.frame_slots,) if data.maxshape[0] is None else data.shape[:1]) + data.shape[1:]
        counts.update(frames_written=np.int64(ds.frames_written), complete=False,
                      frames_dropped=np.int64(ds.frames_dropped), dropped_frames=ds.dropped_frames)
        if not ds.frames_dropped:
            del counts["dropped_frames"]
    dims = [(str(d.name), str(d.units), np.asarray(d.values).reshape(-1)[:n])  # a stack's frame
            for d, n in zip(ds.dims, shape)]  # axis as the snapshot counts it (EMDDataset.dims)
    return OtherStream(ds.name, shape, data.dtype, data.fillvalue, dims, counts)


def _text(value):
    return value.decode(errors="replace") if isinstance(value, bytes) else value
