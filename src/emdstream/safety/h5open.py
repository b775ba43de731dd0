"""Opening a file that may be EMD: checks that name what is wrong, SWMR only where needed."""
from __future__ import annotations

import os

import h5py
import hdf5plugin  # noqa: F401  (registers the compression filters for reading)

from emdstream.errors import one_line
from emdstream.format.layout import MASTER_ATTR
from emdstream.safety.superblock import read_superblock


def check_path(path: str | os.PathLike) -> None:
    """Raise FileNotFoundError / IsADirectoryError / PermissionError / ValueError unless ``path``
    is a readable HDF5 file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a directory, not an EMD file")
    if not os.access(path, os.R_OK):
        raise PermissionError(f"no permission to read {path}")
    if not h5py.is_hdf5(path):
        raise ValueError(f"{path} is not an HDF5 file")


def needs_swmr(path: str | os.PathLike, live: bool = False) -> bool:
    """The one rule for opening a file in SWMR mode: where a writer may be at work.

    Always when the superblock's write flags are set (a file being written, or from a killed
    writer). For a ``live`` reader (one following the file) also when the file is shorter than its
    recorded end (a writer's last write failed; the writer may still be at work) and for a master
    file (HDF5 opens its parts with the master's flags, and a part may be being written). Other
    opens are without SWMR: SWMR reading skips HDF5's checks, and HDF5 then hangs on a truncated
    file. A damaged superblock: False (HDF5's own open then says what is wrong)."""
    try:
        sb = read_superblock(path)
    except (ValueError, OSError):
        return False
    if sb.flags:
        return True
    if not live:
        return False
    if os.path.getsize(path) < sb.offset + sb.eof:
        return True
    with h5py.File(path, "r") as f:
        return _is_master(f)


def open_h5(path: str | os.PathLike, live: bool = False) -> h5py.File:
    """Open read-only, in SWMR mode where ``needs_swmr(path, live)`` says so."""
    return h5py.File(path, "r", swmr=needs_swmr(path, live))


def _is_master(f: h5py.File) -> bool:
    data = f.get("data")
    return isinstance(data, h5py.Group) and any(
        MASTER_ATTR in g.attrs for g in data.values() if isinstance(g, h5py.Group))


def require_emd_like(f: h5py.File) -> None:
    """ValueError unless the file has an EMD version attribute or a ``/data`` group: enough to
    call a broken EMD file broken rather than no EMD file."""
    if "version_major" not in f.attrs and not isinstance(f.get("data"), h5py.Group):
        raise ValueError(f"{f.filename} is an HDF5 file but not an EMD file "
                         f"(no version_major attribute, no /data group)")


def open_emd(path: str | os.PathLike, what: str = "") -> h5py.File:
    """``check_path``, then the file open read-only (``open_h5``) if it looks like EMD; ValueError
    (naming ``what`` the file was meant to be) otherwise."""
    check_path(path)
    try:
        f = open_h5(path)
    except OSError as exc:
        raise ValueError(f"HDF5 cannot open {what}{os.fspath(path)}: {one_line(exc)}") from None
    try:
        require_emd_like(f)
    except BaseException:
        f.close()
        raise
    return f


def require_emd(path: str | os.PathLike) -> None:
    """``check_path``, then ValueError unless the file opens and looks like EMD."""
    open_emd(path).close()
