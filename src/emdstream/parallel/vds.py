"""Where each part's frames go in the whole scan: HDF5 virtual-dataset mappings (``master``).

A part holds the frames of its blocks as a stack; a block may cross scan rows, so each is cut
into row pieces, and pieces with a regular pattern are merged into strided hyperslabs (one mapping
per part where the layout is regular). Source files are named relative to the master's directory,
which HDF5 resolves against the directory of the file holding the VDS.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby

import h5py
import numpy as np
from h5py import h5d, h5p, h5s, h5t

from emdstream.format.parts import Part


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


def create_virtual(group: h5py.Group, name: str, shape, dtype, fillvalue,
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


def relative(part_path: str, master_dir: str) -> str:
    """The name HDF5 stores for a source file: relative to the master's directory."""
    try:
        rel = os.path.relpath(part_path, master_dir)
    except ValueError:  # another drive (Windows): no relative path exists
        return part_path
    return rel if rel.startswith("..") else f".{os.sep}{rel}"


def resolve(master_path: str, stored: str) -> str:
    """The part file a stored (relative) source name means, as HDF5 finds it."""
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(master_path)), stored))


