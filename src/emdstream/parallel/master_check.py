"""Checking a master file against its parts: present, fitting, finished, counts up to date."""
from __future__ import annotations

import json
import math
import os

import h5py
import numpy as np

from emdstream.format.layout import MASTER_ATTR
from emdstream.format.parts import Part
from emdstream.parallel.part_file import read_part_file
from emdstream.parallel.vds import resolve


def master_groups(f: h5py.File) -> dict[str, list[str]]:
    """{stream: stored part paths} of a master file's virtual data groups (empty: no master)."""
    out = {}
    for name, group in (f["data"].items() if isinstance(f.get("data"), h5py.Group) else ()):
        if isinstance(group, h5py.Group) and MASTER_ATTR in group.attrs:
            out[name] = json.loads(_text(group.attrs[MASTER_ATTR]))
    return out


def is_master(path: str | os.PathLike) -> bool:
    """True for a file written by ``write_master`` (a reader should open it with SWMR while its
    parts are being written)."""
    from emdstream.safety.h5open import open_h5

    try:
        with open_h5(path) as f:
            return bool(master_groups(f))
    except (OSError, ValueError):
        return False


def part_status(master_path: str, name: str, rank: int, stored: str, master_attrs,
                frame_shape: tuple[int, ...], dtype) -> dict:
    """What one part of a master's stream holds now: {rank, path, present, fits, frames_written,
    frames_dropped, frames (its slots), finished, problem}."""
    n = int(master_attrs["part_count"])
    scan_shape = tuple(int(x) for x in master_attrs["scan_shape"])
    part = Part(rank, n, int(master_attrs["block_frames"]))
    slots = part.slots(math.prod(scan_shape)).size
    out = {"rank": rank, "path": stored, "present": False, "fits": False, "frames_written": 0,
           "frames_dropped": 0, "frames": slots, "finished": False, "problem": None}
    target = resolve(master_path, stored)
    if not os.path.exists(target):
        out["problem"] = (f"part {rank} ({stored}) is missing: its {slots} frames read as the fill "
                          f"value")
        return out
    out["present"] = True
    try:
        pf = read_part_file(target)
    except (ValueError, OSError) as exc:
        out["problem"] = f"part {rank} ({stored}) cannot be read as a part file: {exc}"
        return out
    s = pf.streams.get(name)
    if s is None:
        out["problem"] = f"part {rank} ({stored}) has no partitioned stream /data/{name}"
        return out
    mine = (s.part.rank, s.part.count, s.part.block_frames, s.scan_shape, s.frame_shape,
            str(s.dtype))
    want = (rank, n, part.block_frames, scan_shape, tuple(frame_shape), str(np.dtype(dtype)))
    if mine != want or s.n_local > slots:
        out["problem"] = (f"part {rank} ({stored}) does not fit: (rank, parts, block_frames, "
                          f"scan_shape, frame shape, dtype) is {mine}, the master maps {want}; "
                          f"it has {s.n_local} frame slots of {slots}")
        return out
    out.update(fits=True, frames_written=s.frames_written, frames_dropped=int(s.dropped_local.size),
               finished=s.finished)
    if not s.finished:
        from emdstream.safety.filelock import writer_holds

        how = ("its writer is still running" if writer_holds(target) else
               f"its writer stopped without closing: run emdstream recover {target}")
        out["problem"] = (f"part {rank} ({stored}) is unfinished ({s.frames_written} of {slots} "
                          f"frames so far): {how}")
    elif s.frames_written + s.dropped_local.size < slots:
        out["problem"] = (f"part {rank} ({stored}) is incomplete: it holds {s.frames_written} of its "
                          f"{slots} frames (the rest read as the fill value)")
    return out


def master_parts(path: str | os.PathLike) -> dict[str, list[dict]]:
    """{stream: [part_status of each part]} of a master file (empty for other files)."""
    from emdstream.safety.h5open import open_h5

    path = os.fspath(path)
    with open_h5(path) as f:
        groups = {}
        for name, stored in master_groups(f).items():
            group = f[f"data/{name}"]
            frame_ndim = int(group.attrs["frame_ndim"])
            shape = group["data"].shape
            groups[name] = (stored, dict(group.attrs), shape[len(shape) - frame_ndim:],
                            group["data"].dtype)
    return {name: [part_status(path, name, rank, s, attrs, frame_shape, dtype)
                   for rank, s in enumerate(stored)]
            for name, (stored, attrs, frame_shape, dtype) in groups.items()}


def verify_master(path: str | os.PathLike) -> list[str]:
    """Problems of a master file, one line each: parts missing, not fitting (shape, dtype, block
    layout), unfinished or incomplete, mappings not pointing at the listed parts, and counts that
    no longer match the parts (the master's are a snapshot). ``[]`` for a file that is no master."""
    from emdstream.safety.h5open import open_h5

    path = os.fspath(path)
    problems = []
    with open_h5(path) as f:  # a file being written (or left by a killed writer) needs SWMR
        groups = master_groups(f)
        details = {}
        for name in groups:
            group = f[f"data/{name}"]
            data = group["data"]
            details[name] = (dict(group.attrs), {m.file_name for m in data.virtual_sources()}
                             if data.is_virtual else None)
    statuses = master_parts(path) if groups else {}
    for name, stored in groups.items():
        attrs, sources = details[name]
        where = f"/data/{name}"
        if sources is None:
            problems.append(f"{where}/data: not a virtual dataset, though the group lists parts")
            continue
        if not sources <= set(stored):
            problems.append(f"{where}/data: maps files {sorted(sources - set(stored))} that the "
                            f"group does not list as parts")
        if len(stored) != int(attrs["part_count"]):
            problems.append(f"{where}: lists {len(stored)} parts, part_count is "
                            f"{int(attrs['part_count'])}")
            continue
        parts = statuses[name]
        problems += [f"{where}: {st['problem']}" for st in parts if st["problem"]]
        now = (sum(st["frames_written"] for st in parts), sum(st["frames_dropped"] for st in parts),
               all(st["finished"] for st in parts))
        recorded = (int(attrs.get("frames_written", -1)), int(attrs.get("frames_dropped", -1)),
                    bool(attrs.get("complete", False)))
        if recorded != now:
            problems.append(f"{where}: the master records {recorded[0]} frames written, "
                            f"{recorded[1]} dropped, complete={recorded[2]}; the parts now hold "
                            f"{now[0]}, {now[1]}, complete={now[2]} (its counts are a snapshot): "
                            f"run write_master again")
    return problems


def _text(value):
    return value.decode(errors="replace") if isinstance(value, bytes) else value
