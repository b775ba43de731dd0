"""Opening a file that may be EMD: checks that name what is wrong, SWMR only where needed."""
from __future__ import annotations

import os

import h5py
import hdf5plugin  # noqa: F401  (registers the compression filters for reading)

from emdstream.errors import one_line
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


def needs_swmr(path: str | os.PathLike) -> bool:
    """True if the superblock's write flags are set (a file being written, or from a killed
    writer), so that only a SWMR reader opens it. Open other files without SWMR: SWMR reading
    skips HDF5's checks, and HDF5 then hangs on a truncated file. A damaged superblock: False
    (HDF5's own open then says what is wrong)."""
    try:
        return read_superblock(path).flags != 0
    except (ValueError, OSError):
        return False


def open_h5(path: str | os.PathLike) -> h5py.File:
    """Open read-only, in SWMR mode only where needed (see ``needs_swmr``)."""
    return h5py.File(path, "r", swmr=needs_swmr(path))


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
