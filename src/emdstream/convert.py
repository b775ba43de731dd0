"""``emdstream convert``: EMD v0.2 <-> EMD 1.0 (the emdfile layout that py4DSTEM reads).

Compressed chunks are copied as they are, so converting a large scan costs about one read and one
write of the compressed bytes; nothing is decompressed or recompressed.
"""
from __future__ import annotations

import os

from .emd1 import ConvertReport, emd_version, to_emd02, to_emd1
from .reader import check_path, open_h5

TARGETS = ("emd1", "emd02")
EXAMPLES = """examples:
  emdstream convert scan.emd scan_emd1.h5 --to emd1    # EMD 1.0: py4DSTEM.read("scan_emd1.h5")
  emdstream convert scan_emd1.h5 back.emd --to emd02
"""
PY4DSTEM_SUFFIXES = (".h5", ".hdf5", ".py4dstem", ".emd")  # py4DSTEM.read refuses other names


def convert(src: str | os.PathLike, dst: str | os.PathLike, to: str | None = None,
            overwrite: bool = False) -> ConvertReport:
    """Convert ``src`` to ``to`` ("emd1" or "emd02"; None: the other one of the two) at ``dst``."""
    check_path(src)
    if to is None:
        with open_h5(src) as f:
            to = "emd02" if emd_version(f) == "1.0" else "emd1"
    if to not in TARGETS:
        raise ValueError(f"--to must be one of {', '.join(TARGETS)}, got {to!r}")
    if os.path.exists(dst) and os.path.samefile(src, dst):
        raise ValueError(f"{os.fspath(dst)} is the input file; give another output file")
    return (to_emd1 if to == "emd1" else to_emd02)(src, dst, overwrite=overwrite)


def add_command(subparsers) -> None:
    """Register ``emdstream convert`` (called by ``cli.build_parser``)."""
    from .cli import add_subcommand

    cmd = add_subcommand(subparsers, "convert", "convert between EMD v0.2 and EMD 1.0 (py4DSTEM)",
                         "Write an EMD v0.2 file as EMD 1.0 (the emdfile layout: py4DSTEM.read "
                         "opens a 4-D scan as a calibrated DataCube), or an EMD 1.0 file as EMD "
                         "v0.2. Compressed chunks are copied as they are; metadata and comments "
                         "are carried, and emd1 -> emd02 gives an emdstream file back exactly.")
    cmd.add_argument("src", help="the input file")
    cmd.add_argument("dst", help="the output file (for py4DSTEM name it .h5, .hdf5 or .emd)")
    cmd.add_argument("--to", choices=TARGETS, default=None,
                     help="emd1 or emd02 (default: the other version than the input's)")
    cmd.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    if not cmd.epilog.strip().endswith("emd02"):  # cli.EPILOG has no convert lines (yet)
        cmd.epilog = EXAMPLES
    cmd.set_defaults(handler=_run)


def _run(args) -> int:
    from .cli import check_output

    check_output(args.dst, args.overwrite)
    report = convert(args.src, args.dst, to=args.to, overwrite=args.overwrite)
    print(report)
    if report.version == "1.0" and not args.dst.lower().endswith(PY4DSTEM_SUFFIXES):
        print(f"note: py4DSTEM.read opens only files named {', '.join(PY4DSTEM_SUFFIXES)}")
    return 0
