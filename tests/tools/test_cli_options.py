"""The command line as a user meets it first: `emdstream` alone, bad option values (one line naming
the option, exit 2), and what `simulate` says it wrote and what to run next (run as printed)."""
import shlex
import subprocess
import sys

import pytest
from support.cli import emdstream_cli

from emdstream.tools.cli import COMMANDS, build_parser

BAD_VALUES = [
    (("simulate", "--frame-shape", "128"), "--frame-shape", "expected 2 sizes like 128x128, got '128'"),
    (("simulate", "--frame-shape", "12x12x12"), "--frame-shape", "expected 2 sizes"),
    (("simulate", "--scan", "abc"), "--scan", "expected sizes like 64x64, got 'abc'"),
    (("simulate", "--scan", "0x3"), "--scan", "sizes must be positive"),
    (("simulate", "--fps", "-5"), "--fps", "must be positive"),
    (("simulate", "--frames", "many"), "--frames", "expected a number"),
    (("simulate", "--compression", "lzma"), "--compression", "choose one of"),
    (("simulate", "--dtype", "uint13"), "--dtype", "not a NumPy dtype: 'uint13'"),
    (("simulate", "--dtype", "bool"), "--dtype", "expected an integer or float dtype"),
    (("info", "x.emd", "--interval", "0"), "--interval", "must be positive"),
    (("convert", "a.emd", "b.h5", "--to", "emd3"), "--to", "invalid choice: 'emd3'"),
    (("view", "x.emd", "--port", "http"), "--port", "invalid int value: 'http'"),
]


@pytest.mark.parametrize("args,option,cause", BAD_VALUES, ids=[" ".join(a) for a, _, _ in BAD_VALUES])
def test_a_bad_option_value_is_one_line_naming_the_option(tmp_path, args, option, cause):
    result = emdstream_cli(*args, cwd=tmp_path)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.count("\n") == 1, result.stderr  # no usage block, no traceback
    assert result.stderr.startswith(f"emdstream {args[0]}: error: argument {option}: {cause}")
    assert result.stderr.endswith(f"(see emdstream {args[0]} --help)\n")
    assert not list(tmp_path.iterdir())  # nothing written


def test_a_missing_argument_or_unknown_command_is_one_line_too():
    for args, start in [(("info",), "emdstream info: error: the following arguments are required: "
                                   "path"),
                        (("simluate",), "emdstream: error: argument COMMAND: invalid choice: "
                                        "'simluate'")]:
        result = emdstream_cli(*args)
        assert result.returncode == 2 and result.stderr.count("\n") == 1
        assert result.stderr.startswith(start), result.stderr


def test_emdstream_alone_lists_its_commands():
    build_parser()
    result = emdstream_cli()
    assert (result.returncode, result.stderr) == (0, "")
    listed = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")]
    assert listed == list(COMMANDS) and {"simulate", "info", "verify", "preview"} <= set(listed)
    assert "emdstream COMMAND --help" in result.stdout


def test_simulate_says_what_the_file_holds_and_what_to_run_next(tmp_path):
    result = emdstream_cli("simulate", "run 1.emd", "--scan", "4x6", "--frame-shape", "16x16",
                           "--frames", "20", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("wrote run 1.emd: ")
    assert lines[1].startswith("  /data/diffraction  (4, 6, 16, 16) uint16, bitshuffle+lz4: "
                               "20 of 24 frames; per-frame values: timestamp, beam_current_pA")
    assert lines[2].startswith("  /data/haadf        (4, 6) float32, shuffle+gzip: 20 of 24 frames; "
                               "per-frame values: timestamp")
    assert "GB/s" not in result.stdout  # the simulator's speed is not emdstream's
    assert "the simulator sets this run's speed" in result.stdout
    steps = lines[lines.index("next:") + 1:]
    assert [s.split()[:2] for s in steps] == [["emdstream", "info"], ["emdstream", "preview"],
                                              ["emdstream", "view"], ["python", "-c"]]
    for step in steps:  # as printed, from where the user is (the file name has a space)
        command = shlex.split(step.split("  #")[0])
        if command[1] == "view":
            continue  # a server until stopped: test_view covers it
        if command[0] == "emdstream":
            done = emdstream_cli(*command[1:], cwd=tmp_path)
        else:
            done = subprocess.run([sys.executable, *command[1:]], cwd=tmp_path, capture_output=True,
                                  text=True)
        assert done.returncode == 0, (step, done.stderr)
    assert (tmp_path / "run 1.png").exists()
