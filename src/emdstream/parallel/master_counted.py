"""A master file's counted streams (``format.counted``): the events of every part, and one summed
pattern (``write_master`` calls ``write_events`` and ``write_summed``).

A counted stream's counts image is joined like any stream's data (one virtual dataset over the
parts). Its events cannot be: each part's ``indptr`` starts again at 0 and its slots are its
blocks' slots, interleaved with the other parts' in the scan, so no one CSR triple in scan order
exists without copying the events. The master's ``/data/<name>`` therefore carries the profile
attribute and an ``events`` group (``frame_shape``) holding, per present part ``r``, the subgroup
``part<r>`` with virtual datasets ``indptr``, ``indices`` (and ``counts``) over that part's own:
a valid CSR of the part's committed local slots *as of the master's writing* (``slots`` attribute).
Scan slot ``s`` is part ``r = (s // B) % n``'s local slot ``(s // B // n) * B + s % B``
(``B = block_frames``, ``n = part_count``, both on the group). emdstream's reader
(``read.counted_parts``) does not use those snapshots: it reads the part files themselves, so it
sees each part's events as they are committed, like the counts image does.

``/data/summed_<name>`` of the master is the parts' summed patterns added up (``complete`` once
every part is finished), in place of one group per part.
"""
from __future__ import annotations

import h5py
import numpy as np

from emdstream.format import counted as profile
from emdstream.parallel.vds import Mapping, create_virtual
from emdstream.read.counted_parts import committed_slots
from emdstream.safety.h5open import open_h5


def is_counted_part(path: str, name: str) -> bool:
    """Whether ``name`` of the part file ``path`` is a counted stream."""
    with open_h5(path) as f:
        group = f.get(f"data/{name}")
        return isinstance(group, h5py.Group) and profile.is_counted(group)


def write_events(group: h5py.Group, name: str, parts: list[tuple[int, str, str]]) -> None:
    """Mark the master's ``group`` counted and map each part's committed events.
    ``parts``: (rank, absolute path, name stored in the master) of the present parts."""
    group.attrs[profile.PROFILE_ATTR] = profile.PROFILE
    events = group.create_group(profile.EVENTS)
    for rank, path, stored in parts:
        with open_h5(path) as f:
            source = f[f"data/{name}"]
            events.attrs[profile.FRAME_SHAPE_ATTR] = np.asarray(profile.frame_shape(source),
                                                               np.int64)
            slots = committed_slots(f, name)
            indptr = source[profile.EVENTS]["indptr"]
            n_events = int(indptr[slots]) if slots and indptr.shape[0] > slots else 0
            extents = {"indptr": slots + 1 if indptr.shape[0] else 0, "indices": n_events,
                       "counts": n_events if profile.has_counts(source) else None}
            sub = events.create_group(f"part{rank}")
            sub.attrs["slots"] = np.int64(slots if indptr.shape[0] else 0)
            for key, length in extents.items():
                ds = source[profile.EVENTS].get(key)
                if ds is None or length is None:
                    continue
                if not length:  # nothing committed: a plain (empty) CSR, indptr [0]
                    sub.create_dataset(key, data=np.zeros(1 if key == "indptr" else 0, ds.dtype))
                    continue
                whole = [Mapping(((0, 1, 1, length),), (0, 1, 1, length))]
                create_virtual(sub, key, (length,), ds.dtype, 0,
                               [(stored, f"/data/{name}/{profile.EVENTS}/{key}", (length,), whole)])


def write_summed(data: h5py.Group, name: str, parts: list[tuple[int, str, str]],
                 complete: bool) -> None:
    """``/data/summed_<name>`` of the master: the present parts' summed patterns added up (each
    part's own group once finished, else summed from its committed events)."""
    total = None
    for _, path, _ in parts:
        with open_h5(path) as f:
            source = f[f"data/{name}"]
            summed = f.get(f"data/{profile.sum_name(name)}")
            if summed is not None and summed.attrs.get("complete", False):
                part = summed["data"][()]
            else:
                slots = committed_slots(f, name)
                part = profile.summed_pattern(source, profile.events_before(source, slots))
            counts = source[profile.EVENTS].get("counts")  # one dtype, finished or not
            part = part.astype(profile.sum_dtype(None if counts is None else counts.dtype))
            total = part if total is None else total + part
            shape = profile.frame_shape(source)
    if total is None:
        return
    profile.create_summary(data, name, shape, total.dtype, complete, total.reshape(shape))
