"""The ``emdstream`` command: simulate, info, recover, verify, preview, convert and view.

Each command has a handler ``fn(args) -> exit code``. User mistakes (a missing or wrong input file,
an existing output file, a bad option) end in one line ``emdstream <cmd>: error: <cause>`` on stderr
and exit code 2.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import textwrap
from collections.abc import Sequence
from typing import Optional

from emdstream.encoders import COMPRESSIONS
from emdstream.errors import EMDStreamError

EPILOG = """examples:
  emdstream simulate                         # 64x64 scan of 128x128 frames -> simulated.emd
  emdstream simulate scan.emd --scan 128x128 --frame-shape 256x256 --compression zstd
  emdstream simulate live.emd --fps 2000     # paced like a detector; reports dropped frames
  emdstream info scan.emd                    # tree: shape, chunks, compression, dims, comments
  emdstream info scan.emd --json
  emdstream info live.emd --follow           # frame count while it is being written
  emdstream recover crashed.emd              # finish a file whose writer was killed
  emdstream verify scan.emd                  # EMD v0.2 conformance; exit 1 and one line per problem
  emdstream verify scan.emd --readers        # ... and load it with ncempy, rosettasciio, h5py
  emdstream preview scan.emd                 # scan.png: HAADF, mean diffraction + virtual bright field
  emdstream preview scan.emd -o view.png --overwrite
  emdstream view live.emd                    # watch it fill in, in a browser (the URL: first line)
  emdstream view live.emd --no-browser --port 8050
  emdstream convert scan.emd scan_emd1.h5 --to emd1    # EMD 1.0: py4DSTEM.read("scan_emd1.h5")
  emdstream convert scan_emd1.h5 back.emd --to emd02
"""

# what a mistake of the user raises; shown as one line, exit code 2
USER_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError, PermissionError, ValueError,
               TypeError, KeyError, ImportError, OSError, RuntimeError)


class Parser(argparse.ArgumentParser):
    """An argument parser whose mistakes are one line naming the option (no usage block), exit 2;
    its subcommands' parsers are of this class too."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def examples(command: str) -> str:
    """The lines of ``EPILOG`` for one command."""
    lines = [line for line in EPILOG.splitlines() if line.startswith(f"  emdstream {command}")]
    return "examples:\n" + "\n".join(lines) + "\n"


COMMANDS: dict[str, str] = {}  # name -> one-line summary, as the subcommands are added


def add_subcommand(subparsers, name: str, summary: str, description: Optional[str] = None,
                   ) -> argparse.ArgumentParser:
    """A subcommand parser with its examples as epilog (used by the command modules too)."""
    COMMANDS[name] = summary
    return subparsers.add_parser(name, help=summary, epilog=examples(name),
                                 description=textwrap.fill(description or summary, 78),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)


def check_output(path: str, overwrite: bool, source: Optional[str] = None) -> None:
    """FileExistsError / FileNotFoundError / IsADirectoryError unless ``path`` can be written;
    never the ``source`` read to make it, nor a file a running writer holds (even with
    ``overwrite``: its frames would be lost, and its recover hint would name the new file)."""
    from emdstream.safety.filelock import writer_holds

    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a directory; give a file name")
    if not os.path.exists(path):
        pass
    elif source is not None and os.path.samefile(path, source):
        raise ValueError(f"{path} is the file being read; give another output name")
    elif not overwrite:
        raise FileExistsError(f"{path} already exists; use --overwrite to replace it")
    elif writer_holds(path):
        raise RuntimeError(f"{path} is being written by a running process; it is not replaced")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot create {path}: directory {folder} does not exist")


def _shape(most: int, least: int = 1, example: str = "128x128"):
    """A parser of sizes like ``128x128``: ``least`` to ``most`` positive integers."""
    def parse(text: str) -> tuple[int, ...]:
        try:
            shape = tuple(int(p) for p in text.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected sizes like {example}, got {text!r}") from None
        if not least <= len(shape) <= most:
            count = f"{most}" if least == most else f"{least} to {most}"
            raise argparse.ArgumentTypeError(f"expected {count} sizes like {example}, got {text!r}")
        if any(n < 1 for n in shape):
            raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
        return shape
    return parse


def _dtype(text: str) -> str:
    import numpy as np

    try:
        dtype = np.dtype(text)
    except TypeError:
        raise argparse.ArgumentTypeError(f"not a NumPy dtype: {text!r} (e.g. uint16, float32)") from None
    if dtype.kind not in "uif":
        raise argparse.ArgumentTypeError(f"expected an integer or float dtype, got {text!r}")
    return dtype.name


MIN_POSITIVE, MAX_POSITIVE = 1e-6, 1e9  # rates, intervals, counts: beyond these, a typo


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
        if not math.isfinite(value) or not MIN_POSITIVE <= value <= MAX_POSITIVE:
            raise argparse.ArgumentTypeError(f"must be between {MIN_POSITIVE:g} and "
                                             f"{MAX_POSITIVE:g}, got {text!r}")
        return value
    return parse


def _compression(text: str) -> Optional[str]:
    value = None if text.lower() == "none" else text
    if value not in COMPRESSIONS:
        raise argparse.ArgumentTypeError(
            f"choose one of {', '.join(str(c).lower() for c in COMPRESSIONS)}")
    return value


# --- simulate, info, recover -----------------------------------------------------------------------
def _add_simulate(sub) -> None:
    sim = add_subcommand(sub, "simulate", "run a simulated 4D-STEM acquisition into a file",
                         "Stream a simulated 4D-STEM scan (Poisson counts, a bright disk over a "
                         "lattice) into an EMD file, like a live acquisition; prints a report.")
    sim.add_argument("path", nargs="?", default="simulated.emd",
                     help="output file (default: simulated.emd)")
    sim.add_argument("--scan", type=_shape(3, example="64x64"), default=(64, 64), metavar="YxX",
                     help="scan positions (default 64x64)")
    sim.add_argument("--frame-shape", type=_shape(2, 2), default=(128, 128), metavar="HxW",
                     help="detector frame size (default 128x128)")
    sim.add_argument("--frames", type=_positive(int), default=None, metavar="N",
                     help="stop after N frames (a scan stopped early)")
    sim.add_argument("--compression", type=_compression, default="bslz4",
                     help="bslz4 (default), zstd, blosc-lz4, gzip or none")
    sim.add_argument("--dtype", type=_dtype, default="uint16", help="frame dtype (default uint16)")
    sim.add_argument("--fps", type=_positive(float), default=None,
                     help="pace frames like a detector; a writer that cannot keep up drops frames "
                          "(exit code 1 if any were dropped)")
    sim.add_argument("--queue-frames", type=_positive(int), default=None, metavar="N",
                     help="writer queue capacity in frames (default: about 64 MiB of frames)")
    sim.add_argument("--quiet", action="store_true", help="no progress bar")
    sim.add_argument("--overwrite", action="store_true", help="replace an existing file")
    sim.set_defaults(handler=_simulate)


def _simulate(args) -> int:
    from emdstream.tools.simulate import simulate

    check_output(args.path, args.overwrite)
    options = {"queue_frames": args.queue_frames} if args.queue_frames else {}
    report = simulate(args.path, scan_shape=args.scan, frame_shape=args.frame_shape,
                      dtype=args.dtype, compression=args.compression, n_frames=args.frames,
                      fps=args.fps, progress=False if args.quiet else None,
                      overwrite=args.overwrite, **options)
    print(report)
    return 1 if report.frames_dropped else 0


def _add_info(sub) -> None:
    info = add_subcommand(sub, "info", "print what an EMD file holds",
                          "Print an EMD file's datasets (shape, chunks, compression, dims with "
                          "ranges and units, frame counts), metadata and comments in time order.")
    info.add_argument("path", help="the EMD file")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.add_argument("--follow", action="store_true",
                      help="print the frame count while the file is being written, until the "
                           "writer finishes (exit 1 if it stopped without finishing)")
    info.add_argument("--interval", type=_positive(float), default=1.0,
                      help="seconds between --follow polls (default 1)")
    info.set_defaults(handler=_info)


def _info(args) -> int:
    from emdstream.read.file import EMDFile
    from emdstream.safety.h5open import needs_swmr, require_emd
    from emdstream.tools.info import describe, follow, format_text

    require_emd(args.path)
    if args.follow:
        return 0 if follow(args.path, args.interval) else 1
    with EMDFile(args.path, live=needs_swmr(args.path)) as f:
        info = describe(f)
    print(json.dumps(info, indent=2) if args.json else format_text(info))
    return 0


def _add_recover(sub) -> None:
    rec = add_subcommand(sub, "recover", "finish a file whose writer was killed",
                         "Finish a file whose writer stopped without closing it (killed, crashed): "
                         "clear HDF5's write flags, trim it, write dims and a comment. "
                         "A finished file is left as it is.")
    rec.add_argument("path", help="the EMD file")
    rec.set_defaults(handler=_recover)


def _recover(args) -> int:
    from emdstream.safety.recover import recover

    print(recover(args.path))
    return 0


# --- verify, preview, convert ----------------------------------------------------------------------
def _add_verify(sub) -> None:
    cmd = add_subcommand(sub, "verify", "check a file against EMD v0.2 (exit 1 on problems)",
                         "Check a file against EMD v0.2: version attributes, emd_group_type, one "
                         "1-D dim vector per axis with name and units, data readable end to end, "
                         "frame counts, not left unfinished; a master file's parts. Prints OK or "
                         "one problem per line.")
    cmd.add_argument("path", help="the EMD file")
    cmd.add_argument("--readers", action="store_true",
                     help="also load it with ncempy, rosettasciio and plain h5py "
                          "(the first two read whole datasets into memory)")
    cmd.set_defaults(handler=_verify)


def _verify(args) -> int:
    from emdstream.tools.reader_check import PACKAGES
    from emdstream.tools.verify import summary, verify_report

    problems, notes = verify_report(args.path, readers=args.readers)
    for problem in problems:
        print(problem)
    if not problems:
        tried = [p for r, p in PACKAGES.items() if not any(n.startswith(f"{r}:") for n in notes)]
        readers = (f"; {', '.join(tried[:-1])}{' and ' if tried[1:] else ''}{tried[-1]} read it"
                   if args.readers and tried else "")
        print(f"OK: {summary(args.path)}{readers}")
    for note in notes:
        print(f"note: {note}")
    return 1 if problems else 0


def _add_preview(sub) -> None:
    cmd = add_subcommand(sub, "preview", "draw a PNG of what a file holds",
                         "Draw a PNG of every stream: a HAADF image, the mean diffraction pattern "
                         "(log) beside a virtual bright-field image for a 4-D scan, a frame and "
                         "the mean frame for a stack, the mean spectrum and total counts for a "
                         "scan of spectra. Needs matplotlib (pip install matplotlib).")
    cmd.add_argument("path", help="the EMD file")
    cmd.add_argument("-o", "--output", metavar="OUT",
                     help="image file to write (default: PATH with .png instead of its extension)")
    cmd.add_argument("--dataset", metavar="NAME", help="which /data/NAME (default: every dataset)")
    cmd.add_argument("--overwrite", action="store_true", help="replace an existing image file")
    cmd.set_defaults(handler=_preview)


def _preview(args) -> int:
    from emdstream.safety.h5open import require_emd
    from emdstream.tools.preview import preview

    out = args.output or os.path.splitext(args.path)[0] + ".png"
    if not os.path.splitext(out)[1]:
        out += ".png"  # what the image is saved as (matplotlib adds it)
    require_emd(args.path)
    check_output(out, args.overwrite, source=args.path)
    print(f"wrote {preview(args.path, out, args.dataset)}")
    return 0


def _add_convert(sub) -> None:
    from emdstream.interop.convert import TARGETS

    cmd = add_subcommand(sub, "convert", "convert between EMD v0.2 and EMD 1.0 (py4DSTEM)",
                         "Write an EMD v0.2 file as EMD 1.0 (the emdfile layout: py4DSTEM.read "
                         "opens a 4-D scan as a calibrated DataCube), or an EMD 1.0 file as EMD "
                         "v0.2. Compressed chunks are copied as they are; metadata and comments "
                         "are carried, and emd1 -> emd02 gives an emdstream file back exactly.")
    cmd.add_argument("src", help="the input file")
    cmd.add_argument("dst", help="the output file (for py4DSTEM name it .h5, .hdf5 or .emd)")
    cmd.add_argument("--to", choices=TARGETS, default=None,
                     help="emd1 or emd02 (default: the other version than the input's); stempy: "
                          "a counted stream as stempy.io.load_electron_counts reads it")
    cmd.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    cmd.set_defaults(handler=_convert)


def _convert(args) -> int:
    from emdstream.interop.convert import PY4DSTEM_SUFFIXES, convert

    check_output(args.dst, args.overwrite)
    report = convert(args.src, args.dst, to=args.to, overwrite=args.overwrite)
    print(report)
    if getattr(report, "version", None) == "1.0" and not args.dst.lower().endswith(PY4DSTEM_SUFFIXES):
        print(f"note: py4DSTEM.read opens only files named {', '.join(PY4DSTEM_SUFFIXES)}")
    return 0


def _add_view(sub) -> None:
    cmd = add_subcommand(sub, "view", "watch a file fill in, in a browser",
                         "Serve a live page for one file, being written or finished: the scan "
                         "image filling in (click a position for its frame), the latest and mean "
                         "frame, and per stream counts, frames/s, ETA, dropped frames, raw chunks, "
                         "compression. Read-only; listens on 127.0.0.1; every request needs the "
                         "token of the URL printed on the first line.")
    cmd.add_argument("path", help="the EMD file")
    cmd.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    cmd.add_argument("--host", default="127.0.0.1", metavar="ADDR",
                     help="address to listen on (default 127.0.0.1: this machine only)")
    cmd.add_argument("--no-browser", action="store_true", help="print the URL, open no browser")
    cmd.add_argument("--interval", type=_positive(float), default=0.5, metavar="S",
                     help="seconds between page updates (default 0.5)")
    cmd.set_defaults(handler=_view)


def _view(args) -> int:
    from emdstream.safety.h5open import require_emd
    from emdstream.tools.view import serve

    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be 0 (any free port) to 65535, got {args.port}")
    require_emd(args.path)
    return serve(args.path, args.host, args.port, args.interval, browser=not args.no_browser)


# --- entry point -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="emdstream", description="Stream detector frames into EMD v0.2 (HDF5) files.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_simulate(sub)
    _add_info(sub)
    _add_recover(sub)
    _add_verify(sub)
    _add_preview(sub)
    _add_convert(sub)
    _add_view(sub)
    return parser


def commands() -> str:
    """What ``emdstream`` alone prints: each command with its one-line summary."""
    lines = [f"  {name:<10} {summary}" for name, summary in COMMANDS.items()]
    return ("emdstream: stream detector frames into EMD v0.2 (HDF5) files. Commands:\n"
            + "\n".join(lines) + "\n\nemdstream COMMAND --help: its options and examples. "
            "Start with: emdstream simulate")


def run(args: argparse.Namespace) -> int:
    """Run the command's handler; returns its exit code."""
    return args.handler(args)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; user mistakes (missing file, not EMD, bad option) are one line, exit 2;
    no command lists the commands."""
    parser = build_parser()
    listing = not (sys.argv[1:] if argv is None else argv)
    args = argparse.Namespace(command=None) if listing else parser.parse_args(argv)
    try:
        if listing:
            print(commands())
            return 0
        return run(args)
    except BrokenPipeError:  # e.g. `emdstream info big.emd | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except EMDStreamError as exc:  # the writer failed (disk full, ...): not the user's mistake
        _say(args.command, exc)
        return 1
    except USER_ERRORS as exc:
        _say(args.command, exc)
        return 2
    except KeyboardInterrupt:
        print(f"emdstream {args.command}: interrupted", file=sys.stderr)
        return 130


def _say(command: str, exc: BaseException) -> None:
    from emdstream.errors import one_line

    print(f"emdstream {command}: error: {one_line(exc)}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
