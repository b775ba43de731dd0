"""Finishing a file whose writer was killed: clear the SWMR flags, trim, write dims and comments."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from . import layout
from .filelock import writer_holds
from .reader import check_path, open_h5, require_emd_like
from .superblock import clear_consistency_flags

RECOVERED = "emdstream: recovered after the writer stopped without closing"


@dataclass
class RecoveryReport:
    path: str
    changed: bool
    frames_written: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        if not self.changed:
            return f"{self.path}: already a finished EMD file; nothing changed"
        counts = ", ".join(f"/data/{k}: {n} frames" for k, n in self.frames_written.items())
        return f"{self.path}: recovered ({counts})"


def recover(path: str | os.PathLike) -> RecoveryReport:
    """Turn a file left by a killed writer into a finished EMD file; a finished file is untouched."""
    path = os.fspath(path)
    check_path(path)
    try:
        f = open_h5(path)
    except OSError as exc:
        if "truncated file" not in str(exc):
            raise
        # the writer's last write failed (disk full, size limit): extend to the recorded end
        _refuse_if_held(path)
        clear_consistency_flags(path)
        f = open_h5(path)
    with f:
        require_emd_like(f)
        names = layout.stream_names(f)
    if not names:
        return RecoveryReport(path, changed=False)
    _refuse_if_held(path)
    clear_consistency_flags(path)
    report = RecoveryReport(path, changed=True)
    with layout.open_for_finalize(path) as f:
        for name in names:
            report.frames_written[name], _ = layout.finalize(f, name, RECOVERED)
    return report


def _refuse_if_held(path: str) -> None:
    if writer_holds(path):
        raise RuntimeError(f"{path} is being written by a running process (or open in one); "
                           f"recover it after that process has ended")
