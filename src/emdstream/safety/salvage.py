"""Rebuilding a crashed file from its chunk log (``chunklog``), never reading HDF5's metadata.

The skeleton the log carries is written to ``<path>.emdstream-salvage``; every chunk version the
log names is read from the crashed file at its recorded offset and, if its bytes match their
CRC-32, written into the new file as it is (the newest matching version of each chunk wins); the
streaming state comes from the log's records. A stream counts the slots below the first slot that
no matching chunk (data and values) holds and that was not dropped: never more than the log's own
count, never a frame whose bytes did not survive. The new file is finalized (``journal``) and
fsynced, its fingerprint appended to the log, and it is renamed over the crashed one; then the log
is removed. A kill at any moment leaves the crashed file and its log (salvaged again), or the new
file and a log naming it (which ``recover`` removes).
"""
from __future__ import annotations

import os

import h5py
import numpy as np

from emdstream.format import layout
from emdstream.safety import chunklog, journal
from emdstream.safety.salvage_events import restore_events
from emdstream.safety.superblock import clear_consistency_flags

SUFFIX = ".emdstream-salvage"


def salvage(path: str, contents: chunklog.LogContents,
            closing_comment: str) -> dict[str, tuple[int, int]]:
    """Replace the file at ``path`` by the one its chunk log describes; returns {stream:
    (frames written, frames dropped)}."""
    tmp = path + SUFFIX
    for leftover in (tmp, journal.journal_path(tmp)):
        if os.path.exists(leftover):
            os.remove(leftover)
    with open(tmp, "wb") as fh:
        fh.write(contents.image)
    clear_consistency_flags(tmp)
    table = contents.chunks
    with open(path, "rb") as src, h5py.File(tmp, "r+", libver=layout.LIBVER) as f:
        for name in contents.streams:
            state = contents.state.get(name, {})
            group = f[f"data/{name}"]
            covered = [_restore(group["data"], table.newest_first(name, "data"), src),
                       _restore(group[layout.VALUES], table.newest_first(name, "values"), src)]
            dropped = state.get("dropped", np.zeros(0, np.int64))  # sorted
            count = _count(int(state.get("committed", 0)), dropped, covered)
            count = restore_events(group, lambda ds, key, name=name: _restore(  # a counted
                ds, table.newest_first(name, key), src), count,  # stream's events
                lambda key, name=name: table.has(name, key))
            _write_state(f[layout.state_path(name)], count, dropped, state)
        layout.append_log(f, [(k, t) for k, t in contents.comments])
    counts = journal.finalize(tmp, closing_comment)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    chunklog.mark_salvaged(path, tmp)  # a log left beside the new file must not be applied again
    os.replace(tmp, path)
    chunklog.fsync_dir(path)
    chunklog.remove(path)
    return counts


def _restore(ds: h5py.Dataset, versions, src) -> list[tuple[int, int]]:
    """Write the newest intact version of each chunk into ``ds`` (``versions``: from
    ``ChunkTable.newest_first``); the slot ranges they hold."""
    covered, restored = [], None
    for coord, offset, size, mask, crc, checked, first, end in versions:
        if coord == restored:  # an older version of a chunk already written back
            continue
        payload = os.pread(src.fileno(), size, offset)
        if len(payload) == size and chunklog.crc(payload, checked) == crc:
            _fit(ds, coord)
            ds.id.write_direct_chunk(coord, payload, filter_mask=mask)
            covered.append((first, end))
            restored = coord
    return covered


def _fit(ds: h5py.Dataset, coord: tuple) -> None:
    """Grow a resizable axis 0 to hold the chunk at ``coord``."""
    need = coord[0] + ds.chunks[0]
    if ds.maxshape[0] is None and ds.shape[0] < need:
        ds.resize((need,) + ds.shape[1:])


def _count(committed: int, dropped: np.ndarray, covered: list[list[tuple[int, int]]]) -> int:
    """The slots below the first one that is neither dropped nor held by every dataset."""
    ok = np.ones(committed, dtype=bool)
    for ranges in covered:
        held = np.zeros(committed, dtype=bool)
        for first, end in ranges:
            held[first:min(end, committed)] = True
        held[dropped[dropped < committed]] = True
        ok &= held
    missing = np.flatnonzero(~ok)
    return int(missing[0]) if missing.size else committed


def _write_state(state: h5py.Group, count: int, dropped: np.ndarray, logged: dict) -> None:
    state["committed_slots"][()] = count
    ds = state["dropped_frames"]
    ds.resize((len(dropped),))
    ds[:] = dropped
    if logged.get("names"):
        layout.record_value_names(state, logged["names"])
    if logged.get("raw"):
        layout.append_rows(state["raw_chunks"], logged["raw"])
