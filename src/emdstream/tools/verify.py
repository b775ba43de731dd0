"""``emdstream verify``: check a file against EMD v0.2 and, optionally, load it with the usual readers.

``verify(path)`` returns one line per problem (an empty list: the file is fine). It raises for paths
that are no EMD file at all (missing, a directory, not HDF5, HDF5 without any EMD structure):
those are mistakes of the caller, not defects of the file.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Optional

import h5py
import hdf5plugin  # noqa: F401  (registers the compression filters for reading)
import numpy as np

from emdstream.errors import one_line
from emdstream.format import counted, layout
from emdstream.format.blocks import frame_slots, iter_blocks
from emdstream.format.dims import DIM_KEY
from emdstream.safety import filelock
from emdstream.safety.h5open import check_path, open_h5, require_emd_like
from emdstream.tools.reader_check import check_readers

EMD_VERSION = {"version_major": 0, "version_minor": 2}


# --- the checks ----------------------------------------------------------------------------------
def verify(path: str | os.PathLike, readers: bool = False) -> list[str]:
    """Problems of an EMD v0.2 file, one line each; ``[]`` when it is fine (``verify_report`` also
    gives the readers that were not tried)."""
    return verify_report(path, readers)[0]


def verify_report(path: str | os.PathLike, readers: bool = False) -> tuple[list[str], list[str]]:
    """(problems of an EMD v0.2 file, one line each; notes): ``([], notes)`` when it is fine.

    Checks the version attributes, every ``/data/<name>`` group (emd_group_type, one 1-D dim vector
    per axis with the axis length and name/units attributes, the data readable end to end, and
    emdstream's frame counts and ``complete`` where a group has any of them: files from other
    software carry none) and that no writer left it unfinished. ``readers=True`` also loads it with
    ``ncempy.io.read``, ``rsciio.emd.file_reader`` and plain h5py (the first two read whole datasets
    into memory); a reader that is not installed is a note with how to install it, not a
    problem. Raises FileNotFoundError / ValueError ... for paths that are no EMD file at all.
    """
    path = os.fspath(path)
    check_path(path)
    try:
        f = open_h5(path)
    except OSError as exc:
        return [f"{path}: HDF5 cannot open it: {one_line(exc)}"], []
    with f:
        require_emd_like(f)
        unfinished = {name: _committed(f, name) for name in layout.stream_names(f)}
        problems = _check_root(f)
        shapes = {}
        for name, item in (f["data"].items() if isinstance(f.get("data"), h5py.Group) else ()):
            if item is None:  # a soft or external link to nothing
                problems.append(f"/data/{name}: a link to nothing ({_link(f['data'], name)})")
                continue
            problems += _check_group(item, name in unfinished)
            if isinstance(item, h5py.Group) and isinstance(item.get("data"), h5py.Dataset):
                shapes[name] = item["data"].shape
    problems += _check_unfinished(path, unfinished)  # with the file closed: see filelock
    problems = _check_master(path, problems)
    unreadable = check_readable(path, list(shapes))
    problems += unreadable
    notes: list[str] = []
    if readers and unreadable:
        problems.append("readers: not tried, the data is unreadable")
    elif readers:
        reader_problems, notes = check_readers(path, shapes)
        problems += reader_problems
    return problems, notes


def _check_root(f: h5py.File) -> list[str]:
    problems = []
    for key, want in EMD_VERSION.items():
        if key not in f.attrs:
            problems.append(f"/: missing attribute {key} (EMD v0.2 needs version_major=0, "
                            f"version_minor=2)")
        elif not _is_int(f.attrs[key], want):
            problems.append(f"/: {key} is {_show(f.attrs[key])}, expected {want}")
    data = f.get("data")
    if not isinstance(data, h5py.Group):
        problems.append("/data: missing (EMD keeps each dataset in a group /data/<name>)")
    elif not any(_is_int(g.attrs.get("emd_group_type"), 1) for g in data.values()
                 if isinstance(g, h5py.Group)):
        problems.append("/data: no group with emd_group_type=1, so EMD readers find no dataset")
    return problems


def _check_group(group, unfinished: bool) -> list[str]:
    where = group.name
    if not isinstance(group, h5py.Group):
        return [f"{where}: a dataset; EMD v0.2 wants a group /data/<name> with emd_group_type=1"]
    problems = []
    kind = group.attrs.get("emd_group_type")
    if kind is None:
        problems.append(f"{where}: missing attribute emd_group_type (=1)")
    elif not _is_int(kind, 1):
        problems.append(f"{where}: emd_group_type is {_show(kind)}, expected the integer 1")
    data = group.get("data")
    if not isinstance(data, h5py.Dataset):
        return problems + [f"{where}/data: missing (the group's data array)"]
    for axis, length in enumerate(data.shape):
        problems += _check_dim(group, axis, length)
    extra = sorted(int(m.group(1)) for m in map(DIM_KEY.match, group) if m)
    problems += [f"{where}/dim{n}: data has {data.ndim} axes, so only dim1..dim{data.ndim} belong"
                 for n in extra if n > data.ndim or n < 1]
    if not unfinished:
        problems += _check_counts(group, data.shape)
        problems += counted.check(group)  # a counted stream's events (format.counted)
    return problems


def _check_dim(group: h5py.Group, axis: int, length: int) -> list[str]:
    where = f"{group.name}/dim{axis + 1}"
    dim = group.get(f"dim{axis + 1}")
    if dim is None:
        return [f"{where}: missing (no dim vector for data axis {axis} of length {length})"]
    if not isinstance(dim, h5py.Dataset):
        return [f"{where}: a group; expected a 1-D dataset of {length} values"]
    problems = []
    if dim.ndim != 1:
        hint = " (rosettasciio fails on (N, 1))" if dim.size == length else ""
        problems.append(f"{where}: shape {dim.shape}; EMD v0.2 wants a 1-D vector of shape "
                        f"({length},){hint}")
    elif dim.shape[0] != length:
        problems.append(f"{where}: {dim.shape[0]} values, but data axis {axis} has {length}")
    for attr in ("name", "units"):
        if attr not in dim.attrs:
            problems.append(f"{where}: missing attribute {attr}")
        elif not isinstance(dim.attrs[attr], (str, bytes)):
            problems.append(f"{where}: attribute {attr} is not a string: {_show(dim.attrs[attr])}")
    try:
        dim[()]
    except Exception as exc:  # any failure to read is the finding
        problems.append(f"{where}: unreadable: {one_line(exc)}")
    return problems


def _check_counts(group: h5py.Group, shape: tuple[int, ...]) -> list[str]:
    """emdstream's frame counts, for groups that have any of them (other software writes none)."""
    keys = ("frames_written", "frames_dropped", "complete")
    attrs = group.attrs
    if not any(k in attrs for k in keys):
        return []
    where = group.name
    problems = [f"{where}: missing attribute {k} (emdstream writes frames_written, frames_dropped "
                f"and complete when it finishes a file)" for k in keys if k not in attrs]
    if "complete" in attrs and not bool(attrs["complete"]):
        problems.append(f"{where}: complete is False: the file was not finalized")
    slots = frame_slots(shape, attrs.get("frame_ndim"))
    written, dropped = int(attrs.get("frames_written", 0)), int(attrs.get("frames_dropped", 0))
    if written < 0 or dropped < 0:
        problems.append(f"{where}: negative frame count (frames_written={written}, "
                        f"frames_dropped={dropped})")
    elif written + dropped > slots:
        problems.append(f"{where}: frames_written ({written}) + frames_dropped ({dropped}) exceed "
                        f"the {slots} frame slots of data shape {shape}")
    listed = np.asarray(attrs.get("dropped_frames", np.zeros(0, np.int64))).reshape(-1)
    if listed.size != dropped and (listed.size or dropped):
        problems.append(f"{where}: dropped_frames lists {listed.size} frames, frames_dropped says "
                        f"{dropped}")
    if listed.size and (listed.min() < 0 or listed.max() >= slots):
        problems.append(f"{where}: dropped_frames has indices outside 0..{slots - 1}")
    return problems


def check_readable(path: str, names: list[str]) -> list[str]:
    """Read the data of each ``/data/<name>`` end to end, block by block, in a child process: a
    corrupt chunk can crash a compression filter (and with it the process) instead of raising."""
    if not names:
        return []
    env = dict(os.environ)  # the child imports this very emdstream, installed or not
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    child = subprocess.run([sys.executable, "-m", "emdstream.tools.verify", "--read-through", path, *names],
                           capture_output=True, text=True, env=env)
    problems, at = [], None
    for line in child.stdout.splitlines():
        kind, _, text = line.partition(" ")
        if kind == "at":
            at = text
        elif kind == "problem":
            problems.append(text)
    if child.returncode != 0:
        how = (f"crashed ({signal.Signals(-child.returncode).name})" if child.returncode < 0
               else f"failed: {(child.stderr.strip().splitlines() or ['?'])[-1]}")
        problems.append(f"{at or path}: reading the data {how}: a corrupt chunk or a broken "
                        f"compression filter")
    return problems


def _read_through(path: str, names: list[str]) -> None:
    """The child's side of ``check_readable``: ``at <where>`` before each block is read,
    ``problem <text>`` for the first block of a dataset that raises."""
    with open_h5(path) as f:
        for name in names:
            data = f[f"data/{name}/data"]
            for selection in iter_blocks(data):
                where = f"{data.name}[{', '.join(f'{s.start}:{s.stop}' for s in selection)}]"
                print("at", where, flush=True)
                try:
                    data[selection]
                except Exception as exc:  # a filter error, a missing chunk...: the finding itself
                    print("problem", f"{where}: unreadable: {one_line(exc)}", flush=True)
                    break


def _committed(f: h5py.File, name: str) -> Optional[int]:
    try:
        return layout.read_progress(f[layout.state_path(name)])[0]
    except Exception:  # a damaged state group is still an unfinished file
        return None


def _check_unfinished(path: str, committed: dict[str, Optional[int]]) -> list[str]:
    """Groups a writer left unfinished; call with the file closed (an open reader looks like a
    writer to ``filelock``)."""
    live = bool(committed) and filelock.writer_holds(path)
    problems = []
    for name, slots in committed.items():
        count = "" if slots is None else f", {slots} frame slots committed"
        problems.append(f"/data/{name}: unfinished: " + (
            f"a running process is writing it (or has it open){count}; verify it after the "
            f"writer has closed it" if live else
            f"its writer stopped without closing (state group /{layout.state_path(name)} "
            f"left{count}): run emdstream recover {path}"))
    return problems


def _check_master(path: str, problems: list[str]) -> list[str]:
    """A master file (``write_master``): every part present, fitting, finished and complete, and
    the master's counts those of the parts now. Its ``complete`` says whether every part was
    finished; the master's own lines say which is not, in place of "not finalized"."""
    from emdstream.parallel.master_check import verify_master

    found = verify_master(path)
    if not found:
        return problems
    groups = {line.split(":", 1)[0] for line in found}
    return [p for p in problems if not (p.split(":", 1)[0] in groups and "complete is False" in p)
            ] + found


def _is_int(value, want: int) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value == want


def _show(value) -> str:
    """An attribute value as a message shows it: ``3``, ``'1'``, not ``np.int64(3)``."""
    return repr(value.item() if isinstance(value, np.generic) else value)


# --- the command ---------------------------------------------------------------------------------
def summary(path: str | os.PathLike) -> str:
    """One line on a file that verified: its datasets, shapes and frame counts."""
    from emdstream.read.file import EMDFile

    def counts(ds) -> str:  # files not written by emdstream have none
        dropped = f" ({ds.frames_dropped} dropped)" if ds.frames_dropped else ""
        return f", {ds.frames_written} frames{dropped}" if "frames_written" in ds.group.attrs else ""

    with EMDFile(path) as f:
        parts = [f"/data/{n} {ds.data.shape} {ds.data.dtype}{counts(ds)}" for n, ds in f.datasets.items()]
        return f"{os.fspath(path)} is EMD v{f.version[0]}.{f.version[1]}: " + "; ".join(parts)


if __name__ == "__main__" and sys.argv[1:2] == ["--read-through"]:
    _read_through(sys.argv[2], sys.argv[3:])


def _link(group: h5py.Group, name: str) -> str:
    link = group.get(name, getlink=True)
    return f"{type(link).__name__} to {getattr(link, 'path', '?')}"
