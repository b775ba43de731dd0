"""Checking frames at ``put``: shape, dtype (lossless casts only); the copy happens in the chunk buffer."""
from __future__ import annotations

from typing import Any

import numpy as np


class FrameSpec:
    """The shape and dtype every frame of a stream must have."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype):
        self.shape = tuple(int(n) for n in shape)
        # stored in native byte order (big-endian frames are converted exactly)
        self.dtype = np.dtype(dtype).newbyteorder("=")
        if any(n < 1 for n in self.shape):  # () is one value per frame slot (e.g. a HAADF signal)
            raise ValueError(f"frame_shape must be a tuple of positive ints, got {shape}")
        if self.dtype.kind not in "biuf":
            raise TypeError(f"dtype must be a numeric (bool, int, uint, float) type, got {self.dtype}")
        self.nbytes = int(np.prod(self.shape)) * self.dtype.itemsize

    def checked(self, frame: Any) -> np.ndarray:
        """``frame`` as an array (not copied) once its shape and dtype fit, or ValueError/TypeError.

        Casts are accepted only when lossless
        (``np.can_cast(..., "safe")``, e.g. uint8 into uint16); complex into real, float into int
        or wider into narrower ints are refused.
        """
        if not isinstance(frame, np.ndarray):
            if not self.shape and isinstance(frame, (int, float)) and not isinstance(frame, bool):
                return self._python_number(frame)
            frame = _as_array(frame, "frame must be a numpy array (or array-like with __array__)")
        if frame.shape != self.shape:
            raise ValueError(f"frame shape {frame.shape} does not match the writer's "
                             f"frame_shape {self.shape}")
        return self._lossless(frame)


    def _python_number(self, value) -> np.ndarray:
        """A Python (or NumPy) number for a scalar stream: a float is taken at the stream's float
        precision, an int must be exact in the stream's dtype."""
        if self.dtype.kind == "f":
            return np.asarray(value, self.dtype)
        if isinstance(value, int) and self.dtype.kind in "iu":
            info = np.iinfo(self.dtype)
            if info.min <= value <= info.max:
                return np.asarray(value, self.dtype)
        raise TypeError(f"value {value!r} cannot be stored losslessly as the stream's dtype "
                        f"{self.dtype}")


    def checked_block(self, frames: Any) -> np.ndarray:
        """``frames`` as an ``(n, *shape)`` array (not copied) once its shape and dtype fit."""
        if not isinstance(frames, np.ndarray):
            frames = _as_array(frames, "frames must be a numpy array of shape (n, *frame_shape)")
        if frames.ndim != len(self.shape) + 1 or frames.shape[1:] != self.shape:
            raise ValueError(f"frames of shape {frames.shape} are not a block (n, *frame_shape) "
                             f"of the writer's frame_shape {self.shape}")
        return self._lossless(frames)

    def _lossless(self, array: np.ndarray) -> np.ndarray:
        if array.dtype != self.dtype and not lossless_cast(array.dtype, self.dtype):
            raise TypeError(f"frame dtype {array.dtype} cannot be stored losslessly as the writer's "
                            f"dtype {self.dtype}; convert it explicitly if that is intended")
        return array


def _as_array(obj: Any, refusal: str) -> np.ndarray:
    """``obj`` as an array (not copied) if it is array-like, else TypeError(refusal)."""
    if not hasattr(obj, "__array__") and not hasattr(obj, "__array_interface__") \
            and not isinstance(obj, memoryview):
        raise TypeError(f"{refusal}, got {type(obj).__name__}")
    return np.asarray(obj)


def lossless_cast(src: np.dtype, dst: np.dtype) -> bool:
    """``np.can_cast(src, dst, "safe")``, minus int64/uint64 -> float64, which rounds above 2**53."""
    if not np.can_cast(src, dst, "safe"):
        return False
    if src.kind in "iu" and dst.kind == "f":
        return np.iinfo(src).bits <= np.finfo(dst).nmant + 1
    return True
