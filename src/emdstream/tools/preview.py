"""``emdstream preview``: a picture of what a file holds.

A scan of 2-D frames (4D-STEM): the mean diffraction pattern (log scale) beside a virtual
bright-field image, the detector summed inside the central disk (pixels of the mean pattern above
half its maximum). Hot and flagged pixels are left out of the detector, the threshold and the
colour scale: pixels at the dtype's maximum (how detectors such as Dectris' mark bad pixels) and
isolated ones far brighter than their neighbourhood. A stack of frames: one frame beside the mean
frame. Spectra: the mean spectrum and the total per position. Single values per position (HAADF):
the image. A file of several streams shows them all, the HAADF image first. Means and sums stream
over chunk-aligned blocks, so the file need not fit in memory; frame slots without a frame (dropped, or
a scan stopped early) are left out. Axes carry the dims' names, units and values.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np

from emdstream.errors import install_hint
from emdstream.format import counted
from emdstream.format.blocks import iter_blocks
from emdstream.format.dims import Dim
from emdstream.read.dataset import EMDDataset
from emdstream.read.file import EMDFile
from emdstream.safety.h5open import needs_swmr

BLOCK_BYTES = 16 << 20  # blocks read at once while summing
MAX_IMAGE_SIDE = 2048   # a bigger 2-D image is shown with every n-th pixel
HOT_FACTOR = 10.0       # a pixel this many times brighter than its neighbourhood is hot
MARKED_PIXELS = 100     # up to this many left-out pixels are circled in the mean pattern
INSTALL_HINT = f"preview needs matplotlib: {install_hint('matplotlib', 'preview')}"


@dataclass
class Panel:
    """One plot: an image (``values`` 2-D, ``axes`` = (vertical, horizontal) dims) or a line
    (``values`` 1-D, ``axes`` = (horizontal,)); ``outline``: a mask drawn as a contour."""

    title: str
    values: np.ndarray
    axes: tuple[Dim, ...]
    log: bool = False
    outline: Optional[np.ndarray] = None
    outline_label: str = ""
    masked: Optional[np.ndarray] = None  # pixels left out (hot, flagged), shown in their own colour


# --- the arrays ----------------------------------------------------------------------------------
def frame_ndim(ds: EMDDataset) -> int:
    """How many trailing axes a frame has (emdstream records it; else 2, or 1 for 2-D data)."""
    n = ds.group.attrs.get("frame_ndim")
    return int(n) if n is not None else min(2, ds.data.ndim - 1)


def valid_frames(ds: EMDDataset) -> np.ndarray:
    """Boolean over the frame-slot axes: True where a frame was written."""
    lead = ds.data.shape[:ds.data.ndim - frame_ndim(ds)]
    valid = np.zeros(math.prod(lead), dtype=bool)
    valid[:ds.frame_slots] = True
    dropped = np.asarray(ds.dropped_frames, dtype=np.int64)
    valid[dropped[dropped < valid.size]] = False
    return valid.reshape(lead)


def mean_frame(ds: EMDDataset, valid: np.ndarray) -> np.ndarray:
    """The mean of the written frames (float64), summed block by block."""
    data, n_lead = ds.data, valid.ndim
    total = np.zeros(data.shape[n_lead:], dtype=np.float64)
    for sel in iter_blocks(data, BLOCK_BYTES):
        keep = valid[sel[:n_lead]]
        if keep.any():
            total[sel[n_lead:]] += data[sel][keep].sum(axis=0, dtype=np.float64)
    return total / max(1, int(valid.sum()))


def bad_pixels(mean: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Pixels a virtual detector must leave out: flagged ones (the mean at the integer dtype's
    maximum: the pixel holds it in every frame) and hot ones (more than ``HOT_FACTOR`` times both
    the second brightest of their 8 neighbours, so pairs count too, and the pattern's median
    positive value). A bright disk's pixels, edges included, have bright neighbours."""
    bad = np.zeros(mean.shape, dtype=bool)
    if np.dtype(dtype).kind in "ui":
        bad |= mean >= np.iinfo(dtype).max
    if mean.ndim != 2 or min(mean.shape) < 3:
        return bad
    rows, cols = mean.shape
    padded = np.pad(mean, 1, mode="edge")
    neighbours = np.stack([padded[1 + dy:1 + dy + rows, 1 + dx:1 + dx + cols]
                           for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx])
    second = np.sort(neighbours, axis=0)[-2]
    positive = mean[(mean > 0) & ~bad]
    typical = float(np.median(positive)) if positive.size else 0.0
    return bad | ((mean > HOT_FACTOR * second) & (mean > HOT_FACTOR * typical))


def bright_field_disk(mean: np.ndarray, bad: Optional[np.ndarray] = None) -> np.ndarray:
    """The virtual bright-field detector: pixels of the mean pattern above half its maximum,
    ``bad`` pixels left out (of the maximum too)."""
    good = ~bad if bad is not None else np.ones(mean.shape, dtype=bool)
    peak = np.nanmax(mean[good]) if good.any() else 0.0
    if not peak > 0:
        return good  # nothing bright: sum the whole detector (its good pixels)
    return (mean > peak / 2) & good


def virtual_image(ds: EMDDataset, detector: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per scan position, the counts inside ``detector`` (a mask over the frame); NaN where no
    frame was written."""
    data, n_lead = ds.data, valid.ndim
    image = np.zeros(data.shape[:n_lead], dtype=np.float64)
    for sel in iter_blocks(data, BLOCK_BYTES):
        inside = detector[sel[n_lead:]]
        if inside.any():
            image[sel[:n_lead]] += data[sel][..., inside].sum(axis=-1, dtype=np.float64)
    image[~valid] = np.nan
    return image


def panels(ds: EMDDataset) -> list[Panel]:
    """What ``preview`` draws for a dataset, by the shape of its frames and of their grid."""
    if getattr(ds, "counted", False) or counted.SUMMARY_OF_ATTR in ds.group.attrs:
        return _counted(ds)
    dims, n_frame = ds.dims, frame_ndim(ds)
    n_lead = ds.data.ndim - n_frame
    if n_frame == 0 or (n_frame == 1 and n_lead == 1):  # HAADF image; a series of spectra
        return _plain(ds)
    valid = valid_frames(ds)
    if not valid.any():
        raise ValueError(f"/data/{ds.name} has no frames written; nothing to preview")
    mean = mean_frame(ds, valid)
    frame_axes = tuple(dims[n_lead:])
    if n_frame == 1 and n_lead == 2:  # a scan of spectra: the mean one, the total per position
        everywhere = np.ones(mean.shape, dtype=bool)
        return [Panel(f"{ds.name}: mean of {int(valid.sum())} spectra", mean, frame_axes),
                Panel(f"{ds.name}: total counts", virtual_image(ds, everywhere, valid),
                      (dims[0], dims[1]))]
    if n_frame == 2 and n_lead == 1:
        first = int(np.argmax(valid))
        return [Panel(f"frame {first}", ds.data[first].astype(np.float64), frame_axes),
                Panel(f"mean of {int(valid.sum())} frames", mean, frame_axes)]
    if n_frame == 2 and n_lead == 2:
        bad = bad_pixels(mean, ds.data.dtype)
        disk = bright_field_disk(mean, bad)
        shown = np.where(bad, np.nan, mean)  # the colour scale from the good pixels
        return [Panel("mean diffraction pattern (log)", shown, frame_axes, log=True, outline=disk,
                      outline_label=f"virtual detector: > half the peak ({int(disk.sum())} px)",
                      masked=bad),
                Panel("virtual bright field", virtual_image(ds, disk, valid), (dims[0], dims[1]))]
    raise ValueError(f"/data/{ds.name} has {ds.data.ndim} dimensions; preview shows scans and "
                     f"stacks of 2-D frames, spectra and single values")


def _counted(ds: EMDDataset) -> list[Panel]:
    """A counted stream: its counts image and summed pattern; its summary group alone only when
    its stream is not in the file (drawn with it otherwise)."""
    if not getattr(ds, "counted", False):
        stream = ds.group.attrs[counted.SUMMARY_OF_ATTR]
        if ds.file is not None and stream in getattr(ds.file, "datasets", {}):
            return []
        return [Panel(f"{ds.name} (log)", ds.data[()].astype(np.float64), tuple(ds.dims), log=True)]
    image = ds.counts_image.astype(np.float64)
    scan = tuple(ds.dims) if image.ndim == 2 else (ds.dims[0],)
    frame = tuple(ds.dense_dims[-2:])
    return [Panel(f"{ds.name}: events per position", image, scan),
            Panel(f"{ds.name}: summed pattern (log)", ds.summed_pattern.astype(np.float64), frame,
                  log=True)]


def _plain(ds: EMDDataset) -> list[Panel]:
    """A 2-D image (every n-th pixel of a big one) or a line."""
    dims = ds.dims
    if ds.data.ndim == 2:
        step = [max(1, math.ceil(n / MAX_IMAGE_SIDE)) for n in ds.data.shape]
        image = ds.data[::step[0], ::step[1]].astype(np.float64)
        axes = tuple(Dim(d.name, d.units, values=d.values[::s]) for d, s in zip(dims, step))
        title = ds.name if step == [1, 1] else f"{ds.name} (every {step[0]}x{step[1]} pixel)"
        return [Panel(title, image, axes)]
    if ds.data.ndim == 1:
        return [Panel(ds.name, ds.data[()].astype(np.float64), (dims[0],))]
    raise ValueError(f"/data/{ds.name} has {ds.data.ndim} dimensions of single values; preview "
                     f"shows 1-D and 2-D ones")


def compute_panels(path: str | os.PathLike, dataset: Optional[str] = None,
                   ) -> tuple[str, list[Panel]]:
    """(figure title, panels) for ``/data/<dataset>`` of a file; by default for every dataset,
    single-value images (HAADF) first, then frames, then spectra."""
    with EMDFile(path, live=needs_swmr(path)) as f:
        if not f.datasets:
            raise ValueError(f"{os.fspath(path)} holds no dataset (no /data/<name> group)")
        if dataset is not None and dataset not in f.datasets:
            raise ValueError(f"no dataset {dataset!r} in {os.fspath(path)}; it has "
                             f"{', '.join(f.datasets)}")
        chosen = [f.datasets[dataset]] if dataset else sorted(
            f.datasets.values(), key=lambda ds: {0: 0, 2: 1, 1: 2}.get(frame_ndim(ds), 3))
        drawn = [panel for ds in chosen for panel in panels(ds)]
        state = "" if all(ds.complete for ds in chosen) else ", not finished"
        what = (f"/data/{chosen[0].name}  {'x'.join(map(str, chosen[0].data.shape))} "
                f"{chosen[0].data.dtype}" if len(chosen) == 1 else f"{len(chosen)} streams")
        return f"{os.path.basename(os.fspath(path))}  {what}{state}", drawn


# --- the picture ---------------------------------------------------------------------------------
def preview(path: str | os.PathLike, out: str | os.PathLike, dataset: Optional[str] = None) -> str:
    """Draw ``/data/<dataset>`` of an EMD file into the image file ``out`` (PNG; the format follows
    the extension) and return its path. Needs matplotlib (``pip install matplotlib``)."""
    figure(path, dataset).savefig(os.fspath(out), dpi=100)
    return os.fspath(out)


def figure(path: str | os.PathLike, dataset: Optional[str] = None):
    """The matplotlib Figure ``preview`` saves (on an Agg canvas: no pyplot, no GUI backend)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    title, drawn = compute_panels(path, dataset)
    fig = Figure(figsize=(5.2 * len(drawn), 4.6), layout="constrained")
    fig.get_layout_engine().set(h_pad=0.1)  # a clear gap between the file's line and the titles
    FigureCanvasAgg(fig)
    for ax, panel in zip(fig.subplots(1, len(drawn), squeeze=False)[0], drawn):
        _draw(fig, ax, panel)
    # the file's line on the left, in bold: not read as part of the middle panel's title
    fig.suptitle(title, fontsize=10, fontweight="bold", x=0.01, ha="left")
    return fig


def _draw(fig, ax, panel: Panel) -> None:
    ax.set_title(panel.title, fontsize=10)
    if panel.values.ndim == 1:
        ax.plot(_coords(panel.axes[0], panel.values.size), panel.values, lw=1)
        ax.set_xlabel(_label(panel.axes[0]))
        ax.grid(alpha=0.3)
        return
    from matplotlib.colors import LogNorm

    y_dim, x_dim = panel.axes
    rows, cols = panel.values.shape
    x, y = _coords(x_dim, cols), _coords(y_dim, rows)
    from matplotlib import colormaps

    norm = None
    positive = panel.values[panel.values > 0]
    if panel.log and positive.size:
        norm = LogNorm(vmin=positive.min(), vmax=positive.max())
    cmap = colormaps["inferno" if panel.log else "gray"].with_extremes(bad="lime")
    image = ax.imshow(panel.values, extent=(*_edges(x), *_edges(y)[::-1]), origin="upper",
                      norm=norm, cmap=cmap, interpolation="nearest",
                      aspect="equal" if x_dim.units == y_dim.units else "auto")
    _annotate(ax, panel, x, y)
    ax.set_xlabel(_label(x_dim))
    ax.set_ylabel(_label(y_dim))
    fig.colorbar(image, ax=ax, shrink=0.85)


def _annotate(ax, panel: Panel, x: np.ndarray, y: np.ndarray) -> None:
    """The detector's outline and the left-out pixels, with a legend saying what they are."""
    from matplotlib.lines import Line2D

    handles = []
    if panel.outline is not None and panel.outline.any() and not panel.outline.all():
        ax.contour(x, y, panel.outline.astype(float), levels=[0.5], colors="cyan", linewidths=0.8)
        handles.append(Line2D([], [], color="cyan", lw=1, label=panel.outline_label))
    n_masked = int(panel.masked.sum()) if panel.masked is not None else 0
    if n_masked:
        label = f"{n_masked} hot/flagged px, left out"
        if n_masked <= MARKED_PIXELS:
            rows, cols = np.nonzero(panel.masked)
            ax.scatter(x[cols], y[rows], s=40, facecolors="none", edgecolors="lime", linewidths=1)
        handles.append(Line2D([], [], ls="", marker="o", mfc="none", mec="lime", label=label))
    if handles:
        ax.legend(handles=handles, loc="lower left", fontsize=7, framealpha=0.7)


def _label(dim: Dim) -> str:
    units = dim.units.strip()
    if not units:
        return dim.name
    return f"{dim.name} {units}" if units.startswith("[") else f"{dim.name} [{units}]"


def _coords(dim: Dim, n: int) -> np.ndarray:
    """The dim's values as plot coordinates (indices if they are not n numbers)."""
    values = np.asarray(dim.values if dim.values is not None else [], dtype=object)
    try:
        values = values.astype(np.float64)
    except (TypeError, ValueError):
        values = np.zeros(0)
    return values if values.shape == (n,) and np.isfinite(values).all() else np.arange(n, dtype=float)


def _edges(centers: np.ndarray) -> tuple[float, float]:
    """Extent of pixels centred on ``centers`` (for imshow)."""
    if centers.size < 2:
        c = float(centers[0]) if centers.size else 0.0
        return c - 0.5, c + 0.5
    half = (centers[-1] - centers[0]) / (centers.size - 1) / 2
    return float(centers[0] - half), float(centers[-1] + half)
