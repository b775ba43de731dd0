"""The EMD v0.2 file layout: create the skeleton before streaming, finalize it afterwards.

While frames stream in, the file is in HDF5 SWMR mode, where no object or attribute can be created.
Everything the writer updates therefore exists before streaming starts, in a state group
``/emdstream``: ``log`` (comments made during acquisition, JSON lines) and, per stream,
``streams/<name>/``: ``committed_slots`` (frame slots 0..n-1 are durably on disk, each holding a
frame or, if it was dropped, the fill value), ``dropped_frames`` (indices of dropped slots) and
``value_names``. Each data group also has ``frame_values``, one row of per-frame values per slot
(see ``values``), written chunk by chunk beside the data.
``finalize`` turns that state into plain EMD: data trimmed, dim vectors at their final length,
value names recorded, ``/comments`` entries, and attributes ``frames_written`` /
``frames_dropped`` / ``complete`` on each data group. A closing writer and ``recover`` both call it,
through ``journal.finalize``, so it happens all at once or not at all.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import h5py
import numpy as np

from emdstream.format import counted
from emdstream.format.dims import Dim, dims_from_json, dims_to_json
from emdstream.format.metadata import METADATA_GROUPS, unique_key, utc_key
from emdstream.format.values import ENCODER, MAX_VALUES, TIMESTAMP, block_rows

LIBVER = ("v110", "v110")  # HDF5 1.10 file format: readable by h5dump 1.10, MATLAB, older tools
STATE_GROUP = "emdstream"
MASTER_ATTR = "master_parts"  # on a master file's virtual data groups: JSON list of part paths
VALUES = "frame_values"  # per data group: one row of per-frame values per frame slot
# why data chunks were stored uncompressed (filter mask set): counted while streaming, then in the
# data group's attributes raw_chunks_<reason>
RAW_REASONS = ("incompressible", "writer_behind")


def create_skeleton(path: str, streams: Sequence, metadata: Mapping[str, Mapping[str, Any]],
                    first_comment: tuple[str, str]) -> h5py.File:
    """Create the file with every object the streams will touch; returns it open for writing.

    ``streams``: objects with ``name``, ``geometry`` (``ChunkGeometry``), ``spec`` (``FrameSpec``),
    ``encoder``, ``dims`` and ``fillvalue`` (``StreamWriter``).
    """
    f = h5py.File(path, "w", libver=LIBVER)
    try:
        f.attrs["version_major"] = 0
        f.attrs["version_minor"] = 2
        for meta_group in METADATA_GROUPS:
            g = f.create_group(meta_group)
            for key, value in metadata.get(meta_group, {}).items():
                g.attrs[key] = value
        f.create_group("comments").attrs[first_comment[0]] = first_comment[1]
        # streams are listed in the order they were given, not alphabetically
        f.create_group("data", track_order=True)
        state = f.create_group(STATE_GROUP)
        state.create_group("streams", track_order=True)
        state.create_dataset("log", shape=(0,), maxshape=(None,), chunks=(4096,), dtype=np.uint8)
        for stream in streams:
            _create_stream(f, stream)
            if hasattr(stream, "create_layout"):  # a counted stream's events (format.counted)
                stream.create_layout(f)
    except BaseException:
        f.close()
        raise
    return f


def _create_stream(f: h5py.File, stream) -> None:
    geometry, name = stream.geometry, stream.name
    shape, maxshape = geometry.initial_shape(), geometry.maxshape()
    group = f.create_group(f"data/{name}")
    group.attrs["emd_group_type"] = np.int32(1)
    group.attrs["frame_ndim"] = np.int32(len(stream.spec.shape))  # the rest are frame slots
    for key, value in stream.attrs.items():
        group.attrs[key] = value
    group.create_dataset("data", shape=shape, maxshape=maxshape, chunks=geometry.chunk_shape,
                         dtype=stream.spec.dtype, fillvalue=stream.fillvalue,
                         **stream.encoder.dataset_options())
    for axis, dim in enumerate(stream.dims):
        growing = axis == 0 and maxshape[0] is None
        # a stack's axis-0 vector is rewritten at its final length by finalize
        _write_dim(group, axis, dim, 0 if growing else shape[axis], resizable=growing)
    state = f.create_group(state_path(name))
    state.attrs["dims"] = dims_to_json(stream.dims)
    # data= allocates storage now: a lazily allocated scalar is unreadable after a crash
    state.create_dataset("committed_slots", data=np.int64(0))
    state.create_dataset("dropped_frames", shape=(0,), maxshape=(None,), chunks=(4096,),
                         dtype=np.int64)
    # shaped like the frame grid, chunked in blocks of whole data chunks (see value_table)
    n_outer = len(shape) - len(stream.spec.shape)
    group.create_dataset(VALUES, shape=shape[:n_outer] + (MAX_VALUES,), dtype=np.float64,
                         maxshape=maxshape[:n_outer] + (MAX_VALUES,), fillvalue=np.nan,
                         chunks=geometry.chunk_shape[:n_outer - 1] + (block_rows(geometry),
                                                                      MAX_VALUES),
                         **ENCODER.dataset_options())
    state.create_dataset("value_names", shape=(0,), maxshape=(None,), chunks=(1024,),
                         dtype=np.uint8)
    # (why, first slot) of each chunk written uncompressed, appended at each flush
    state.create_dataset("raw_chunks", shape=(0, 2), maxshape=(None, 2), chunks=(4096, 2),
                         dtype=np.int64)


def state_path(name: str) -> str:
    """Where a stream's streaming state lives while it is written (removed by ``finalize``)."""
    return f"{STATE_GROUP}/streams/{name}"


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


def append_log(f: h5py.File, entries: Sequence[tuple[str, str]]) -> None:
    """Append (timestamp key, text) comments to the file's state log (safe in SWMR mode)."""
    if entries:
        _append_bytes(f[f"{STATE_GROUP}/log"],
                      "".join(json.dumps({"time": k, "text": t}) + "\n" for k, t in entries).encode())


def record_value_names(state: h5py.Group, names: Sequence[str]) -> None:
    """Record a stream's per-frame value names (once: the first put fixed them)."""
    _append_bytes(state["value_names"], json.dumps(list(names)).encode())


def read_value_names(state: h5py.Group) -> list[str]:
    """The names of a stream's value columns (the timestamp alone before any was recorded)."""
    try:
        return list(json.loads(state["value_names"][()].tobytes().decode()))
    except ValueError:  # nothing recorded yet (or cut short by a crash)
        return [TIMESTAMP]


def _append_bytes(ds: h5py.Dataset, blob: bytes) -> None:
    start = ds.shape[0]
    ds.resize((start + len(blob),))
    ds[start:] = np.frombuffer(blob, dtype=np.uint8)


def read_log(f: h5py.File) -> list[tuple[str, str]]:
    """The comments of the file's state log; a half-written last line (crash) is skipped."""
    entries = []
    for line in f[f"{STATE_GROUP}/log"][()].tobytes().decode(errors="replace").splitlines():
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


def stream_names(f: h5py.File) -> list[str]:
    """Names of the data groups that still have streaming state (unfinished or being written)."""
    streams = f.get(f"{STATE_GROUP}/streams")
    return list(streams.keys()) if isinstance(streams, h5py.Group) else []


def read_progress(state: h5py.Group) -> tuple[int, np.ndarray]:
    """(committed slots, indices of the dropped ones among them) from a state group."""
    committed = int(state["committed_slots"][()])
    dropped = state["dropped_frames"][()]
    return committed, dropped[dropped < committed]


def frame_grid(data: h5py.Dataset, committed: int) -> tuple[int, ...]:
    """The shape of a stream's frame slots: the scan, or (frames,) of a stack."""
    n_outer = data.ndim - int(data.parent.attrs["frame_ndim"])
    return (committed,) if data.maxshape[0] is None else data.shape[:n_outer]


def value_columns(group: h5py.Group, progress: Optional[tuple[int, np.ndarray]] = None
                  ) -> dict[str, np.ndarray]:
    """A data group's per-frame values as {name: array shaped like the frame grid}, NaN where
    no frame is counted (a finished group names its columns in an attribute, a streaming one in
    its state). ``progress``: (committed slots, dropped slots) of a reader's snapshot, so that
    the values match the frames it counts (default: the state's now)."""
    table = group.get(VALUES)
    if table is None:
        return {}
    finished = "columns" in table.attrs
    if finished and progress is None:
        return {name: table[..., i] for i, name in enumerate(json.loads(table.attrs["columns"]))}
    if finished:  # finished since the reader's snapshot: shown as the snapshot counted them
        names = json.loads(table.attrs["columns"])
    else:
        state = group.file[state_path(group.name.rsplit("/", 1)[-1])]
        names = read_value_names(state)
        progress = read_progress(state) if progress is None else progress
    committed, dropped = progress
    grid = (committed,) if table.maxshape[0] is None else table.shape[:-1]
    columns = table[:committed] if table.maxshape[0] is None else table[()]
    columns = columns[..., :len(names)].reshape(-1, len(names))
    columns[committed:] = np.nan  # written, not yet counted
    columns[dropped] = np.nan
    return {name: columns[:, i].reshape(grid) for i, name in enumerate(names)}


def finalize(f: h5py.File, closing_comment: str) -> dict[str, tuple[int, int]]:
    """Turn streaming state into finished EMD groups; returns {stream: (written, dropped)}.

    ``f`` must be open read-write without SWMR (``journal.finalize`` opens it so). A stack of frames
    (resizable axis 0) is trimmed to the committed slots; a scan keeps its shape, unwritten or
    dropped frames holding the fill value. The value table gets its column names (attribute
    ``columns``); a ``from_values`` dim takes its vector from it. The closing
    comment gets the counts appended.
    """
    counts = {name: _finalize_stream(f, name) for name in stream_names(f)}
    for key, text in read_log(f):
        add_comment(f, key, text)
    if len(counts) == 1:
        (written, dropped), = counts.values()
        summary = f"{written} frames written, {dropped} dropped"
    else:
        summary = "; ".join(f"/data/{n}: {w} frames written, {d} dropped"
                            for n, (w, d) in counts.items())
    add_comment(f, utc_key(), f"{closing_comment}; {summary}")
    del f[STATE_GROUP]
    f.flush()
    return counts


def _finalize_stream(f: h5py.File, name: str) -> tuple[int, int]:
    group = f[f"data/{name}"]
    state = f[state_path(name)]
    committed, dropped = read_progress(state)
    written = committed - dropped.size
    data, table = group["data"], group[VALUES]
    dims = dims_from_json(state.attrs["dims"])
    if data.maxshape[0] is None:
        data.resize((committed,) + data.shape[1:])
        table.resize((committed, MAX_VALUES))
    _blank_unrecorded(table, committed)
    names = read_value_names(state)
    table.attrs["columns"] = json.dumps(names)
    grid = frame_grid(data, committed)
    if data.maxshape[0] is None or dims[0].from_values:
        source = dims[0].from_values
        axis0 = dims[0].vector(grid[0]) if not source else \
            table[:, names.index(source)] if source in names else \
            np.full(grid[0], np.nan)  # no frame carried it: none was put
        _write_dim(group, 0, Dim(dims[0].name, dims[0].units, values=axis0), grid[0],
                   resizable=data.maxshape[0] is None)
    for reason, count in zip(RAW_REASONS, _raw_counts(data, state["raw_chunks"][()], committed)):
        group.attrs[f"raw_chunks_{reason}"] = np.int64(count)
    group.attrs["frames_written"] = np.int64(written)
    group.attrs["frames_dropped"] = np.int64(dropped.size)
    if dropped.size:
        group.attrs["dropped_frames"] = dropped
    group.attrs["complete"] = True
    counted.finalize(f, name, committed)
    return written, int(dropped.size)


def _raw_counts(data: h5py.Dataset, rows: np.ndarray, committed: int) -> list[int]:
    """Chunks stored raw, by reason, as the file holds them now: a partial chunk may have been
    written again compressed, and trimming a stack re-encodes its last chunk."""
    last = {int(first): int(why) for why, first in rows if first < committed}
    counts = [0] * len(RAW_REASONS)
    grid = data.shape[:data.ndim - int(data.parent.attrs["frame_ndim"])]
    for first, why in last.items():
        coord = tuple(int(i) for i in np.unravel_index(first, grid)) + (0,) * (data.ndim - len(grid))
        if data.id.get_chunk_info_by_coord(coord).filter_mask:
            counts[why] += 1
    return counts


def append_rows(ds: h5py.Dataset, rows) -> None:
    """Append rows to a resizable 2-D state dataset (safe in SWMR mode)."""
    start = ds.shape[0]
    ds.resize((start + len(rows), ds.shape[1]))
    ds[start:] = np.asarray(rows, dtype=ds.dtype)


def _blank_unrecorded(table: h5py.Dataset, committed: int) -> None:
    """NaN for value rows written after the last recorded flush (a killed writer's last chunks):
    their frames are not counted, so neither are their values."""
    grid = table.shape[:-1]
    per_row = math.prod(grid[1:])  # slots per index of axis 0
    first_row = committed // per_row if per_row else 0
    stamps = table[first_row:, ..., 0].reshape(-1)  # only the rows from the first uncounted slot
    skip = committed - first_row * per_row
    for slot in np.flatnonzero(~np.isnan(stamps[skip:])) + committed:
        table[np.unravel_index(slot, grid)] = np.nan
