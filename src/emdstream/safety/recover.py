"""Finishing a file whose writer was killed, at any moment of its life.

What ``recover`` decides from, in order (never from the wording of HDF5's errors):

1. a journal next to the file (``journal``): a complete one is applied (the writer was killed
   while finalizing; the file is then finished), an incomplete one deleted (the file was untouched);
2. the superblock (``superblock``): a damaged one is reported and nothing is changed; a file
   shorter than its recorded end (a failed last write) is extended; the write flags a killed
   writer leaves set are cleared;
3. the streaming state (``layout``): each stream still having one is finalized through the journal,
   holding exactly the frames its last flush recorded as durable; then compacted (``compact``).

A file a live writer holds (``filelock``) is refused. Killing ``recover`` itself at any moment
leaves a file that a second ``recover`` finishes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import h5py

from emdstream.errors import one_line
from emdstream.format import layout
from emdstream.safety import compact, journal
from emdstream.safety.filelock import writer_holds
from emdstream.safety.h5open import check_path, require_emd_like
from emdstream.safety.superblock import clear_consistency_flags, read_superblock

RECOVERED = "emdstream: recovered after the writer stopped without closing"


@dataclass
class RecoveryReport:
    path: str
    changed: bool
    frames_written: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        if not self.changed:
            return f"{self.path}: already a finished EMD file; nothing changed"
        if not self.frames_written:
            return f"{self.path}: finished (an interrupted finalization was completed)"
        counts = ", ".join(f"/data/{k}: {n} frames" for k, n in self.frames_written.items())
        return f"{self.path}: recovered ({counts})"


def recover(path: str | os.PathLike) -> RecoveryReport:
    """Turn a file left by a killed writer (or a killed ``recover``) into a finished EMD file; a
    finished file is untouched. ValueError for a file that cannot be recovered (nothing changed),
    RuntimeError while a writer holds it."""
    path = os.fspath(path)
    check_path(path)
    changed = False
    if os.path.exists(compact.temp_path(path)):  # a killed compaction's copy (not a live one's)
        _refuse_if_held(path)
        changed = compact.remove_leftover(path)
    if os.path.exists(journal.journal_path(path)):
        _refuse_if_held(path)
        changed = journal.replay(path) is True
    sb = read_superblock(path)  # ValueError when damaged: nothing changed
    if os.path.getsize(path) < sb.offset + sb.eof:  # the writer's last write failed (disk full)
        _refuse_if_held(path)
        clear_consistency_flags(path)
        sb = read_superblock(path)
    try:
        f = h5py.File(path, "r", swmr=bool(sb.flags))
    except OSError as exc:
        raise ValueError(f"HDF5 cannot open {path}: {one_line(exc)}; nothing was changed") from None
    with f:
        require_emd_like(f)
        names = layout.stream_names(f)
    if not names:
        return RecoveryReport(path, changed=changed)
    _refuse_if_held(path)
    clear_consistency_flags(path)
    counts = journal.finalize(path, RECOVERED)
    compact.compact_if_worth_it(path)
    return RecoveryReport(path, True, {name: written for name, (written, _) in counts.items()})


def _refuse_if_held(path: str) -> None:
    if writer_holds(path):
        raise RuntimeError(f"{path} is being written by a running process (or open in one); "
                           f"recover it after that process has ended")
