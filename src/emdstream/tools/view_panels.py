"""Display images for ``emdstream view``: robust colour ranges, binning, and 8-bit codes for the page.

Images go to the page as one byte per pixel: ``UNWRITTEN`` (no frame yet), ``DROPPED`` (the writer
dropped that frame), or a level from ``FIRST_LEVEL`` to 255 within the colour range. The numbers are
for display only; the file holds the data.
"""
from __future__ import annotations

import base64
import math
import warnings
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

UNWRITTEN, DROPPED, FIRST_LEVEL = 0, 1, 2
MAX_SIDE = 512        # a bigger image is binned for display
MAX_LINE = 1024       # a longer line (spectrum) likewise
LOW_PCT, HIGH_PCT = 0.5, 99.5  # the colour range leaves out the extreme 0.5 % at either end


def robust_range(values: np.ndarray) -> Optional[tuple[float, float]]:
    """(low, high) of the finite values without the extreme 0.5 % at either end: a single hot
    pixel (65535) never sets the range, however few pixels there are. None if none is finite."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if not finite.size:
        return None
    lo = float(np.percentile(finite, LOW_PCT, method="higher"))
    hi = float(np.percentile(finite, HIGH_PCT, method="lower"))
    if hi <= lo:  # two values, or all equal but outliers
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size <= 2 else (lo, lo)
    if hi <= lo:
        lo, hi = lo - 0.5, lo + 0.5
    return lo, hi


def quantize(values: np.ndarray, limits: Optional[tuple[float, float]],
             dropped: Optional[np.ndarray] = None) -> np.ndarray:
    """uint8 codes: NaN -> UNWRITTEN, ``dropped`` -> DROPPED, else a level within ``limits``."""
    codes = np.full(values.shape, UNWRITTEN, dtype=np.uint8)
    finite = np.isfinite(values)
    if limits is not None and finite.any():
        lo, hi = limits
        scaled = np.clip((values[finite] - lo) / (hi - lo), 0.0, 1.0)
        codes[finite] = FIRST_LEVEL + np.rint(scaled * (255 - FIRST_LEVEL)).astype(np.uint8)
    if dropped is not None:
        codes[dropped] = DROPPED
    return codes


def shrink(values: np.ndarray, limit: int) -> tuple[np.ndarray, int]:
    """(values binned by the smallest factor that fits every axis into ``limit``, the factor);
    the mean of each bin's finite values, NaN where it has none."""
    factor = max(1, max(math.ceil(n / limit) for n in values.shape)) if values.ndim else 1
    if factor == 1:
        return values, 1
    padded_shape = [math.ceil(n / factor) * factor for n in values.shape]
    padded = np.full(padded_shape, np.nan)
    padded[tuple(slice(0, n) for n in values.shape)] = values
    split = [x for n in padded_shape for x in (n // factor, factor)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN bins
        binned = np.nanmean(padded.reshape(split), axis=tuple(range(1, 2 * values.ndim, 2)))
    return binned, factor


def _bin_any(mask: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return mask
    padded_shape = [math.ceil(n / factor) * factor for n in mask.shape]
    padded = np.zeros(padded_shape, dtype=bool)
    padded[tuple(slice(0, n) for n in mask.shape)] = mask
    split = [x for n in padded_shape for x in (n // factor, factor)]
    return padded.reshape(split).any(axis=tuple(range(1, 2 * mask.ndim, 2)))


@dataclass
class Panel:
    """One picture on the page. ``role``: "navigation" (one value per scan position: click to see
    that frame) or "frame" (a detector frame, or a line for a spectrum). ``values``: NaN where no
    frame is written; ``dropped``: where the writer dropped one; ``log``: shown as log(1 + x)."""

    key: str
    stream: str
    role: str
    title: str
    values: np.ndarray
    dropped: Optional[np.ndarray] = None
    log: bool = False
    cmap: str = "gray"
    note: str = ""
    outline: Optional[np.ndarray] = None  # a mask drawn as its edge (the virtual detector)
    ceiling: Optional[float] = None  # the detector's saturation value: pixels there are counted
    filled: Optional[int] = None  # navigation: frame slots shown so far
    frames_from: Optional[str] = None  # navigation: the stream whose frames a click shows

    def to_json(self) -> dict[str, Any]:
        values = np.asarray(self.values, dtype=np.float64)
        shown = np.log1p(np.maximum(values, 0)) if self.log else values
        shown, factor = shrink(shown, MAX_LINE if shown.ndim == 1 else MAX_SIDE)
        limits = robust_range(shown)
        dropped = _bin_any(self.dropped, factor) if self.dropped is not None else None
        out = {"key": self.key, "stream": self.stream, "role": self.role, "title": self.title,
               "shape": list(shown.shape), "full_shape": list(values.shape), "bin": factor,
               "log": self.log, "cmap": self.cmap, "note": self.note, "filled": self.filled,
               "frames_from": self.frames_from,
               "codes": base64.b64encode(quantize(shown, limits, dropped).tobytes()).decode(),
               "range": None if limits is None else
               [float(np.expm1(x)) if self.log else x for x in limits]}
        if shown.ndim == 1:  # a line: its values as they are
            out["values"] = [float(v) if math.isfinite(v) else None for v in shown]
        if self.outline is not None:
            out["outline"] = base64.b64encode(
                _bin_any(self.outline, factor).astype(np.uint8).tobytes()).decode()
        written = values[np.isfinite(values)]
        out["stats"] = ({"min": float(written.min()), "max": float(written.max()),
                         "mean": float(written.mean())} if written.size else None)
        if out["stats"] and self.ceiling is not None:
            out["stats"]["saturated"] = int(np.count_nonzero(written >= self.ceiling))
        return out
