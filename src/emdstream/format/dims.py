"""Dimension vectors (``dim1..dimN``) of an EMD v0.2 data group."""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np

DIM_KEY = re.compile(r"dim(\d+)$")  # the name of a dim vector in an EMD group


@dataclass(frozen=True)
class Dim:
    """One axis of a dataset: its name, units and either a linear scale or explicit values.

    ``Dim("scan_y", "[nm]", scale=0.5)`` gives ``offset + scale * i`` for each index ``i``;
    ``Dim("energy", "[eV]", values=[...])`` gives the values as they are;
    ``Dim("tilt", "[deg]", from_values="tilt")`` (the frame axis of a stack only) takes the
    per-frame value ``tilt`` put with each frame, written when the file is finalized.

    With ``values``, ``scale`` and ``offset`` are derived from them: the step and first value of an
    evenly spaced vector (so a dim read back from a file carries what it was written with), NaN
    for an uneven one.
    """

    name: str
    units: str = "[px]"
    scale: float = 1.0
    offset: float = 0.0
    values: Optional[Sequence[float]] = None
    from_values: Optional[str] = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not isinstance(self.units, str):
            raise TypeError(f"Dim name and units must be str, got {self.name!r}, {self.units!r}")
        object.__setattr__(self, "scale", float(self.scale))
        object.__setattr__(self, "offset", float(self.offset))
        if self.values is not None:
            arr = np.asarray(self.values)
            if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.number):
                raise TypeError(f"Dim {self.name!r}: values must be a 1-D numeric sequence")
            object.__setattr__(self, "values", arr)
            linear = linear_axis(arr)
            offset, scale = linear if linear is not None else (float("nan"), float("nan"))
            object.__setattr__(self, "scale", scale)
            object.__setattr__(self, "offset", offset)
        if self.from_values is not None:
            if not isinstance(self.from_values, str) or not self.from_values:
                raise TypeError(f"Dim {self.name!r}: from_values must be the name of a per-frame "
                                f"value, got {self.from_values!r}")
            if self.values is not None:
                raise ValueError(f"Dim {self.name!r}: give values or from_values, not both")

    def vector(self, length: int) -> np.ndarray:
        """The 1-D vector of this axis for ``length`` points."""
        if self.values is not None:
            if len(self.values) < length:
                raise ValueError(
                    f"Dim {self.name!r} has {len(self.values)} values, axis needs {length}")
            return np.asarray(self.values[:length])
        return self.offset + self.scale * np.arange(length, dtype=np.float64)

    def to_json(self) -> dict:
        """A JSON-able description (used to rebuild a growing axis at close or recovery)."""
        out: dict = {"name": self.name, "units": self.units}
        if self.values is not None:  # scale and offset follow from them
            out["values"] = np.asarray(self.values).tolist()
        else:
            out.update(scale=self.scale, offset=self.offset)
        if self.from_values is not None:
            out["from_values"] = self.from_values
        return out

    @classmethod
    def from_json(cls, spec: dict) -> Dim:
        return cls(**spec)

    def __repr__(self) -> str:
        head = f"Dim({self.name!r}, {self.units!r}"
        if self.from_values is not None:
            return f"{head}, from_values={self.from_values!r})"
        if self.values is None:
            return f"{head}, scale={self.scale:g}, offset={self.offset:g})"
        n = len(self.values)
        if np.isfinite(self.scale):
            return f"{head}, scale={self.scale:g}, offset={self.offset:g}, {n} points)"
        return f"{head}, values=[{self.values[0]:g} .. {self.values[-1]:g}], {n} points)"


def linear_axis(values: Sequence[float]) -> Optional[tuple[float, float]]:
    """(offset, scale) of an evenly spaced vector, to 12 significant digits (an axis written with
    scale 0.25, offset -3.2 gives back 0.25 and -3.2, not their rounding errors); None if the
    vector is not evenly spaced."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        return 0.0, 1.0
    if v.size == 1:
        return _round12(float(v[0])), 1.0
    step = np.diff(v)
    scale = float(v[-1] - v[0]) / (v.size - 1)
    if scale == 0 or not np.allclose(step, scale, rtol=1e-6, atol=1e-12 * abs(scale)):
        return None
    return _round12(float(v[0])), _round12(scale)


def _round12(x: float) -> float:
    return float(f"{x:.12g}")


def default_dims(ndim: int, n_frame_axes: int = 2) -> list[Dim]:
    """Index vectors for each axis: scan/frame-number axes first, then the detector axes in [px]."""
    frame_names = (["detector_y", "detector_x"][2 - n_frame_axes:] if n_frame_axes <= 2
                   else [f"detector_{i}" for i in range(n_frame_axes)])
    n_outer = ndim - n_frame_axes
    if n_outer == 1:
        outer = [Dim("frame", "[index]")]
    elif n_outer == 2:
        outer = [Dim("scan_y", "[index]"), Dim("scan_x", "[index]")]
    else:
        outer = [Dim(f"scan_{i}", "[index]") for i in range(n_outer)]
    return outer + [Dim(n, "[px]") for n in frame_names]


def resolve_dims(dims: Optional[Sequence[Dim]], shape: tuple[int, ...], n_frame_axes: int,
                 growing_axis0: bool, is_scan: bool = False) -> list[Dim]:
    """Check user dims against the data shape (one per axis), or make default ones.

    ``from_values`` is allowed only on axis 0 of a stack (not a scan, whose positions are a grid).
    """
    if dims is None:
        return default_dims(len(shape), n_frame_axes)
    dims = list(dims)
    if len(dims) != len(shape):
        raise ValueError(f"dims: expected {len(shape)} (one per data axis {shape}), got {len(dims)}")
    for axis, dim in enumerate(dims):
        if not isinstance(dim, Dim):
            raise TypeError(f"dims[{axis}] must be an emdstream.Dim, got {type(dim).__name__}")
        if dim.from_values is not None and (axis != 0 or is_scan or n_frame_axes == len(shape)):
            where = "a scan axis" if is_scan and axis < len(shape) - n_frame_axes else "a frame axis"
            raise ValueError(f"dims[{axis}] {dim.name!r}: from_values={dim.from_values!r} on "
                             f"{where}; only the frame axis of a stack (axis 0, no scan_shape) "
                             f"takes its values from the frames")
        if dim.values is not None:
            if axis == 0 and growing_axis0:
                raise ValueError("dims[0] of an open-ended stream must use scale/offset, not values")
            if len(dim.values) != shape[axis]:
                raise ValueError(f"dims[{axis}] {dim.name!r}: {len(dim.values)} values for an "
                                 f"axis of length {shape[axis]}")
    return dims


def dims_to_json(dims: Sequence[Dim]) -> str:
    return json.dumps([d.to_json() for d in dims])


def dims_from_json(text: str) -> list[Dim]:
    return [Dim.from_json(spec) for spec in json.loads(text)]
