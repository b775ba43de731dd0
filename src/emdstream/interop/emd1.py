"""The EMD 1.0 layout of ``emdfile`` (what py4DSTEM reads and writes), for ``emdstream convert``.

An emdfile file: root attributes (emd_group_type "file", version 1.0), a root group, array nodes
(``data`` and ``dim0..`` vectors, a linear one as ``[start, step]``) and ``metadatabundle`` groups
of metadata dicts (datasets tagged with their ``type``). Beside each node emdstream keeps the EMD
v0.2 file's own objects verbatim in a plain group ``emdstream_v02`` that emdfile does not read, so
that the way back is exact. Also the axis and metadata helpers the interop modules share.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from numbers import Number
from typing import Any, Optional

import h5py
import numpy as np

from emdstream.format.layout import MASTER_ATTR
from emdstream.format.metadata import METADATA_GROUPS
from emdstream.read.dataset import EMDDataset

HIDDEN = "emdstream_v02"  # plain groups (no emd_group_type) that keep the v0.2 file for the way back


# --- axes --------------------------------------------------------------------------------------
def plain_units(units: str) -> str:
    """``"[nm]"`` -> ``"nm"`` (EMD v0.2 brackets its units, emdfile and HyperSpy do not)."""
    units = units.strip()
    return units[1:-1].strip() if units.startswith("[") and units.endswith("]") else units


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


# --- emdfile nodes, and the v0.2 file kept beside them --------------------------------------
def emd_version(f: h5py.File) -> str:
    """``"1.0"`` for an emdfile file, ``"0.2"`` for EMD v0.2; ValueError for other files."""
    if _text(f.attrs.get("emd_group_type", "")) == "file" and int(f.attrs.get("version_major", 0)) == 1:
        return "1.0"
    if "version_major" in f.attrs and int(f.attrs["version_major"]) == 0:
        return "0.2"
    raise ValueError(f"{f.filename} is neither an EMD v0.2 nor an EMD 1.0 file")


def keep_v02(src: h5py.Group, dst: h5py.Group, skip: Sequence[str]) -> None:
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


def node(parent: h5py.Group, name: str, group_type: str, python_class: str) -> h5py.Group:
    """A new emdfile node group, tagged as emdfile tags it."""
    group = parent.create_group(name)
    group.attrs["emd_group_type"] = group_type
    group.attrs["python_class"] = python_class
    return group


def bundle(group: h5py.Group) -> h5py.Group:
    """The ``metadatabundle`` of an emdfile node, made if missing."""
    out = group.require_group("metadatabundle")
    out.attrs["emd_group_type"] = "metadatabundle"
    return out


# --- back to EMD v0.2 -----------------------------------------------------------------------
def array_nodes(group: h5py.Group) -> Iterator[h5py.Group]:
    """The emdfile array nodes below ``group`` (a root), depth first."""
    for item in group.values():
        if isinstance(item, h5py.Group) and "emd_group_type" in item.attrs:
            if _text(item.attrs["emd_group_type"]) == "array" and "data" in item:
                yield item
            yield from array_nodes(item)


def restore_root(root: h5py.Group, out: h5py.File) -> None:
    """A root's metadata (or the kept v0.2 root) into the EMD v0.2 file ``out``."""
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


def restore_array(array: h5py.Group, group: h5py.Group) -> None:
    """An array node's dims and attributes (or the kept v0.2 group) into ``/data/<name>``."""
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
