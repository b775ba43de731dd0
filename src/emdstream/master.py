"""Master files: one EMD v0.2 file whose data are HDF5 virtual datasets (VDS) over part files.

Each of ``n`` writers (``EMDWriter(..., part=(rank, n), block_frames=B)``) writes the frames of its
blocks as a stack (see ``parts``). ``write_master`` maps every part's frames to their place in the
whole scan: for each stream a virtual dataset of shape ``scan_shape + frame_shape`` whose mappings
select each part's blocks (strided hyperslabs where the block pattern is regular, row pieces where
blocks cross scan rows irregularly), with the source files named by paths relative to the master's
directory (HDF5 resolves a relative source name against the directory of the file holding the VDS,
after ``HDF5_VDS_PREFIX``), so the set of files may be moved together. The per-frame value tables
are mapped the same way, dims come from the parts' whole-scan dims, metadata and comments are merged.

The master's counts (``frames_written``, ``frames_dropped``, ``complete``) are a snapshot of the
parts when it was written: it may be written before or while the parts are written, and readers see
each part's frames as they land (a reader must open the master with SWMR, ``h5py.File(master, "r",
swmr=True)``: HDF5 opens the source files with the master's access flags, and without SWMR a part
still being written cannot be opened, so its frames read as the fill value). ``verify_master``
recomputes the counts from the parts; ``write_master`` again, once they are finished, records the
final ones.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import Optional

import h5py
import numpy as np
from h5py import h5d, h5p, h5s, h5t

from . import layout
from .dims import Dim
from .layout import MASTER_ATTR
from .metadata import METADATA_GROUPS, unique_key, utc_key
from .parts import Part, read_part

PARTIAL_SUFFIX = ".emdstream-partial"


# --- what a part file holds ------------------------------------------------------------------
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
    from .reader import EMDDataset, check_path, open_h5, require_emd_like

    path = os.path.abspath(os.fspath(path))
    check_path(path)
    try:
        f = open_h5(path)
    except OSError as exc:
        from .reader import one_line
        raise ValueError(f"HDF5 cannot open part file {path}: {one_line(exc)}") from None
    with f:
        require_emd_like(f)
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
                out.others[name] = OtherStream(
                    name, data.shape, data.dtype, data.fillvalue,
                    [(str(d.name), str(d.units), np.asarray(d.values)) for d in ds.dims],
                    {k: group.attrs[k] for k in ("frames_written", "frames_dropped", "complete",
                                                 "frame_ndim", "dropped_frames")
                     if k in group.attrs})
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


# --- where each part's frames go: hyperslab mappings --------------------------------------------
@dataclass(frozen=True)
class Mapping:
    """One VDS mapping of a part: a hyperslab of the scan axes (start, count, stride, block per
    axis) and the matching hyperslab of the part's stack along axis 0."""

    scan: tuple[tuple[int, int, int, int], ...]
    local: tuple[int, int, int, int]

    @property
    def frames(self) -> int:
        return self.local[1] * self.local[3]


def part_mappings(part: Part, scan_shape: Sequence[int]) -> list[Mapping]:
    """The mappings that place ``part``'s stack (its blocks' frames, in slot order) in the scan.

    Blocks are cut into row pieces (a block may cross scan rows); pieces of a row with the same
    length at a constant step become one strided hyperslab of the last scan axis, and rows with the
    same pattern at a constant step one strided hyperslab of the row axis: a regular layout (rows a
    multiple of ``n * block_frames``, or blocks of whole rows) takes one mapping per part."""
    scan_shape = tuple(int(n) for n in scan_shape)
    total = math.prod(scan_shape)
    width = scan_shape[-1]
    pieces: list[list[int]] = []  # [row, x0, length, local0]
    local = 0
    for start in range(part.rank * part.block_frames, total, part.count * part.block_frames):
        slot, end = start, min(start + part.block_frames, total)
        while slot < end:
            row, x0 = divmod(slot, width)
            n = min(width - x0, end - slot)
            if pieces and pieces[-1][0] == row and pieces[-1][1] + pieces[-1][2] == x0:
                pieces[-1][2] += n  # adjoins the previous piece (a single part: whole rows)
            else:
                pieces.append([row, x0, n, local])
            local += n
            slot += n
    # within a row: equal pieces at a constant step -> (x0, step, count, length)
    row_patterns = []  # (row, (x0, sx, cx, length), local0)
    for row, items in groupby(pieces, key=lambda p: p[0]):
        items = list(items)
        i = 0
        while i < len(items):
            _, x0, length, local0 = items[i]
            cx, sx, j = 1, length, i + 1
            if j < len(items) and items[j][2] == length:
                sx = items[j][1] - x0
                while j < len(items) and items[j][2] == length and items[j][1] == x0 + cx * sx:
                    cx += 1
                    j += 1
            row_patterns.append((row, (x0, sx, cx, length), local0))
            i = j
    if len(scan_shape) == 1:
        return [Mapping(((x0, cx, sx, length),), (local0, 1, cx * length, cx * length))
                for _, (x0, sx, cx, length), local0 in row_patterns]
    rows_per_slab = scan_shape[-2]
    groups: dict[tuple, list[tuple[int, int]]] = {}
    for row, pattern, local0 in row_patterns:
        outer, y = divmod(row, rows_per_slab)
        groups.setdefault((outer, pattern), []).append((y, local0))
    mappings = []
    for (outer, pattern), rows in groups.items():
        x0, sx, cx, length = pattern
        per_row = cx * length
        runs = []  # consecutive rows with contiguous frames: [y0, rows, local0]
        for y, local0 in rows:
            if runs and runs[-1][0] + runs[-1][1] == y and runs[-1][2] + runs[-1][1] * per_row == local0:
                runs[-1][1] += 1
            else:
                runs.append([y, 1, local0])
        i = 0
        while i < len(runs):  # runs of the same height at a constant step
            y0, by, l0 = runs[i]
            cy, sy, sl, j = 1, by, by * per_row, i + 1
            if j < len(runs) and runs[j][1] == by:
                sy, sl = runs[j][0] - y0, runs[j][2] - l0
                while (j < len(runs) and runs[j][1] == by and runs[j][0] == y0 + cy * sy
                       and runs[j][2] == l0 + cy * sl):
                    cy += 1
                    j += 1
            outer_index = np.unravel_index(outer, scan_shape[:-2]) if len(scan_shape) > 2 else ()
            scan = tuple((int(o), 1, 1, 1) for o in outer_index) + (
                (y0, cy, sy, by), (x0, cx, sx, length))
            mappings.append(Mapping(scan, (l0, cy, sl, by * per_row)))
            i = j
    return mappings


def _space(shape, mapping_axes) -> h5s.SpaceID:
    """A dataspace of ``shape`` selecting the hyperslab given for its leading axes (the rest whole)."""
    space = h5s.create_simple(tuple(shape))
    axes = list(mapping_axes) + [(0, 1, 1, n) for n in shape[len(mapping_axes):]]
    start, count, stride, block = (tuple(a[i] for a in axes) for i in range(4))
    stride = tuple(s if c > 1 else b for s, c, b in zip(stride, count, block))  # count 1: unused
    space.select_hyperslab(start, count, stride, block)
    return space


def _create_virtual(group: h5py.Group, name: str, shape, dtype, fillvalue,
                    sources: Sequence[tuple[str, str, tuple, list[Mapping]]]) -> h5py.Dataset:
    """A virtual dataset; ``sources``: (file name, dataset path, source shape, mappings)."""
    dcpl = h5p.create(h5p.DATASET_CREATE)
    dcpl.set_layout(h5d.VIRTUAL)  # before set_virtual: setting the layout drops the mappings
    dcpl.set_fill_value(np.array(fillvalue, dtype=dtype))
    for file_name, dset, source_shape, mappings in sources:
        for m in mappings:
            dcpl.set_virtual(_space(shape, m.scan), file_name.encode(), dset.encode(),
                             _space(source_shape, [m.local]))
    dsid = h5d.create(group.id, name.encode(), h5t.py_create(np.dtype(dtype)),
                      h5s.create_simple(tuple(shape)), dcpl=dcpl)
    return h5py.Dataset(dsid)


def _relative(part_path: str, master_dir: str) -> str:
    """The name HDF5 stores for a source file: relative to the master's directory."""
    try:
        rel = os.path.relpath(part_path, master_dir)
    except ValueError:  # another drive (Windows): no relative path exists
        return part_path
    return rel if rel.startswith("..") else f".{os.sep}{rel}"


def resolve(master_path: str, stored: str) -> str:
    """The part file a stored (relative) source name means, as HDF5 finds it."""
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(master_path)), stored))


# --- writing the master ----------------------------------------------------------------------------
@dataclass
class MasterReport:
    path: str
    parts: list[str]                 # as stored (relative to the master)
    missing: list[str]
    unfinished: list[str]
    frames_written: dict[str, int]
    frames_total: dict[str, int]

    @property
    def complete(self) -> bool:
        return not self.missing and not self.unfinished and all(
            self.frames_written[n] >= self.frames_total[n] for n in self.frames_written)

    def __str__(self) -> str:
        counts = ", ".join(f"/data/{n}: {self.frames_written[n]} of {self.frames_total[n]} frames"
                           for n in self.frames_written)
        extra = "".join([f"; missing: {', '.join(self.missing)}" if self.missing else "",
                         f"; unfinished: {', '.join(self.unfinished)}" if self.unfinished else ""])
        return f"{self.path}: master of {len(self.parts)} parts ({counts}){extra}"


def write_master(path: str | os.PathLike, parts: Sequence[str | os.PathLike],
                 overwrite: bool = False) -> MasterReport:
    """Write the EMD file that maps the part files ``parts`` into one scan (atomically: a temporary
    file renamed over ``path``).

    ``parts``: the part files, one per rank (in rank order if some do not exist yet). At least one
    must exist (any part holds the layout of the whole scan); it may still be being written. Missing
    parts are mapped all the same (their frames read as the fill value until they exist) and reported
    by ``verify``. Returns a ``MasterReport`` (the counts are a snapshot of the parts now).
    ValueError when the parts do not belong together.
    """
    path = os.fspath(path)
    master_dir = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(master_dir):
        raise FileNotFoundError(f"cannot create {path}: directory {master_dir} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a directory; give a file name")
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it")
    paths = [os.path.abspath(os.fspath(p)) for p in parts]
    if not paths:
        raise ValueError("write_master needs the list of part files")
    if len(set(paths)) != len(paths):
        raise ValueError("write_master: a part file is listed twice")
    if os.path.abspath(path) in paths:
        raise ValueError(f"write_master: {path} is one of the parts")
    found = {p: read_part_file(p) for p in paths if os.path.exists(p)}
    if not found:
        raise FileNotFoundError(f"none of the {len(paths)} part files exists (first: {paths[0]}); "
                                f"a master needs at least one to know the scan's layout")
    by_rank = _order(paths, found)
    template = _check_together(by_rank, found)
    tmp = f"{path}{PARTIAL_SUFFIX}"
    try:
        report = _write(tmp, path, master_dir, by_rank, found, template)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return report


def _order(paths: list[str], found: dict[str, PartFile]) -> list[str]:
    """The part paths in rank order."""
    ranks = {p: pf.rank for p, pf in found.items()}
    counts = {pf.count for pf in found.values()}
    if len(counts) > 1:
        raise ValueError(f"the part files disagree on the number of parts: {sorted(counts)}")
    n = counts.pop()
    if n != len(paths):
        raise ValueError(f"the part files are parts of {n}, but {len(paths)} files were given")
    if len(set(ranks.values())) != len(ranks):
        seen: dict[int, str] = {}
        for p, r in ranks.items():
            if r in seen:
                raise ValueError(f"{seen[r]} and {p} are both part {r}")
            seen[r] = p
    if len(found) == len(paths):
        return sorted(paths, key=ranks.__getitem__)
    for i, p in enumerate(paths):  # with missing files, the list order is the rank order
        if p in ranks and ranks[p] != i:
            raise ValueError(f"{p} is part {ranks[p]} but listed at position {i}; with part files "
                             f"missing, list them in rank order")
    return paths


def _check_together(by_rank: list[str], found: dict[str, PartFile]) -> PartFile:
    """The first present part, after checking that every present part has the same layout."""
    present = [found[p] for p in by_rank if p in found]
    template = present[0]
    for pf in present[1:]:
        if set(pf.streams) != set(template.streams):
            raise ValueError(f"{pf.path} has streams {sorted(pf.streams)}, {template.path} has "
                             f"{sorted(template.streams)}")
        for name, s in pf.streams.items():
            t = template.streams[name]
            for label, a, b in (("block_frames", s.part.block_frames, t.part.block_frames),
                                ("scan_shape", s.scan_shape, t.scan_shape),
                                ("frame shape", s.frame_shape, t.frame_shape),
                                ("dtype", s.dtype, t.dtype),
                                ("dims", [d.to_json() for d in s.dims], [d.to_json() for d in t.dims])):
                if a != b:
                    raise ValueError(f"/data/{name}: {pf.path} has {label} {a}, {template.path} has {b}: "
                                     f"not parts of one scan")
    for pf in present:
        for name, s in pf.streams.items():
            want = s.part.slots(math.prod(s.scan_shape)).size
            if s.n_local > want:  # fewer: a part stopped early is trimmed to its frames
                raise ValueError(f"{pf.path}: /data/{name} holds {s.n_local} frame slots, part "
                                 f"{s.part.rank} of {s.part.count} has only {want}")
    return template


def _write(tmp: str, path: str, master_dir: str, by_rank: list[str], found: dict[str, PartFile],
           template: PartFile) -> MasterReport:
    stored = [_relative(p, master_dir) for p in by_rank]
    missing = [s for p, s in zip(by_rank, stored) if p not in found]
    unfinished = [s for p, s in zip(by_rank, stored)
                  if p in found and not all(st.finished for st in found[p].streams.values())]
    written_counts, totals = {}, {}
    with h5py.File(tmp, "w", libver=layout.LIBVER) as f:
        f.attrs["version_major"] = 0
        f.attrs["version_minor"] = 2
        conflicts = _merge_metadata(f, [found[p] for p in by_rank if p in found])
        data = f.create_group("data")
        for name, t in template.streams.items():
            written_counts[name], totals[name] = _write_stream(
                data, name, t, by_rank, stored, found)
        for p, s in zip(by_rank, stored):
            if p in found:
                for other in found[p].others.values():
                    _write_other(data, other, found[p].rank, s)
        comments = f.create_group("comments")
        for p in by_rank:
            if p in found:
                pf = found[p]
                for key, text in pf.comments:
                    comments.attrs[unique_key(key, comments.attrs)] = f"[part {pf.rank}] {text}"
        summary = "; ".join(f"/data/{n}: {written_counts[n]} of {totals[n]} frames written"
                            for n in written_counts)
        text = (f"emdstream: master of {len(stored)} part files ({', '.join(stored)}); {summary} "
                f"(a snapshot: `emdstream verify` recounts)")
        if missing:
            text += f"; missing: {', '.join(missing)}"
        if unfinished:
            text += f"; unfinished: {', '.join(unfinished)}"
        if conflicts:
            text += "; metadata differing between parts (part 0's kept): " + ", ".join(conflicts)
        comments.attrs[unique_key(utc_key(), comments.attrs)] = text
    return MasterReport(path, stored, missing, unfinished, written_counts, totals)


def _write_stream(data: h5py.Group, name: str, t: PartStream, by_rank: list[str],
                  stored: list[str], found: dict[str, PartFile]) -> tuple[int, int]:
    group = data.create_group(name)
    scan_shape, n = t.scan_shape, t.part.count
    shape = scan_shape + t.frame_shape
    total = math.prod(scan_shape)
    parts = [Part(r, n, t.part.block_frames) for r in range(n)]
    sources, value_sources = [], []
    for part, s in zip(parts, stored):
        mappings = part_mappings(part, scan_shape)
        n_local = part.slots(total).size
        sources.append((s, f"/data/{name}/data", (n_local,) + t.frame_shape, mappings))
        value_sources.append((s, f"/data/{name}/{layout.VALUES}", (n_local, _n_values()), mappings))
    _create_virtual(group, "data", shape, t.dtype, t.fillvalue, sources)
    written = dropped = 0
    dropped_slots = []
    columns = {tuple(found[p].streams[name].columns or ()) for p in by_rank if p in found}
    for part, p in zip(parts, by_rank):
        if p in found:
            ps = found[p].streams[name]
            written += ps.frames_written
            dropped_slots.append(part.slots(total)[ps.dropped_local])
    dropped_slots = np.sort(np.concatenate(dropped_slots)) if dropped_slots else np.zeros(0, np.int64)
    dropped = int(dropped_slots.size)
    for axis, dim in enumerate(t.dims):
        vec = group.create_dataset(f"dim{axis + 1}", data=dim.vector(shape[axis]))
        vec.attrs["name"] = dim.name
        vec.attrs["units"] = dim.units
    if len(columns) == 1 and next(iter(columns)):
        table = _create_virtual(group, layout.VALUES, scan_shape + (_n_values(),), np.float64,
                                np.nan, value_sources)
        table.attrs["columns"] = json.dumps(list(next(iter(columns))))
    complete = all(p in found and found[p].streams[name].finished for p in by_rank)
    attrs = group.attrs
    attrs["emd_group_type"] = np.int32(1)
    attrs["frame_ndim"] = np.int32(len(t.frame_shape))
    attrs["part_count"] = np.int64(n)
    attrs["block_frames"] = np.int64(t.part.block_frames)
    attrs["scan_shape"] = np.asarray(scan_shape, dtype=np.int64)
    attrs[MASTER_ATTR] = json.dumps(stored)
    attrs["frames_written"] = np.int64(written)
    attrs["frames_dropped"] = np.int64(dropped)
    if dropped:
        attrs["dropped_frames"] = dropped_slots.astype(np.int64)
    attrs["complete"] = complete
    return written, total


def _write_other(data: h5py.Group, other: OtherStream, rank: int, stored: str) -> None:
    """A stream that is not split by block: one virtual dataset per part, ``<name>_part<rank>``."""
    group = data.create_group(f"{other.name}_part{rank}")
    everything = [Mapping(tuple((0, 1, 1, n) for n in other.shape[:1]), (0, 1, 1, other.shape[0]))] \
        if other.shape else []
    _create_virtual(group, "data", other.shape, other.dtype, other.fillvalue,
                    [(stored, f"/data/{other.name}/data", other.shape, everything)])
    for axis, (name, units, values) in enumerate(other.dims):
        vec = group.create_dataset(f"dim{axis + 1}", data=values)
        vec.attrs["name"] = name
        vec.attrs["units"] = units
    group.attrs["emd_group_type"] = np.int32(1)
    for key, value in other.attrs.items():
        group.attrs[key] = value


def _merge_metadata(f: h5py.File, present: list[PartFile]) -> list[str]:
    """/microscope /user /sample: the union of the parts' attributes; returns the keys whose
    values differ between parts (the lowest rank's value is kept)."""
    conflicts = []
    for g in METADATA_GROUPS:
        group = f.create_group(g)
        for pf in present:
            for key, value in pf.metadata.get(g, {}).items():
                if key not in group.attrs:
                    group.attrs[key] = value
                elif not _same(group.attrs[key], value) and f"{g}/{key}" not in conflicts:
                    conflicts.append(f"{g}/{key}")
    return conflicts


def _same(a, b) -> bool:
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    except Exception:
        return False


def _n_values() -> int:
    from .values import MAX_VALUES

    return MAX_VALUES


# --- checking a master ----------------------------------------------------------------------------
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
    from .reader import open_h5

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
        from .filelock import writer_holds

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
    from .reader import open_h5

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
    from .reader import open_h5

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
