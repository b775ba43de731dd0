"""EMD 1.0, the layout of ``emdfile`` (what py4DSTEM reads and writes), from and to EMD v0.2.

``to_emd1(src, dst)`` writes each ``/data/<name>`` group of an emdstream file as an array node of
one EMD 1.0 root: ``/<root>/<name>/data`` with the compressed chunks copied as they are
(``read_direct_chunk`` -> ``write_direct_chunk``, nothing decompressed), ``dim0..`` vectors as
emdfile writes them (a linear axis as ``[start, step]``), 4-D scans of 2-D frames as a py4DSTEM
``DataCube`` with its calibration in the root's metadata, /microscope /user /sample /comments as
root metadata dicts. Everything of the v0.2 file beside the data (root attributes, metadata groups,
dim vectors, group attributes, other members) is also kept verbatim in plain HDF5 groups named
``emdstream_v02`` that emdfile does not read, so ``to_emd02`` gives the v0.2 file back exactly.
``to_emd02`` also turns EMD 1.0 files of other software (py4DSTEM ``save``) into EMD v0.2.
"""
from __future__ import annotations

import math
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from numbers import Number
from typing import Any, Optional

import h5py
import hdf5plugin  # registers the filters that the copied datasets name
import numpy as np

from .layout import LIBVER, STATE_GROUP
from .master import MASTER_ATTR
from .metadata import METADATA_GROUPS
from .reader import EMDDataset, iter_blocks, open_h5

BITSHUFFLE = 32008  # HDF5 filter id of bitshuffle(-LZ4)
HIDDEN = "emdstream_v02"  # plain groups (no emd_group_type) that keep the v0.2 file for the way back


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


# --- axes --------------------------------------------------------------------------------------
def plain_units(units: str) -> str:
    """``"[nm]"`` -> ``"nm"`` (EMD v0.2 brackets its units, emdfile and HyperSpy do not)."""
    units = units.strip()
    return units[1:-1].strip() if units.startswith("[") and units.endswith("]") else units


def linear_axis(values: Sequence[float]) -> Optional[tuple[float, float]]:
    """(offset, scale) of an evenly spaced vector; None if it is not evenly spaced."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        return 0.0, 1.0
    if v.size == 1:
        return float(v[0]), 1.0
    step = np.diff(v)
    scale = float(v[-1] - v[0]) / (v.size - 1)
    if scale == 0 or not np.allclose(step, scale, rtol=1e-6, atol=1e-12 * abs(scale)):
        return None
    return float(v[0]), scale


def frame_ndim(ds: EMDDataset) -> int:
    """The number of frame axes of a dataset (0 for scalars, 1 for spectra, 2 for images)."""
    grid = getattr(ds, "frame_grid", None)
    if grid is not None:
        return ds.data.ndim - len(grid)
    n = ds.group.attrs.get("frame_ndim")
    if n is not None:
        return int(n)
    # older files do not record it: the frame axes leave as many slots as frames were counted
    shape, slots = ds.data.shape, getattr(ds, "frame_slots", None)
    for n in (2, 1, 0):
        if len(shape) > n and math.prod(shape[:len(shape) - n]) == slots:
            return n
    return min(2, len(shape) - 1)


def file_metadata(ds: EMDDataset) -> dict[str, dict[str, Any]]:
    """The /microscope, /user, /sample and /comments attributes of a dataset's file."""
    f = ds.group.file
    return {g: {k: plain_value(v) for k, v in f[g].attrs.items()}
            for g in (*METADATA_GROUPS, "comments") if g in f}


def plain_value(value: Any) -> Any:
    """An HDF5 attribute value as a Python scalar or str (arrays stay arrays)."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value.item() if isinstance(value, np.generic) else value


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


# --- emdfile metadata dicts --------------------------------------------------------------------
def write_metadata(bundle: h5py.Group, name: str, values: dict[str, Any],
                   python_class: str = "Metadata") -> None:
    """One emdfile Metadata group (``type``-tagged datasets) in a ``metadatabundle``."""
    group = bundle.create_group(link_name(name))
    group.attrs["emd_group_type"] = "metadata"
    group.attrs["python_class"] = python_class
    _write_items(group, values)


def _write_items(group: h5py.Group, values: dict[str, Any]) -> None:
    for key, value in values.items():
        key = link_name(key)
        if isinstance(value, dict):
            sub = group.create_group(key)
            sub.attrs["type"] = "dict"
            _write_items(sub, value)
            continue
        if isinstance(value, (str, bytes)):
            ds, kind = group.create_dataset(key, data=_text(value).encode()), "string"
        elif isinstance(value, (bool, np.bool_)):
            ds, kind = group.create_dataset(key, data=bool(value), dtype=bool), "bool"
        elif isinstance(value, Number):
            ds, kind = group.create_dataset(key, data=value, dtype=type(value)), "number"
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
            ds = group.create_group(key)
            ds.attrs["length"], kind = len(value), "list_of_strings"
            for i, text in enumerate(value):
                ds.create_dataset(str(i), data=text.encode())
        else:
            arr = np.asarray(value)
            if arr.dtype.kind in "SUO":
                arr = arr.astype(str).astype(object)
            ds, kind = group.create_dataset(key, data=arr), "array"
        ds.attrs["type"] = kind


def read_metadata(group: h5py.Group) -> dict[str, Any]:
    """An emdfile Metadata group (or one of its dicts) as a dict; unknown types are skipped."""
    out: dict[str, Any] = {}
    for key, item in group.items():
        kind = _text(item.attrs.get("type", ""))
        name = unlink_name(key)
        if kind == "dict":
            out[name] = read_metadata(item)
        elif kind in ("list_of_strings", "tuple_of_strings"):
            out[name] = [_text(item[str(i)][()]) for i in range(int(item.attrs["length"]))]
        elif kind == "string":
            out[name] = _text(item[()])
        elif kind in ("number", "bool"):
            out[name] = item[()].item()
        elif kind in ("array", "list", "tuple") and isinstance(item, h5py.Dataset) and item.size:
            out[name] = item[()]
    return out


def link_name(key: str) -> str:
    """An HDF5 link name for any dict key (``/`` and a leading ``.`` escaped, ``%`` too)."""
    key = key.replace("%", "%25").replace("/", "%2F")
    return "%2E" + key[1:] if key.startswith(".") else key


def unlink_name(key: str) -> str:
    return key.replace("%2F", "/").replace("%2E", ".").replace("%25", "%")


def _text(value: Any) -> Any:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


# --- EMD v0.2 -> EMD 1.0 -----------------------------------------------------------------------
def emd_version(f: h5py.File) -> str:
    """``"1.0"`` for an emdfile file, ``"0.2"`` for EMD v0.2; ValueError for other files."""
    if _text(f.attrs.get("emd_group_type", "")) == "file" and int(f.attrs.get("version_major", 0)) == 1:
        return "1.0"
    if "version_major" in f.attrs and int(f.attrs["version_major"]) == 0:
        return "0.2"
    raise ValueError(f"{f.filename} is neither an EMD v0.2 nor an EMD 1.0 file")


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
            root = _node(out, f"{groups[0][0]}_root" if len(groups) == 1 else "emdstream_root",
                         "root", "Root")
            meta = {g: dict(f[g].attrs) for g in (*METADATA_GROUPS, "comments") if g in f}
            _keep_v02(f, root, skip=("data",))
            for name, group in groups:
                report.chunks_copied += _write_array(group, root, name, meta)
                kind = root[name].attrs["python_class"]
                report.arrays.append(f"{name} {group['data'].ndim}-D {kind}")
                if kind == "DataCube":
                    report.cubes.append(f"/{name}")
            bundle = _bundle(root)
            for key, values in meta.items():
                if key == "calibration":  # py4DSTEM links it to its DataCubes by these paths
                    values = {**values, "_root_treepath": "", "_target_paths": report.cubes}
                write_metadata(bundle, key, values, "Calibration" if key == "calibration" else "Metadata")
    return report


def _write_array(group: h5py.Group, root: h5py.Group, name: str, meta: dict) -> int:
    data = group["data"]
    from .py4dstem_io import is_datacube, py4dstem_calibration

    dataset = EMDDataset(group, None)
    dims = dataset.dims
    cube = is_datacube(data, frame_ndim(dataset))
    node = _node(root, name, "array", "DataCube" if cube else "Array")
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
    _keep_v02(group, node, skip=())
    return n_chunks


def _emdfile_vector(values: np.ndarray) -> np.ndarray:
    """emdfile stores an evenly spaced axis of more than two points as ``[start, step]``."""
    linear = linear_axis(values)
    return np.array([linear[0], linear[0] + linear[1]]) if linear and len(values) > 2 else values


def _keep_v02(src: h5py.Group, dst: h5py.Group, skip: Sequence[str]) -> None:
    """Copy ``src``'s attributes and members (but ``skip``) into ``dst/HIDDEN``; ``data``'s
    attributes go on an empty group ``HIDDEN/data``."""
    hidden = dst.create_group(HIDDEN)
    virtual = isinstance(src.get("data"), h5py.Dataset) and src["data"].is_virtual
    hidden.attrs.update({k: v for k, v in src.attrs.items() if not (virtual and k == MASTER_ATTR)})
    for key, item in src.items():
        if key in skip:
            continue
        if key == "data" and isinstance(item, h5py.Dataset):
            hidden.create_group("data").attrs.update(item.attrs)
        else:
            _copy_member(item, hidden, key)


def _copy_member(item: h5py.Group | h5py.Dataset, dst: h5py.Group, key: str) -> None:
    """H5Ocopy, but virtual datasets (a master's value tables) are written out as their values."""
    if isinstance(item, h5py.Dataset) and item.is_virtual:
        dst.create_dataset(key, data=item[()]).attrs.update(item.attrs)
    elif isinstance(item, h5py.Group) and _has_virtual(item):
        group = dst.create_group(key)
        group.attrs.update(item.attrs)
        for name, child in item.items():
            _copy_member(child, group, name)
    else:
        item.file.copy(item, dst, name=key)


def _has_virtual(group: h5py.Group) -> bool:
    return any(_has_virtual(v) if isinstance(v, h5py.Group) else v.is_virtual
               for v in group.values())


def _node(parent: h5py.Group, name: str, group_type: str, python_class: str) -> h5py.Group:
    group = parent.create_group(name)
    group.attrs["emd_group_type"] = group_type
    group.attrs["python_class"] = python_class
    return group


def _bundle(node: h5py.Group) -> h5py.Group:
    bundle = node.require_group("metadatabundle")
    bundle.attrs["emd_group_type"] = "metadatabundle"
    return bundle


# --- EMD 1.0 -> EMD v0.2 -----------------------------------------------------------------------
def to_emd02(src: str | os.PathLike, dst: str | os.PathLike, overwrite: bool = False) -> ConvertReport:
    """Write EMD 1.0 file ``src`` as EMD v0.2: exactly the original for files from ``to_emd1``;
    for other emdfile files each array node becomes ``/data/<name>`` (dims expanded, units in
    brackets) and the root's metadata dicts go to /microscope /user /sample /comments (others,
    flattened as ``dict.key``, to /user)."""
    with h5py.File(src, "r") as f:
        if emd_version(f) != "1.0":
            raise ValueError(f"{os.fspath(src)} is EMD v0.2 already; use --to emd1")
        roots = [g for g in f.values() if isinstance(g, h5py.Group)
                 and _text(g.attrs.get("emd_group_type", "")) == "root"]
        arrays = [(r, a) for r in roots for a in _arrays(r)]
        if not arrays:
            raise ValueError(f"{os.fspath(src)} has no EMD 1.0 array node to convert")
        report = ConvertReport(os.fspath(src), os.fspath(dst), "0.2")
        with _new_file(dst, overwrite) as out:
            out.attrs["version_major"], out.attrs["version_minor"] = 0, 2
            for root in roots:
                _restore_root(root, out)
            data = out.require_group("data")
            for root, array in arrays:
                name = array.name.rsplit("/", 1)[-1]
                if name in data:
                    name = f"{root.name.strip('/')}_{name}"
                group = data.create_group(name)
                report.chunks_copied += copy_data(array["data"], group)
                _restore_array(array, group)
                report.arrays.append(f"{name} {array['data'].ndim}-D")
            for key in (*METADATA_GROUPS, "comments"):
                out.require_group(key)
    return report


def _arrays(group: h5py.Group) -> Iterator[h5py.Group]:
    for item in group.values():
        if isinstance(item, h5py.Group) and "emd_group_type" in item.attrs:
            if _text(item.attrs["emd_group_type"]) == "array" and "data" in item:
                yield item
            yield from _arrays(item)


def _restore_root(root: h5py.Group, out: h5py.File) -> None:
    if HIDDEN in root:  # written by to_emd1: the v0.2 file's own root attributes and groups
        _copy_members(root[HIDDEN], out)
        return
    bundle = root.get("metadatabundle", {})
    for key, group in bundle.items():
        values = read_metadata(group)
        if key in (*METADATA_GROUPS, "comments"):
            out.require_group(key).attrs.update(_storable(values))
        elif key != "calibration":  # the calibration is in the dim vectors
            out.require_group("user").attrs.update(_storable(values, prefix=f"{key}."))


def _restore_array(array: h5py.Group, group: h5py.Group) -> None:
    if HIDDEN in array:
        _copy_members(array[HIDDEN], group)
        return
    group.attrs["emd_group_type"] = np.int32(1)
    data = array["data"]
    for axis in range(data.ndim):
        vec = array.get(f"dim{axis}")
        name = _text(vec.attrs.get("name", f"dim{axis}")) if vec is not None else f"dim{axis}"
        values = _expand(vec, data.shape[axis], name)
        units = _text(vec.attrs.get("units", "")) if vec is not None and name != "_labels_" else ""
        ds = group.create_dataset(f"dim{axis + 1}", data=values)
        ds.attrs["name"] = "slice" if name == "_labels_" else name
        ds.attrs["units"] = f"[{units}]" if units else "[index]" if name == "_labels_" else ""
        if name == "_labels_":
            ds.attrs["labels"] = [_text(v) for v in vec[()]]


def _expand(vec: Optional[h5py.Dataset], length: int, name: str) -> np.ndarray:
    """emdfile's dim vector at full length (``[start, step]`` of a linear axis is extended)."""
    if vec is None or name == "_labels_":
        return np.arange(length, dtype=np.float64)
    values = np.asarray(vec[()], dtype=np.float64).reshape(-1)
    if values.size == length:
        return values
    if values.size == 2:
        return values[0] + (values[1] - values[0]) * np.arange(length)
    if values.size == 1:
        return values[0] + np.arange(length, dtype=np.float64)
    raise ValueError(f"{vec.name}: {values.size} values for an axis of length {length}")


def _copy_members(hidden: h5py.Group, dst: h5py.Group) -> None:
    dst.attrs.update(hidden.attrs)
    for key, item in hidden.items():
        if key == "data" and isinstance(item, h5py.Group) and "data" in dst:
            dst["data"].attrs.update(item.attrs)
        elif key in dst:  # a group made before (/data)
            _copy_members(item, dst[key])
        else:
            hidden.file.copy(item, dst, name=key)


def _storable(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts into ``a.b`` keys; attribute-storable values only."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_storable(value, f"{prefix}{key}."))
        elif value is not None:
            out[f"{prefix}{key}"] = value
    return out


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
