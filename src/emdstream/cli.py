"""The ``emdstream`` command: simulate, info, recover (verify and preview where installed)."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

from .encoders import COMPRESSIONS

EPILOG = """examples:
  emdstream simulate                         # 64x64 scan of 128x128 frames -> simulated.emd
  emdstream simulate scan.emd --scan 128x128 --frame-shape 256x256 --compression zstd
  emdstream simulate live.emd --fps 2000     # paced like a detector; reports dropped frames
  emdstream info scan.emd                    # tree: shape, chunks, compression, dims, comments
  emdstream info scan.emd --json
  emdstream info live.emd --follow           # frame count while it is being written
  emdstream recover crashed.emd              # finish a file whose writer was killed
"""


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(p) for p in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 128x128, got {text!r}") from None
    if not shape or any(n < 1 for n in shape):
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return shape


def _compression(text: str) -> Optional[str]:
    value = None if text.lower() == "none" else text
    if value not in COMPRESSIONS:
        raise argparse.ArgumentTypeError(
            f"choose one of {', '.join(str(c).lower() for c in COMPRESSIONS)}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emdstream", description="Stream detector frames into EMD v0.2 (HDF5) files.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sim = sub.add_parser("simulate", help="run a simulated 4D-STEM acquisition into a file",
                         epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sim.add_argument("path", nargs="?", default="simulated.emd",
                     help="output file (default: simulated.emd)")
    sim.add_argument("--scan", type=_shape, default=(64, 64), metavar="YxX",
                     help="scan positions (default 64x64)")
    sim.add_argument("--frame-shape", type=_shape, default=(128, 128), metavar="HxW",
                     help="detector frame size (default 128x128)")
    sim.add_argument("--frames", type=int, default=None, metavar="N",
                     help="stop after N frames (a scan stopped early)")
    sim.add_argument("--compression", type=_compression, default="bslz4",
                     help="bslz4 (default), zstd, blosc-lz4, gzip or none")
    sim.add_argument("--dtype", default="uint16", help="frame dtype (default uint16)")
    sim.add_argument("--fps", type=float, default=None,
                     help="pace frames like a detector; a writer that cannot keep up drops frames")
    sim.add_argument("--quiet", action="store_true", help="no progress bar")
    sim.add_argument("--overwrite", action="store_true", help="replace an existing file")

    info = sub.add_parser("info", help="print what an EMD file holds")
    info.add_argument("path")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.add_argument("--follow", action="store_true",
                      help="print the frame count while the file is being written")
    info.add_argument("--interval", type=float, default=1.0, help="seconds between --follow polls")

    rec = sub.add_parser("recover", help="finish a file whose writer was killed")
    rec.add_argument("path")
    _add_optional_commands(sub)
    return parser


def _add_optional_commands(sub) -> None:
    """Commands living in their own modules register themselves here (verify, preview)."""
    for module_name in ("verify", "preview"):
        try:
            module = __import__(f"emdstream.{module_name}", fromlist=["add_command"])
        except ImportError:
            continue
        if hasattr(module, "add_command"):
            module.add_command(sub)


def run(args: argparse.Namespace) -> int:
    if args.command == "simulate":
        from .simulate import simulate

        progress = False if args.quiet else None
        report = simulate(args.path, scan_shape=args.scan, frame_shape=args.frame_shape,
                          dtype=args.dtype, compression=args.compression, n_frames=args.frames,
                          fps=args.fps, progress=progress, overwrite=args.overwrite)
        print(report)
        return 1 if report.frames_dropped else 0
    if args.command == "info":
        from .info import describe, follow, format_text
        from .reader import EMDFile

        if args.follow:
            follow(args.path, args.interval)
            return 0
        with EMDFile(args.path, live=True) as f:
            info = describe(f)
        print(json.dumps(info, indent=2) if args.json else format_text(info))
        return 0
    if args.command == "recover":
        from .recover import recover

        print(recover(args.path))
        return 0
    return args.handler(args)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; user mistakes (missing file, not EMD, bad option) are one line, exit 2."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (FileNotFoundError, FileExistsError, ValueError, TypeError, OSError,
            RuntimeError) as exc:
        print(f"emdstream {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"emdstream {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
