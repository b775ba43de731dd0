"""Metadata groups (/microscope, /user, /sample) and timestamped comments."""
from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import Any, Optional

import numpy as np

METADATA_GROUPS = ("microscope", "user", "sample")


def check_metadata(group: str, values: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """Return ``values`` as a dict of HDF5-storable attributes, or raise TypeError naming the bad key.

    Allowed: numbers, strings, bools and numeric (or bool) arrays / lists.
    """
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise TypeError(f"{group}: metadata must be a mapping of name -> value, "
                        f"got {type(values).__name__}")
    checked = {}
    for key, value in values.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"{group}: metadata keys must be non-empty str, got {key!r}")
        checked[key] = _storable(group, key, value)
    return checked


def _storable(group: str, key: str, value: Any) -> Any:
    if isinstance(value, str):
        if "\x00" not in value:
            return value
    elif isinstance(value, (bool, np.bool_, int, float, np.integer, np.floating, list, tuple,
                            np.ndarray)):
        try:
            arr = np.asarray(value)
        except (ValueError, OverflowError):  # ragged lists
            arr = None
        if arr is not None and arr.dtype.kind in "biuf" and arr.size > 0:
            return value if arr.ndim == 0 and not isinstance(value, (list, tuple)) else arr
    raise TypeError(f"{group}[{key!r}]: unsupported metadata value of type {type(value).__name__} "
                    f"({value!r:.60}); use a number (within 64 bits), str (without NUL), bool or "
                    f"a non-empty numeric array")


def utc_key(when: Optional[_dt.datetime] = None) -> str:
    """EMD comment key for a moment, e.g. ``2026-11-24 15:01:29 (UTC)``."""
    when = when or _dt.datetime.now(_dt.timezone.utc)
    return when.astimezone(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S (UTC)")


def unique_key(key: str, taken) -> str:
    """``key``, or ``key #2``, ``key #3``... so two comments in the same second both survive."""
    if key not in taken:
        return key
    n = 2
    while f"{key} #{n}" in taken:
        n += 1
    return f"{key} #{n}"
