"""emdstream's counted-data profile: what a counted stream's groups hold (see docs/counted.md).

A counted stream ``<name>`` is the EMD group ``/data/<name>`` whose ``data`` is the number of events
per frame slot (shaped like the scan; written like any scalar stream, so every EMD reader shows
it, live), with the events themselves in the subgroup ``events``: three 1-D chunked, compressed,
extendible datasets ``indptr`` (int64, slots + 1 entries, cumulative), ``indices`` (uint32, flat
pixel index ``ky * W + kx``) and ``counts`` (per-event values; removed at finalize when no put
gave any). The stream's ``committed_slots`` (``layout``) is the commit point: it is written after
the events of those slots are flushed, so ``indptr[:committed + 1]`` and the events it spans are
on disk. ``/data/<name>_sum`` is a plain EMD group with the summed pattern, written at finalize.
"""
from __future__ import annotations

from typing import Optional

import h5py
import numpy as np

PROFILE_ATTR = "emdstream_profile"  # on /data/<name>: "counted"
PROFILE = "counted"
EVENTS = "events"                   # subgroup of /data/<name>
FRAME_SHAPE_ATTR = "frame_shape"    # on the events group: the detector frame (H, W)
SUM_SUFFIX = "_sum"                 # /data/<name>_sum: the summed pattern
SUMMARY_OF_ATTR = "emdstream_summary_of"
EVENT_KEYS = ("indices", "counts", "indptr")  # datasets of the events group
INDEX_DTYPE = np.dtype(np.uint32)
INDPTR_DTYPE = np.dtype(np.int64)
DEFAULT_CHUNK_EVENTS = 1 << 18      # 1 MiB of uint32 indices per chunk
_READ_BLOCK = 1 << 22               # events summed per step at finalize


def is_counted(group: h5py.Group) -> bool:
    """Whether a ``/data/<name>`` group follows the counted-data profile."""
    value = group.attrs.get(PROFILE_ATTR)
    return (value.decode() if isinstance(value, bytes) else value) == PROFILE and EVENTS in group


def sum_name(name: str) -> str:
    return name + SUM_SUFFIX


def create(f: h5py.File, name: str, frame_shape: tuple[int, int], counts_dtype: np.dtype,
           options: dict, chunk_events: int = DEFAULT_CHUNK_EVENTS) -> None:
    """The events group of ``/data/<name>`` (which exists) and the summed-pattern group, before
    streaming (no object can be created in SWMR mode). ``options``: the codec's dataset keywords."""
    group = f[f"data/{name}"]
    group.attrs[PROFILE_ATTR] = PROFILE
    events = group.create_group(EVENTS)
    events.attrs[FRAME_SHAPE_ATTR] = np.asarray(frame_shape, np.int64)
    indptr = events.create_dataset("indptr", shape=(1,), maxshape=(None,), chunks=(chunk_events // 2,),
                                   dtype=INDPTR_DTYPE, **options)
    indptr[0] = 0
    for key, dtype in (("indices", INDEX_DTYPE), ("counts", np.dtype(counts_dtype))):
        events.create_dataset(key, shape=(0,), maxshape=(None,), chunks=(chunk_events,),
                              dtype=dtype, **options)
    summed = f.create_group(f"data/{sum_name(name)}")
    summed.attrs["emd_group_type"] = np.int32(1)
    summed.attrs["frame_ndim"] = np.int32(2)
    summed.attrs[SUMMARY_OF_ATTR] = name
    summed.attrs["complete"] = False  # written at finalize
    summed.create_dataset("data", shape=tuple(frame_shape), dtype=_sum_dtype(counts_dtype),
                          fillvalue=0)
    for axis, label in enumerate(("detector_y", "detector_x")):
        dim = summed.create_dataset(f"dim{axis + 1}", data=np.arange(frame_shape[axis], dtype=float))
        dim.attrs["name"] = label
        dim.attrs["units"] = "[px]"


def _sum_dtype(counts_dtype) -> np.dtype:
    return np.dtype(np.float64) if np.dtype(counts_dtype).kind == "f" else np.dtype(np.uint64)


def frame_shape(group: h5py.Group) -> tuple[int, int]:
    shape = group[EVENTS].attrs[FRAME_SHAPE_ATTR]
    return int(shape[0]), int(shape[1])


def has_counts(group: h5py.Group) -> bool:
    """Whether the events carry per-event counts (while streaming: whether any were written)."""
    counts = group[EVENTS].get("counts")
    return counts is not None and counts.shape[0] > 0


def read_rows(group: h5py.Group, start: int, stop: int
              ) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """(indptr from 0, indices, counts or None) of slots ``start .. stop - 1`` (committed ones)."""
    events = group[EVENTS]
    for ds in events.values():
        if getattr(ds, "id", None) is not None and events.file.swmr_mode:
            ds.refresh()
    indptr = events["indptr"][start:stop + 1].astype(np.int64)
    if indptr.size != stop - start + 1:
        raise ValueError(f"{group.name}: indptr holds {events['indptr'].shape[0] - 1} rows, "
                         f"{stop} asked for")
    first, last = int(indptr[0]), int(indptr[-1])
    indices = events["indices"][first:last]
    counts = events["counts"][first:last] if has_counts(group) else None
    return indptr - first, indices, counts


def finalize(f: h5py.File, name: str, committed: int) -> None:
    """Trim the events of a counted stream to its committed slots, drop an unused ``counts``
    and write the summed pattern (from the file's events, so ``recover`` gets it right too).
    Idempotent; a dense group is left alone."""
    group = f[f"data/{name}"]
    if not is_counted(group):
        return
    events = group[EVENTS]
    indptr = events["indptr"]
    if indptr.shape[0] > committed + 1:
        indptr.resize((committed + 1,))
    n_events = int(indptr[committed]) if committed else 0
    for key in ("indices", "counts"):
        ds = events.get(key)
        if ds is not None and ds.shape[0] > n_events:
            ds.resize((n_events,))
    if "counts" in events and n_events and events["counts"].shape[0] == 0:
        del events["counts"]
    summed = f.get(f"data/{sum_name(name)}")
    if summed is not None and not summed.attrs.get("complete", False):
        summed["data"][()] = summed_pattern(group, n_events).astype(summed["data"].dtype)
        summed.attrs["complete"] = True


def summed_pattern(group: h5py.Group, n_events: Optional[int] = None) -> np.ndarray:
    """The sum of every event (weighted by its count) over the first ``n_events`` events."""
    events = group[EVENTS]
    shape = frame_shape(group)
    size = shape[0] * shape[1]
    if n_events is None:
        n_events = int(events["indptr"][-1])
    weighted = has_counts(group)
    total = np.zeros(size, np.float64 if weighted else np.int64)
    for first in range(0, n_events, _READ_BLOCK):
        last = min(n_events, first + _READ_BLOCK)
        weights = events["counts"][first:last] if weighted else None
        total += np.bincount(events["indices"][first:last], weights=weights, minlength=size)[:size]
    return total.reshape(shape)
