"""An emdstream dataset as a HyperSpy signal: ``emdstream.open(path)["name"].to_hyperspy()``.

The data axes are ``frame grid + frame``: the scan (or the frame number of a stack), then the
frame's own axes. HyperSpy navigates the grid and shows the frame as the signal:

* 2-D frames -> ``Signal2D``; ``s.inav[x, y]`` is the frame written at scan position (y, x)
  (HyperSpy lists axes x first), ``s.inav[i]`` frame ``i`` of a stack;
* 1-D frames (spectra) -> ``Signal1D`` navigated by the scan;
* scalars per position (a HAADF detector) -> the scan as the signal: ``Signal2D`` for a 2-D scan
  (an image), ``Signal1D`` for a line or a stack (a trace), ``BaseSignal`` for more axes.

Axes carry each dim's name, units (without EMD's brackets) and scale/offset (a non-uniform axis
keeps its values). /microscope, /sample and /user values with a known meaning go to
``s.metadata`` (``high_tension_kV`` -> ``Acquisition_instrument.TEM.beam_energy`` in keV ...);
everything, with the comments, the per-frame values and the dataset's attributes, is in
``s.original_metadata``.
"""
from __future__ import annotations

import datetime as dt
import os
import re
from typing import TYPE_CHECKING, Any

import numpy as np

from emdstream.errors import install_hint
from emdstream.format.dims import linear_axis
from emdstream.interop.emd1 import file_metadata, frame_ndim, plain_units, plain_value

if TYPE_CHECKING:
    from hyperspy.signal import BaseSignal

    from emdstream.read.dataset import EMDDataset

# (key words: lower case, a unit suffix like _kV removed; metadata path; factor by that suffix)
ENERGY = {"": 1.0, "kv": 1.0, "kev": 1.0, "v": 1e-3, "ev": 1e-3}
LENGTH_MM = {"": 1.0, "mm": 1.0, "cm": 10.0, "m": 1e3}
ANGLE_MRAD = {"": 1.0, "mrad": 1.0, "rad": 1e3, "urad": 1e-3}
CURRENT_NA = {"": 1.0, "na": 1.0, "pa": 1e-3, "ua": 1e3, "a": 1e9}
TIME_S = {"": 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
NONE: dict[str, float] = {"": 1.0}
TEM = "Acquisition_instrument.TEM."
KNOWN = {
    "microscope": [
        (("high_tension", "ht", "voltage", "accelerating_voltage", "acceleration_voltage",
          "beam_energy"), TEM + "beam_energy", ENERGY),
        (("camera_length",), TEM + "camera_length", LENGTH_MM),
        (("convergence_angle", "convergence_semiangle", "convergence_semi_angle"),
         TEM + "convergence_angle", ANGLE_MRAD),
        (("beam_current", "probe_current"), TEM + "beam_current", CURRENT_NA),
        (("dwell_time", "exposure_time", "frame_time"), TEM + "dwell_time", TIME_S),
        (("magnification",), TEM + "magnification", NONE),
        (("microscope", "name", "model", "instrument"), TEM + "microscope", NONE),
    ],
    "sample": [
        (("name", "description"), "Sample.description", NONE),
        (("thickness",), "Sample.thickness", {"": 1.0, "nm": 1.0, "um": 1e3, "a": 0.1}),
    ],
    "user": [(("name", "operator", "author", "user"), "General.authors", NONE)],
}
UNIT_SUFFIX = re.compile(r"^(.*?)(?:_(kv|kev|v|ev|mm|cm|m|mrad|urad|rad|na|pa|ua|a|s|ms|us|ns|nm|um))?$")


def to_hyperspy(ds: EMDDataset, lazy: bool = False) -> BaseSignal:
    """A HyperSpy signal over ``ds`` (an ``EMDDataset``); ``lazy=True`` reads nothing now: the
    signal is a dask array over the open file (keep the ``EMDFile`` open while you use it)."""
    hs = _import_hyperspy()
    counted = getattr(ds, "counted", False)  # a counted stream: its frames densified
    n_frame = 2 if counted else frame_ndim(ds)
    data = _array(ds, lazy)
    dims = ds.dense_dims if counted else ds.dims
    axes = [_axis(dim, size) for dim, size in zip(dims, data.shape)]
    n_grid = data.ndim - n_frame
    if n_frame == 0 and n_grid <= 2:  # scalars per position: the scan is the signal (an image)
        n_frame, n_grid = n_grid, 0
    for i, axis in enumerate(axes):
        axis["navigate"] = i < n_grid
    cls = {1: "Signal1D", 2: "Signal2D"}.get(n_frame, "BaseSignal")
    cls = f"Lazy{cls}" if lazy else cls
    return getattr(hs.signals, cls)(data, axes=axes, metadata=_metadata(ds),
                                    original_metadata=_original_metadata(ds))


def _import_hyperspy():
    try:
        import hyperspy.api as hs
    except ImportError as exc:
        raise ImportError(f"to_hyperspy needs HyperSpy: {install_hint('hyperspy', 'hyperspy')}") from exc
    return hs


def _array(ds: EMDDataset, lazy: bool):
    """The data (frames written so far of a stack; the whole scan), as numpy or as dask."""
    data = ds.dense if getattr(ds, "counted", False) else ds.data  # dense: chunk by chunk
    rows = slice(0, ds.frame_slots) if data.maxshape[0] is None else slice(None)
    if not lazy:
        return data[rows]
    try:
        import dask.array as da
    except ImportError as exc:
        raise ImportError(f"lazy=True needs dask: {install_hint('dask[array]', 'dask')}") from exc
    meta = np.empty((0,) * data.ndim, data.dtype)  # else dask reads a slice to learn the type
    return da.from_array(data, chunks=data.chunks or "auto", meta=meta)[rows]


def _axis(dim, size: int) -> dict[str, Any]:
    """A HyperSpy axis dict from a Dim: uniform (scale, offset) when evenly spaced, else values."""
    axis: dict[str, Any] = {"name": dim.name, "size": size}
    units = plain_units(dim.units)
    if units and units != "index":
        axis["units"] = units
    values = np.asarray(dim.values if dim.values is not None else dim.vector(size))[:size]
    linear = linear_axis(values)
    if linear is not None:
        axis["offset"], axis["scale"] = linear
    elif _ordered(values):
        axis["axis"] = values.astype(np.float64)
    else:  # HyperSpy needs an ordered axis: the frames numbered (the values stay in ds.values)
        axis["offset"], axis["scale"] = 0.0, 1.0
        axis.pop("units", None)
    return axis


def _ordered(values: np.ndarray) -> bool:
    """Finite and strictly monotonic (what a HyperSpy non-uniform axis accepts)."""
    steps = np.diff(values.astype(np.float64))
    return bool(np.isfinite(values).all() and (np.all(steps > 0) or np.all(steps < 0)))


def _metadata(ds: EMDDataset) -> dict[str, Any]:
    md: dict[str, Any] = {}
    _put(md, "General.title", ds.name)
    _put(md, "General.original_filename", os.path.basename(ds.group.file.filename))
    groups = file_metadata(ds)
    for group, rules in KNOWN.items():
        for key, value in groups.get(group, {}).items():
            base, unit = UNIT_SUFFIX.match(key.lower()).groups()
            for words, path, factors in rules:
                if base in words and (unit or "") in factors:
                    if isinstance(value, np.ndarray) and value.size == 1:  # [12.0] as 12.0
                        value = value.reshape(()).item()
                    number = isinstance(value, (int, float, np.integer, np.floating)) and \
                        not isinstance(value, (bool, np.bool_))  # h5py gives np.int64
                    _put(md, path, value * factors[unit or ""] if number else value)
    stamps = np.asarray(getattr(ds, "values", {}).get("timestamp", []), dtype=np.float64)
    stamps = stamps[np.isfinite(stamps)]
    if stamps.size:
        start = dt.datetime.fromtimestamp(float(stamps.min()), dt.timezone.utc)
        _put(md, "General.date", start.date().isoformat())
        _put(md, "General.time", start.time().isoformat())
        _put(md, "General.time_zone", "UTC")
    return md


def _original_metadata(ds: EMDDataset) -> dict[str, Any]:
    om: dict[str, Any] = file_metadata(ds)
    om["dataset"] = {k: plain_value(v) for k, v in ds.group.attrs.items()}
    om["dataset"]["dims"] = {d.name: plain_units(d.units) for d in ds.dims}
    values = getattr(ds, "values", {})
    if values:
        om["frame_values"] = dict(values)
    return om


def _put(tree: dict, path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for key in parents:
        tree = tree.setdefault(key, {})
    tree[leaf] = value
