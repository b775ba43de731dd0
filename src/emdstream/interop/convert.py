"""``emdstream convert``: EMD v0.2 <-> EMD 1.0 (the emdfile layout that py4DSTEM reads).

``to_emd1(src, dst)`` writes each ``/data/<name>`` group as an array node of one EMD 1.0 root (a
2-D scan of 2-D frames as a py4DSTEM ``DataCube`` with its calibration in the root's metadata),
/microscope /user /sample /comments as root metadata dicts, and keeps the v0.2 file's objects for
``to_emd02``, which gives it back exactly (and turns files saved by py4DSTEM into EMD v0.2).
Compressed chunks are copied as they are (``read_direct_chunk`` -> ``write_direct_chunk``): a
conversion costs about one read and one write of the compressed bytes.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Optional

import h5py
import hdf5plugin
import numpy as np

from emdstream.format.blocks import iter_blocks
from emdstream.format.dims import linear_axis
from emdstream.format.layout import LIBVER, STATE_GROUP
from emdstream.format.metadata import METADATA_GROUPS
from emdstream.interop import emd1
from emdstream.interop.emd1 import emd_version, frame_ndim, plain_units, write_metadata
from emdstream.interop.py4dstem import is_datacube, py4dstem_calibration
from emdstream.interop.stempy import StempyReport, to_stempy
from emdstream.read.dataset import EMDDataset
from emdstream.safety.h5open import check_path, open_h5

BITSHUFFLE = 32008  # HDF5 filter id of bitshuffle(-LZ4)
TARGETS = ("emd1", "emd02", "stempy")  # stempy: a counted stream (interop.stempy)
PY4DSTEM_SUFFIXES = (".h5", ".hdf5", ".py4dstem", ".emd")  # py4DSTEM.read refuses other names


@dataclass
class ConvertReport:
    """What a conversion wrote."""

    src: str
    dst: str
    version: str
    arrays: list[str] = field(default_factory=list)
    chunks_copied: int = 0
    cubes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        size = os.path.getsize(self.dst) / 1e6
        how = (f"{self.chunks_copied} chunks copied as they were (not recompressed)"
               if self.chunks_copied else "data copied (contiguous)")
        return f"{self.src} -> {self.dst}: EMD {self.version}, {', '.join(self.arrays)}; {how}, {size:.1f} MB"


# --- chunks as they are ------------------------------------------------------------------------
def copy_data(src: h5py.Dataset, parent: h5py.Group, name: str = "data") -> int:
    """Create ``parent[name]`` with ``src``'s type, shape, chunks, filters and fill value and copy
    the stored chunks byte for byte (``read_direct_chunk`` -> ``write_direct_chunk``); returns the
    number of chunks. A contiguous dataset, or one whose filter pipeline HDF5 would not recreate
    exactly, is copied by HDF5 itself (``H5Ocopy``: also without decompressing). A virtual
    dataset (a master file's map of its part files) is read and written out as bslz4 chunks of
    one frame (its data would otherwise stay in the part files)."""
    if src.is_virtual:
        _materialize(src, parent, name)
        return 0
    dst = _create_like(src, parent, name) if src.chunks is not None else None
    if dst is None:
        src.file.copy(src, parent, name=name, without_attrs=True)
        return src.id.get_num_chunks() if src.chunks is not None else 0
    offsets = list(_chunk_offsets(src))
    for offset in offsets:
        mask, raw = src.id.read_direct_chunk(offset)
        dst.id.write_direct_chunk(offset, raw, mask)
    return len(offsets)


def _create_like(src: h5py.Dataset, parent: h5py.Group, name: str) -> Optional[h5py.Dataset]:
    """An empty chunked dataset with ``src``'s creation properties, or None if its filters come
    out different. A filter's ``set_local`` adds values at creation (bitshuffle prepends its
    version and the element size): pass it what it was given, not what it stored."""
    dcpl = src.id.get_create_plist()
    want = _filters(dcpl)
    dcpl.remove_filter(h5py.h5z.FILTER_ALL)
    for filter_id, flags, values in want:
        dcpl.set_filter(filter_id, flags, values[3:] if filter_id == BITSHUFFLE else values)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_INCR)  # only the chunks that exist are written
    dst = h5py.Dataset(h5py.h5d.create(parent.id, name.encode(), src.id.get_type(),
                                       src.id.get_space(), dcpl=dcpl))
    if _filters(dst.id.get_create_plist()) == want:
        return dst
    del parent[name]
    return None


def _materialize(src: h5py.Dataset, parent: h5py.Group, name: str) -> None:
    frame_axes = 2 if src.ndim > 2 else 1
    chunks = (1,) * (src.ndim - frame_axes) + src.shape[src.ndim - frame_axes:]
    dst = parent.create_dataset(name, shape=src.shape, dtype=src.dtype, chunks=chunks or None,
                                fillvalue=src.fillvalue, **hdf5plugin.Bitshuffle())
    for sel in iter_blocks(src):
        dst[sel] = src[sel]


def _filters(dcpl: h5py.h5p.PropDCID) -> list[tuple[int, int, tuple[int, ...]]]:
    return [tuple(dcpl.get_filter(i)[:3]) for i in range(dcpl.get_nfilters())]


def _chunk_offsets(ds: h5py.Dataset) -> Iterator[tuple[int, ...]]:
    if hasattr(ds.id, "chunk_iter"):  # HDF5 >= 1.12.3: one pass over the chunk index
        found: list[tuple[int, ...]] = []
        ds.id.chunk_iter(lambda info: found.append(tuple(info.chunk_offset)))
        yield from found
    else:
        for i in range(ds.id.get_num_chunks()):
            yield tuple(ds.id.get_chunk_info(i).chunk_offset)




def to_emd1(src: str | os.PathLike, dst: str | os.PathLike, overwrite: bool = False) -> ConvertReport:
    """Write EMD v0.2 file ``src`` as EMD 1.0 file ``dst`` (see the module docstring)."""
    with open_h5(src) as f:
        if emd_version(f) != "0.2":
            raise ValueError(f"{os.fspath(src)} is already EMD 1.0; use --to emd02 for the way back")
        if STATE_GROUP in f:
            raise ValueError(f"{os.fspath(src)} is still being written or its writer was killed; "
                             f"finish it first (`emdstream recover`)")
        groups = [(n, g) for n, g in f.get("data", {}).items() if isinstance(g, h5py.Group)
                  and int(g.attrs.get("emd_group_type", 0)) == 1 and "data" in g]
        if not groups:
            raise ValueError(f"{os.fspath(src)} has no /data/<name> group with emd_group_type=1")
        report = ConvertReport(os.fspath(src), os.fspath(dst), "1.0")
        with _new_file(dst, overwrite) as out:
            for key, value in {"emd_group_type": "file", "version_major": 1, "version_minor": 0,
                               "UUID": str(uuid.uuid4()), "authoring_program": "emdstream",
                               "authoring_user": ""}.items():
                out.attrs[key] = value
            root = emd1.node(out, f"{groups[0][0]}_root" if len(groups) == 1 else "emdstream_root",
                             "root", "Root")
            meta = {g: dict(f[g].attrs) for g in (*METADATA_GROUPS, "comments") if g in f}
            emd1.keep_v02(f, root, skip=("data",))
            for name, group in groups:
                report.chunks_copied += _write_array(group, root, name, meta)
                kind = root[name].attrs["python_class"]
                report.arrays.append(f"{name} {group['data'].ndim}-D {kind}")
                if kind == "DataCube":
                    report.cubes.append(f"/{name}")
            bundle = emd1.bundle(root)
            for key, values in meta.items():
                if key == "calibration":  # py4DSTEM links it to its DataCubes by these paths
                    values = {**values, "_root_treepath": "", "_target_paths": report.cubes}
                write_metadata(bundle, key, values, "Calibration" if key == "calibration" else "Metadata")
    return report


def _write_array(group: h5py.Group, root: h5py.Group, name: str, meta: dict) -> int:
    """One ``/data/<name>`` group as an array node of ``root``; returns the chunks copied."""
    data = group["data"]
    dataset = EMDDataset(group, None)
    dims = dataset.dims
    cube = is_datacube(data, frame_ndim(dataset))
    node = emd1.node(root, name, "array", "DataCube" if cube else "Array")
    n_chunks = copy_data(data, node)
    node["data"].attrs["units"] = "pixel intensity" if cube else ""
    if cube and "calibration" not in meta:
        cal, _ = py4dstem_calibration(dims)
        meta["calibration"] = cal  # one calibration per root in py4DSTEM: the first DataCube's
        names = ["Rx", "Ry", "Qx", "Qy"]
        units = [cal["R_pixel_units"]] * 2 + [cal["Q_pixel_units"]] * 2
        vectors = [[0.0, cal["R_pixel_size"]]] * 2 + [[0.0, cal["Q_pixel_size"]]] * 2
    else:
        names = [d.name for d in dims]
        units = [plain_units(d.units) for d in dims]
        vectors = [_emdfile_vector(d.values) for d in dims]
    for axis, (dim_name, dim_units, vector) in enumerate(zip(names, units, vectors)):
        ds = node.create_dataset(f"dim{axis}", data=np.asarray(vector))
        ds.attrs["name"], ds.attrs["units"] = dim_name, dim_units
    emd1.keep_v02(group, node, skip=())
    return n_chunks


def _emdfile_vector(values: np.ndarray) -> np.ndarray:
    """emdfile stores an evenly spaced axis of more than two points as ``[start, step]``."""
    linear = linear_axis(values)
    return np.array([linear[0], linear[0] + linear[1]]) if linear and len(values) > 2 else values


def to_emd02(src: str | os.PathLike, dst: str | os.PathLike, overwrite: bool = False) -> ConvertReport:
    """Write EMD 1.0 file ``src`` as EMD v0.2: exactly the original for files from ``to_emd1``;
    for other emdfile files each array node becomes ``/data/<name>`` (dims expanded, units in
    brackets) and the root's metadata dicts go to /microscope /user /sample /comments (others,
    flattened as ``dict.key``, to /user)."""
    with h5py.File(src, "r") as f:
        if emd_version(f) != "1.0":
            raise ValueError(f"{os.fspath(src)} is EMD v0.2 already; use --to emd1")
        roots = [g for g in f.values() if isinstance(g, h5py.Group)
                 and emd1.plain_value(g.attrs.get("emd_group_type", "")) == "root"]
        arrays = [(r, a) for r in roots for a in emd1.array_nodes(r)]
        if not arrays:
            raise ValueError(f"{os.fspath(src)} has no EMD 1.0 array node to convert")
        report = ConvertReport(os.fspath(src), os.fspath(dst), "0.2")
        with _new_file(dst, overwrite) as out:
            out.attrs["version_major"], out.attrs["version_minor"] = 0, 2
            for root in roots:
                emd1.restore_root(root, out)
            data = out.require_group("data")
            for root, array in arrays:
                name = array.name.rsplit("/", 1)[-1]
                if name in data:
                    name = f"{root.name.strip('/')}_{name}"
                group = data.create_group(name)
                report.chunks_copied += copy_data(array["data"], group)
                emd1.restore_array(array, group)
                report.arrays.append(f"{name} {array['data'].ndim}-D")
            for key in (*METADATA_GROUPS, "comments"):
                out.require_group(key)
    return report




def convert(src: str | os.PathLike, dst: str | os.PathLike, to: str | None = None,
            overwrite: bool = False) -> ConvertReport | StempyReport:
    """Convert ``src`` to ``to`` ("emd1" or "emd02"; None: the other one of the two; "stempy":
    a counted stream as stempy's electron counts) at ``dst``."""
    check_path(src)
    if to is None:
        with open_h5(src) as f:
            to = "emd02" if emd_version(f) == "1.0" else "emd1"
    if to not in TARGETS:
        raise ValueError(f"--to must be one of {', '.join(TARGETS)}, got {to!r}")
    if os.path.exists(dst) and os.path.samefile(src, dst):
        raise ValueError(f"{os.fspath(dst)} is the input file; give another output file")
    if to == "stempy":
        return to_stempy(src, dst, overwrite=overwrite)
    return (to_emd1 if to == "emd1" else to_emd02)(src, dst, overwrite=overwrite)


class _new_file:
    """An HDF5 file written under a temporary name and renamed into place when complete."""

    def __init__(self, path: str | os.PathLike, overwrite: bool):
        self.path = os.fspath(path)
        if os.path.exists(self.path) and not overwrite:
            raise FileExistsError(f"{self.path} already exists; use --overwrite to replace it")
        self.tmp = f"{self.path}.emdstream-partial"

    def __enter__(self) -> h5py.File:
        self.file = h5py.File(self.tmp, "w", libver=LIBVER)
        return self.file

    def __exit__(self, exc_type, *exc) -> None:
        self.file.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            os.unlink(self.tmp)


# --- the command -------------------------------------------------------------------------------
