"""An emdstream 4-D scan as a py4DSTEM DataCube: ``emdstream.open(path)["name"].to_py4dstem()``.

``dc.data[y, x]`` is the frame written at scan position (y, x) (py4DSTEM's Rx, Ry are the scan's
first and second axes, Qx, Qy the frame's rows and columns). The calibration takes the pixel sizes
from the dims where py4DSTEM can express them: one evenly spaced step for both scan axes in nm, Å
(pm, µm converted), one for both frame axes in 1/Å (1/nm converted), mrad (rad converted) or
pixels; otherwise that space stays in pixels, with a warning saying why. py4DSTEM pins
numpy < 2: install it in its own environment (``pip install py4DSTEM hdf5plugin``, or
``pip install '.[py4dstem]'`` in the emdstream checkout).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import h5py

from emdstream.errors import install_hint
from emdstream.format.dims import Dim, linear_axis
from emdstream.interop.emd1 import file_metadata, frame_ndim, link_name, plain_units

if TYPE_CHECKING:
    from py4DSTEM import DataCube

    from emdstream.read.dataset import EMDDataset


R_UNITS = {"nm": ("nm", 1.0), "a": ("A", 1.0), "å": ("A", 1.0), "angstrom": ("A", 1.0),
           "pm": ("A", 0.01), "um": ("nm", 1e3), "µm": ("nm", 1e3)}
Q_UNITS = {"1/a": ("A^-1", 1.0), "a^-1": ("A^-1", 1.0), "1/å": ("A^-1", 1.0), "å^-1": ("A^-1", 1.0),
           "1/nm": ("A^-1", 0.1), "nm^-1": ("A^-1", 0.1), "mrad": ("mrad", 1.0),
           "rad": ("mrad", 1e3), "px": ("pixels", 1.0), "pixel": ("pixels", 1.0),
           "pixels": ("pixels", 1.0), "index": ("pixels", 1.0)}


def to_py4dstem(ds: EMDDataset) -> DataCube:
    """A py4DSTEM ``DataCube`` of ``ds`` (an ``EMDDataset``: a 2-D scan of 2-D frames), read into
    memory, calibrated from its dims; /microscope, /sample, /user and /comments are attached to
    its root as metadata dicts (``dc.root.metadata["microscope"]``)."""
    try:
        import py4DSTEM
        from emdfile import Metadata
    except ImportError as exc:
        raise ImportError("to_py4dstem needs py4DSTEM, which needs numpy < 2: in its own "
                          f"environment, {install_hint('py4DSTEM', 'py4dstem')}") from exc
    if not is_datacube(ds.data, frame_ndim(ds)):
        raise ValueError(f"{ds.name}: a py4DSTEM DataCube is a 2-D scan of 2-D frames; this "
                         f"dataset has shape {ds.data.shape} with {frame_ndim(ds)} frame axes")
    cal, notes = py4dstem_calibration(ds.dims)
    for note in notes:
        warnings.warn(f"to_py4dstem: {note}", stacklevel=2)
    cube = py4DSTEM.DataCube(data=ds.data[()], name=ds.name)
    cube.calibration.set_R_pixel_size(cal["R_pixel_size"])
    cube.calibration.set_R_pixel_units(cal["R_pixel_units"])
    cube.calibration.set_Q_pixel_size(cal["Q_pixel_size"])
    cube.calibration.set_Q_pixel_units(cal["Q_pixel_units"])
    for group, values in file_metadata(ds).items():
        # emdfile would save a key with "/" as nested groups it cannot read back
        cube.root.metadata = Metadata(name=group, data={link_name(k): v for k, v in values.items()})
    return cube


def py4dstem_calibration(dims: Sequence[Dim]) -> tuple[dict[str, Any], list[str]]:
    """py4DSTEM calibration (R/Q pixel size and units) of 4-D dims (scan_y, scan_x, k_y, k_x), and
    what could not be carried (py4DSTEM has one pixel size for both axes of a space)."""
    cal: dict[str, Any] = {"R_pixel_size": 1.0, "R_pixel_units": "pixels",
                           "Q_pixel_size": 1.0, "Q_pixel_units": "pixels", "QR_flip": False}
    notes = []
    for space, pair, table in (("R", dims[:2], R_UNITS), ("Q", dims[2:4], Q_UNITS)):
        axes = [linear_axis(d.values if d.values is not None else d.vector(2)) for d in pair]
        units = {plain_units(d.units).lower() for d in pair}
        names = " and ".join(d.name for d in pair)
        if None in axes:
            notes.append(f"{names}: not evenly spaced; {space} left in pixels")
        elif len(units) != 1 or units.pop() not in table:
            notes.append(f"{names}: units {pair[0].units!r}/{pair[1].units!r} not known to "
                         f"py4DSTEM; {space} left in pixels")
        elif not math.isclose(axes[0][1], axes[1][1], rel_tol=1e-6):
            notes.append(f"{names}: different steps {axes[0][1]:g}, {axes[1][1]:g}; py4DSTEM has "
                         f"one {space} pixel size, {space} left in pixels")
        else:
            py_units, factor = table[plain_units(pair[0].units).lower()]
            cal[f"{space}_pixel_size"] = axes[0][1] * factor
            cal[f"{space}_pixel_units"] = py_units
    return cal, notes


def is_datacube(data: h5py.Dataset, frame_ndim: int = 2) -> bool:
    """A py4DSTEM DataCube: a 2-D scan of 2-D frames."""
    return data.ndim == 4 and frame_ndim == 2
