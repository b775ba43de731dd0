"""emdstream's counted-data profile: what a counted stream's groups hold (see docs/counted.md).

A counted stream ``<name>`` is the EMD group ``/data/<name>`` whose ``data`` is the number of events
per frame slot (shaped like the scan; written like any scalar stream, so every EMD reader shows
it, live), with the events themselves in the subgroup ``events``: three 1-D chunked, compressed,
extendible datasets ``indptr`` (int64, slots + 1 entries, cumulative), ``indices`` (uint32, flat
pixel index ``ky * W + kx``) and ``counts`` (per-event values; removed at finalize when no put
gave any). The stream's ``committed_slots`` (``layout``) is the commit point: it is written after
the events of those slots are flushed, so ``indptr[:committed + 1]`` and the events it spans are
on disk. ``/data/summed_<name>`` is a plain EMD group with the summed pattern, written at finalize.
"""
from __future__ import annotations

from typing import Optional

import h5py
import numpy as np

PROFILE_ATTR = "emdstream_profile"  # on /data/<name>: "counted"
PROFILE = "counted"
EVENTS = "events"                   # subgroup of /data/<name>
FRAME_SHAPE_ATTR = "frame_shape"    # on the events group: the detector frame (H, W)
SUMMED_EVENTS = "summed_events"     # in the events group while streaming (removed at finalize)
SUM_PREFIX = "summed_"              # /data/summed_<name>: the summed pattern (a prefix: RosettaSciIO
                                    # stacks groups whose path starts with another group's path)
SUMMARY_OF_ATTR = "emdstream_summary_of"
MASTER_PARTS_ATTR = "master_parts"  # layout.MASTER_ATTR: a master's group (events in the parts)
EVENT_KEYS = ("indices", "counts", "indptr")  # datasets of the events group
INDEX_DTYPE = np.dtype(np.uint32)
INDPTR_DTYPE = np.dtype(np.int64)
DEFAULT_CHUNK_EVENTS = 1 << 19      # 2 MiB of uint32 indices per chunk
_READ_BLOCK = 1 << 22               # events summed per step at finalize


def is_counted(group: h5py.Group) -> bool:
    """Whether a ``/data/<name>`` group follows the counted-data profile."""
    value = group.attrs.get(PROFILE_ATTR)
    return (value.decode() if isinstance(value, bytes) else value) == PROFILE and EVENTS in group


def sum_name(name: str) -> str:
    """The summed-pattern group of counted stream ``name``."""
    return SUM_PREFIX + name


def create(f: h5py.File, name: str, frame_shape: tuple[int, int], counts_dtype: np.dtype,
           options: dict, chunk_events: int = DEFAULT_CHUNK_EVENTS) -> None:
    """The events group of ``/data/<name>`` (which exists) and the summed-pattern group, before
    streaming (no object can be created in SWMR mode). ``options``: the codec's dataset keywords."""
    group = f[f"data/{name}"]
    group.attrs[PROFILE_ATTR] = PROFILE
    events = group.create_group(EVENTS)
    events.attrs[FRAME_SHAPE_ATTR] = np.asarray(frame_shape, np.int64)
    sizes = chunk_lengths(chunk_events)
    dtypes = {"indices": INDEX_DTYPE, "counts": np.dtype(counts_dtype), "indptr": INDPTR_DTYPE}
    for key in EVENT_KEYS:
        events.create_dataset(key, shape=(0,), maxshape=(None,), chunks=(sizes[key],),
                              dtype=dtypes[key], **options)
    events.create_dataset(SUMMED_EVENTS, data=np.int64(-1))  # events the summed pattern covers
    create_summary(f["data"], name, frame_shape, sum_dtype(counts_dtype), complete=False)


def create_summary(data: h5py.Group, name: str, frame_shape: tuple[int, int], dtype,
                   complete: bool, values: Optional[np.ndarray] = None) -> h5py.Group:
    """The EMD group ``/data/summed_<name>`` of the summed pattern (``values``, or zeros to be
    written at finalize), with its detector dims."""
    summed = data.create_group(sum_name(name))
    summed.attrs["emd_group_type"] = np.int32(1)
    summed.attrs["frame_ndim"] = np.int32(2)
    summed.attrs[SUMMARY_OF_ATTR] = name
    summed.attrs["complete"] = complete
    if values is not None:
        summed.attrs["frames_written"], summed.attrs["frames_dropped"] = np.int64(1), np.int64(0)
    if values is None:
        summed.create_dataset("data", shape=tuple(frame_shape), dtype=dtype, fillvalue=0)
    else:
        summed.create_dataset("data", data=np.asarray(values, dtype).reshape(frame_shape))
    for axis, label in enumerate(("detector_y", "detector_x")):
        dim = summed.create_dataset(f"dim{axis + 1}", data=np.arange(frame_shape[axis], dtype=float))
        dim.attrs["name"] = label
        dim.attrs["units"] = "[px]"
    return summed


def sum_dtype(counts_dtype) -> np.dtype:
    """The summed pattern's dtype for events with counts of ``counts_dtype`` (None: no counts):
    float64 for float counts, int64 for signed ones (negative sums), else uint64."""
    kind = "u" if counts_dtype is None else np.dtype(counts_dtype).kind
    return np.dtype({"f": np.float64, "i": np.int64}.get(kind, np.uint64))


def dense_dtype(counts_dtype) -> np.dtype:
    """A dense frame's dtype for events with counts of ``counts_dtype`` (None: no counts): the
    events of a pixel add up, so integer counts get at least 32 bits (uint8 counts of 200 and 100
    at one pixel are 300); no counts: uint16, one per event."""
    if counts_dtype is None:
        return np.dtype(np.uint16)
    dtype = np.dtype(counts_dtype)
    return dtype if dtype.kind == "f" else np.promote_types(dtype, "u4" if dtype.kind == "u" else "i4")


def chunk_lengths(chunk_events: int) -> dict[str, int]:
    """Elements per chunk of each events dataset (``indptr``'s int64 chunks as many bytes)."""
    return {"indices": chunk_events, "counts": chunk_events, "indptr": max(1, chunk_events // 2)}


def frame_shape(group: h5py.Group) -> tuple[int, int]:
    shape = group[EVENTS].attrs[FRAME_SHAPE_ATTR]
    return int(shape[0]), int(shape[1])


def has_counts(group: h5py.Group) -> bool:
    """Whether the events carry per-event counts (while streaming: whether any were written)."""
    counts = group[EVENTS].get("counts")
    return counts is not None and counts.shape[0] > 0


def _fresh(events: h5py.Group) -> None:
    """A live (SWMR) reader sees the datasets' current extents."""
    if events.file.swmr_mode:
        for ds in events.values():
            if isinstance(ds, h5py.Dataset):
                ds.refresh()


def events_before(group: h5py.Group, slot: int) -> int:
    """How many events the slots below ``slot`` hold (``indptr[slot]``; 0 for slot 0)."""
    if slot <= 0:
        return 0
    events = group[EVENTS]
    _fresh(events)
    return int(events["indptr"][slot])


def read_rows(group: h5py.Group, start: int, stop: int
              ) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """(indptr from 0, indices, counts or None) of slots ``start .. stop - 1`` (committed ones)."""
    events = group[EVENTS]
    _fresh(events)
    if stop == start:  # (nothing flushed yet: indptr may still be empty)
        return np.zeros(1, np.int64), np.zeros(0, INDEX_DTYPE), None
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
    if committed == 0 and indptr.shape[0] == 0:  # killed before the first flush
        indptr.resize((1,))
        indptr[0] = 0
    if indptr.shape[0] < committed + 1:
        raise ValueError(f"{group.name}: {committed} slots committed but indptr holds only "
                         f"{max(0, indptr.shape[0] - 1)}")
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
    covered = int(events[SUMMED_EVENTS][()]) if SUMMED_EVENTS in events else None
    if summed is not None and not summed.attrs.get("complete", False):
        if covered != n_events:  # the writer did not finish it (killed): sum the file's events
            summed["data"][()] = summed_pattern(group, n_events).astype(summed["data"].dtype)
        summed.attrs["complete"] = True
        summed.attrs["frames_written"], summed.attrs["frames_dropped"] = np.int64(1), np.int64(0)
    if SUMMED_EVENTS in events:
        del events[SUMMED_EVENTS]


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


def _check_csr(events: h5py.Group, committed: int, size: int) -> tuple[list[str], np.ndarray]:
    """(problems, indptr) of one CSR triple of ``committed`` rows in a frame of ``size`` pixels."""
    where = events.name
    indptr = events["indptr"][()]
    problems = []
    if indptr.size != committed + 1:
        problems.append(f"{where}/indptr: {indptr.size} entries for {committed} frame slots")
    if indptr.size and (indptr[0] != 0 or np.any(np.diff(indptr) < 0)):
        problems.append(f"{where}/indptr: must start at 0 and never decrease")
    n = int(indptr[-1]) if indptr.size else 0
    for key in ("indices", "counts"):
        if key in events and events[key].shape[0] != n:
            problems.append(f"{where}/{key}: {events[key].shape[0]} entries, indptr says {n}")
    for first in range(0, n, _READ_BLOCK):
        block = events["indices"][first:min(n, first + _READ_BLOCK)]
        if block.size and int(block.max()) >= size:
            problems.append(f"{where}/indices: index {int(block.max())} outside the frame")
            break
    return problems, indptr


def check(group: h5py.Group) -> list[str]:
    """Problems of a finished counted group's events, one line each (``emdstream verify``):
    ``indptr`` from 0, not decreasing, one entry per slot and one more, ending at the number of
    events; every index inside the frame; ``counts`` one per event; the counts image and the
    summed pattern what the events say."""
    if not is_counted(group):
        return []
    events = group[EVENTS]
    size = frame_shape(group)[0] * frame_shape(group)[1]
    if MASTER_PARTS_ATTR in group.attrs:  # a master: each part's events as mapped (the parts
        return [p for sub in events.values()  # themselves are checked by their own verify)
                for p in _check_csr(sub, int(sub.attrs.get("slots", 0)), size)[0]]
    committed = int(group.attrs.get("frames_written", 0)) + int(group.attrs.get("frames_dropped", 0))
    problems, indptr = _check_csr(events, committed, size)
    if problems:
        return problems
    image = group["data"][()].reshape(-1)[:committed]
    lengths = np.diff(indptr)[:image.size]
    if not np.array_equal(image[:lengths.size], lengths):
        problems.append(f"{group.name}/data: the counts image differs from the events per slot")
    summed = group.parent.get(sum_name(group.name.rsplit("/", 1)[-1]))
    n = int(indptr[-1]) if indptr.size else 0
    if summed is not None and not np.array_equal(summed["data"][()], summed_pattern(group, n)):
        problems.append(f"{summed.name}/data: the summed pattern differs from the events' sum")
    return problems
