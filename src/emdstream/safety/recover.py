"""Finishing a file whose writer was killed (or lost power), at any moment of its life.

What ``recover`` decides from, in order (never from the wording of HDF5's errors):

1. leftovers of a killed ``recover`` or compaction (temporary copies: removed) and a journal next
   to the file (``journal``): a complete one is applied (the writer was killed while finalizing;
   the file is then finished), an incomplete one deleted (the file was untouched);
2. the chunk log (``chunklog``): a file that has one, not marked finished, is rebuilt from it
   (``salvage``): the skeleton it holds plus every chunk whose bytes still match their checksum,
   whatever state HDF5's metadata is in (a log naming the file a killed salvage made is removed);
3. otherwise (a finished file, or one written without a chunk log) HDF5 itself, in a child
   process under a timeout (``probe``): the superblock's flags are cleared and its end-of-file
   address set to the file's real end (as ``h5clear -s -i``), each stream with streaming state is
   finalized through the journal, and the result must open and read back in plain h5py (every
   chunk index, both ends of every dataset), or ``recover`` says so in one line rather than claim
   success.

A file a live writer holds (``filelock``) is refused. Killing ``recover`` itself at any moment
leaves a file that a second ``recover`` finishes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from emdstream.safety import chunklog, compact, journal, past_end, probe, salvage
from emdstream.safety.filelock import writer_holds
from emdstream.safety.h5open import check_path
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
    finished file is untouched. ValueError for a file that cannot be recovered, RuntimeError
    while a writer holds it."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        check_path(path)  # says what the path is instead
    changed = _remove_leftovers(path)
    try:
        if past_end.blocks_past_end_of(path):  # reserved by a killed writer (write.reserve)
            _refuse_if_held(path)
            past_end.free_past_end_of(path)
    except OSError:  # a read-only file or disk: only blocks past the end are at stake
        pass
    if os.path.exists(journal.journal_path(path)):
        _refuse_if_held(path)
        if journal.replay(path) is True:
            changed = True
            chunklog.remove(path)  # the file is finished
    log = chunklog.read(path)
    if log is not None and log.salvaged == chunklog.fingerprint(path):  # a killed salvage's
        _refuse_if_held(path)
        chunklog.remove(path)
        return RecoveryReport(path, True)
    if log is not None and not log.finalized and chunklog.belongs_to(log, path):
        _refuse_if_held(path)
        counts = salvage.salvage(path, log, RECOVERED)
        return RecoveryReport(path, True, {name: n for name, (n, _) in counts.items()})
    if os.path.exists(chunklog.log_path(path)):  # finished, never durable, or another file's
        _refuse_if_held(path)
        chunklog.remove(path)
    return _recover_with_hdf5(path, changed)


def _remove_leftovers(path: str) -> bool:
    changed = False
    if os.path.exists(compact.temp_path(path)):  # a killed compaction's copy (not a live one's)
        _refuse_if_held(path)
        changed = compact.remove_leftover(path)
    tmp = path + salvage.SUFFIX
    for leftover in (journal.journal_path(tmp), tmp):  # a killed salvage's copy
        if os.path.exists(leftover):
            _refuse_if_held(path)
            os.remove(leftover)
    return changed


def _recover_with_hdf5(path: str, changed: bool) -> RecoveryReport:
    check_path(path)
    sb = read_superblock(path)  # ValueError when damaged: nothing changed
    size = os.path.getsize(path)
    if sb.flags or size != sb.offset + sb.eof:
        try:  # a finished file keeps its superblock; a killed writer's file needs it fixed
            names = probe.run("streams", path)
        except ValueError:
            names = None
        if names is None or names:
            _refuse_if_held(path)
            changed = clear_consistency_flags(path) or changed
    names = probe.run("streams", path)
    if not names:
        if size < sb.offset + sb.eof and not sb.flags:  # a finished file, not a killed writer's
            _refuse_if_cut_short(path, size, sb.offset + sb.eof)
        return RecoveryReport(path, changed=changed)
    _refuse_if_held(path)
    clear_consistency_flags(path)
    counts = probe.run("finalize", path, RECOVERED)
    try:
        probe.run("read", path)
    except ValueError as exc:
        raise ValueError(f"{path} was finalized but does not read back ({exc}); its frames may "
                         f"be damaged") from None
    compact.compact_if_worth_it(path)
    return RecoveryReport(path, True, {name: n for name, (n, _) in counts.items()})


def _refuse_if_cut_short(path: str, size: int, end: int) -> None:
    """A finished file extended to the end its superblock records must read back; else it was
    cut short (a truncated copy): given back its size, and ValueError."""
    try:
        probe.run("read", path)
    except probe.NoAnswer:  # hung or crashed: no verdict on its bytes; finished as before
        return
    except ValueError as exc:
        if os.path.getsize(path) == end:  # else something (a copy still running) writes to it
            os.truncate(path, size)
        raise ValueError(f"{path} has {size} of the {end} bytes its superblock records and does "
                         f"not read ({exc}): cut short, e.g. an interrupted copy; the missing "
                         f"bytes cannot be recovered") from None


def _refuse_if_held(path: str) -> None:
    if writer_holds(path):
        raise RuntimeError(f"{path} is being written by a running process (or open in one); "
                           f"recover it after that process has ended")
