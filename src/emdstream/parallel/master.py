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
still being written cannot be opened, so its frames read as the fill value).
``master_check.verify_master`` recomputes the counts from the parts; ``write_master`` again,
once they are finished, records the final ones.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import h5py
import numpy as np

from emdstream.format import counted, layout
from emdstream.format.layout import MASTER_ATTR
from emdstream.format.metadata import METADATA_GROUPS, unique_key, utc_key
from emdstream.format.parts import Part
from emdstream.format.values import MAX_VALUES
from emdstream.parallel import master_counted
from emdstream.parallel.part_file import OtherStream, PartFile, PartStream, read_part_file
from emdstream.parallel.vds import Mapping, create_virtual, part_mappings, relative

PARTIAL_SUFFIX = ".emdstream-partial"


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
        """Every part present and finished and every slot holding a frame: stricter than the
        groups' ``complete`` attribute (finished), which a scan with dropped frames also has."""
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
    stored = [relative(p, master_dir) for p in by_rank]
    missing = [s for p, s in zip(by_rank, stored) if p not in found]
    unfinished = [s for p, s in zip(by_rank, stored)
                  if p in found and not all(st.finished for st in found[p].streams.values())]
    written_counts, totals = {}, {}
    with h5py.File(tmp, "w", libver=layout.LIBVER) as f:
        f.attrs["version_major"] = 0
        f.attrs["version_minor"] = 2
        conflicts = _merge_metadata(f, [found[p] for p in by_rank if p in found])
        data = f.create_group("data")
        present = [(found[p].rank, p, s) for p, s in zip(by_rank, stored) if p in found]
        joined = set()  # counted streams' summed patterns: one joined group (master_counted)
        for name, t in template.streams.items():
            written_counts[name], totals[name] = _write_stream(
                data, name, t, by_rank, stored, found)
            if master_counted.is_counted_part(template.path, name):
                master_counted.write_events(data[name], name, present)
                master_counted.write_summed(data, name, present, bool(data[name].attrs["complete"]))
                joined.add(counted.sum_name(name))
        for p, s in zip(by_rank, stored):
            if p in found:
                for other in found[p].others.values():
                    if other.name not in joined:
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
        value_sources.append((s, f"/data/{name}/{layout.VALUES}", (n_local, MAX_VALUES), mappings))
    create_virtual(group, "data", shape, t.dtype, t.fillvalue, sources)
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
        table = create_virtual(group, layout.VALUES, scan_shape + (MAX_VALUES,), np.float64,
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
    everything = [Mapping(((0, 1, 1, other.shape[0]),), (0, 1, 1, other.shape[0]))] \
        if other.shape and other.shape[0] else []  # none: no frame (yet)
    create_virtual(group, "data", other.shape, other.dtype, other.fillvalue,
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
