"""The EMD v0.2 file layout: create the skeleton before streaming, finalize it afterwards.

While frames stream in, the file is in HDF5 SWMR mode, where no object or attribute can be created.
Everything the writer updates therefore exists before streaming starts, in a state group
``/emdstream/<name>``: ``committed_slots`` (frame slots 0..n-1 are durably on disk, each holding a
frame or, if it was dropped, the fill value), ``dropped_frames`` (indices of dropped slots) and ``log``
(comments made during acquisition, JSON lines).
``finalize`` turns that state into plain EMD: data trimmed, dim vectors at their final length,
``/comments`` entries, and attributes ``frames_written`` / ``frames_dropped`` / ``complete`` on the
data group. It is what a closing writer and ``recover`` both call.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import h5py
import numpy as np

from .dims import Dim, dims_from_json, dims_to_json
from .metadata import METADATA_GROUPS, unique_key, utc_key

LIBVER = ("v110", "v110")  # HDF5 1.10 file format: readable by h5dump 1.10, MATLAB, older tools
STATE_GROUP = "emdstream"


def create_skeleton(path: str, name: str, shape: tuple[int, ...], maxshape: tuple, chunks: tuple,
                    dtype: np.dtype, fillvalue: Any, dataset_options: Mapping[str, Any],
                    dims: Sequence[Dim], metadata: Mapping[str, Mapping[str, Any]],
                    first_comment: tuple[str, str]) -> h5py.File:
    """Create the file with every object the stream will touch; returns it open for writing."""
    f = h5py.File(path, "w", libver=LIBVER)
    try:
        f.attrs["version_major"] = 0
        f.attrs["version_minor"] = 2
        group = f.create_group(f"data/{name}")
        group.attrs["emd_group_type"] = np.int32(1)
        group.create_dataset("data", shape=shape, maxshape=maxshape, chunks=chunks, dtype=dtype,
                             fillvalue=fillvalue, **dataset_options)
        for axis, dim in enumerate(dims):
            growing = axis == 0 and maxshape[0] is None
            # a stack's axis-0 vector is rewritten at its final length by finalize
            _write_dim(group, axis, dim, 0 if growing else shape[axis], resizable=growing)
        for meta_group in METADATA_GROUPS:
            g = f.create_group(meta_group)
            for key, value in metadata.get(meta_group, {}).items():
                g.attrs[key] = value
        f.create_group("comments").attrs[first_comment[0]] = first_comment[1]
        state = f.create_group(f"{STATE_GROUP}/{name}")
        state.attrs["dims"] = dims_to_json(dims)
        # data= allocates storage now: a lazily allocated scalar is unreadable after a crash
        state.create_dataset("committed_slots", data=np.int64(0))
        state.create_dataset("dropped_frames", shape=(0,), maxshape=(None,), chunks=(4096,),
                             dtype=np.int64)
        state.create_dataset("log", shape=(0,), maxshape=(None,), chunks=(4096,), dtype=np.uint8)
    except BaseException:
        f.close()
        raise
    return f


def _write_dim(group: h5py.Group, axis: int, dim: Dim, length: int, resizable: bool) -> None:
    key = f"dim{axis + 1}"
    if key in group:
        del group[key]
    values = dim.vector(length)
    if resizable:
        ds = group.create_dataset(key, data=values, maxshape=(None,),
                                  chunks=(max(1024, min(length, 65536)),))
    else:
        ds = group.create_dataset(key, data=values)
    ds.attrs["name"] = dim.name
    ds.attrs["units"] = dim.units


def append_log(state: h5py.Group, entries: Sequence[tuple[str, str]]) -> None:
    """Append (timestamp key, text) comments to the state log (safe in SWMR mode)."""
    if not entries:
        return
    blob = "".join(json.dumps({"time": k, "text": t}) + "\n" for k, t in entries).encode()
    log = state["log"]
    start = log.shape[0]
    log.resize((start + len(blob),))
    log[start:] = np.frombuffer(blob, dtype=np.uint8)


def read_log(state: h5py.Group) -> list[tuple[str, str]]:
    """The comments of a state log; a half-written last line (crash) is skipped."""
    entries = []
    for line in state["log"][()].tobytes().decode(errors="replace").splitlines():
        try:
            item = json.loads(line)
            entries.append((item["time"], item["text"]))
        except (ValueError, KeyError, TypeError):
            continue
    return entries


def add_comment(f: h5py.File, key: str, text: str) -> str:
    comments = f.require_group("comments")
    key = unique_key(key, comments.attrs)
    comments.attrs[key] = text
    return key


def is_complete(f: h5py.File, name: str) -> bool:
    return bool(f[f"data/{name}"].attrs.get("complete", False))


def stream_names(f: h5py.File) -> list[str]:
    """Names of the data groups that still have streaming state (unfinished or being written)."""
    return list(f[STATE_GROUP].keys()) if STATE_GROUP in f else []


def read_progress(state: h5py.Group) -> tuple[int, np.ndarray]:
    """(committed slots, indices of the dropped ones among them) from a state group."""
    committed = int(state["committed_slots"][()])
    dropped = state["dropped_frames"][()]
    return committed, dropped[dropped < committed]


def finalize(f: h5py.File, name: str, closing_comment: str) -> tuple[int, int]:
    """Turn streaming state into a finished EMD group; returns (frames written, frames dropped).

    ``f`` must be open read-write without SWMR. A stack of frames (resizable axis 0) is trimmed
    to the committed slots; a scan keeps its shape, unwritten or dropped frames holding the fill
    value. The closing comment gets the counts appended.
    """
    group = f[f"data/{name}"]
    state = f[f"{STATE_GROUP}/{name}"]
    committed, dropped = read_progress(state)
    written = committed - dropped.size
    data = group["data"]
    if data.maxshape[0] is None:
        data.resize((committed,) + data.shape[1:])
        _write_dim(group, 0, dims_from_json(state.attrs["dims"])[0], committed, resizable=True)
    for key, text in read_log(state):
        add_comment(f, key, text)
    add_comment(f, utc_key(), f"{closing_comment}; {written} frames written, {dropped.size} dropped")
    group.attrs["frames_written"] = np.int64(written)
    group.attrs["frames_dropped"] = np.int64(dropped.size)
    if dropped.size:
        group.attrs["dropped_frames"] = dropped
    group.attrs["complete"] = True
    del f[f"{STATE_GROUP}/{name}"]
    if not f[STATE_GROUP].keys():
        del f[STATE_GROUP]
    f.flush()
    return written, int(dropped.size)


def open_for_finalize(path: str | os.PathLike) -> h5py.File:
    """Open read-write without HDF5's file lock, which live (SWMR) readers hold shared.

    Only one process writes: the writer finalizing its own file, or ``recover`` after checking
    that no writer holds the file (``filelock``). Live readers reopen on ``refresh``.
    """
    return h5py.File(path, "r+", libver=LIBVER, locking=False)
