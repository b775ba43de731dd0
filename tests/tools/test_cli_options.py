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
    (("simulate", "--fps", "inf"), "--fps", "must be between 1e-06 and 1e+09, got 'inf'"),
    (("simulate", "--fps", "1e-300"), "--fps", "must be between"),
    (("info", "x.emd", "--interval", "nan"), "--interval", "must be positive"),
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


def test_preview_never_writes_over_the_file_it_reads(tmp_path):
    """``preview scan.png --overwrite`` of an EMD file named scan.png would replace the data by
    its own picture; an output without extension is saved (and checked) as .png."""
    import shutil

    simulated = tmp_path / "a.emd"
    assert emdstream_cli("simulate", simulated, "--scan", "4x4", "--frame-shape", "8x8",
                         "--quiet").returncode == 0
    shutil.copy(simulated, tmp_path / "scan.png")
    result = emdstream_cli("preview", tmp_path / "scan.png", "--overwrite")
    assert result.returncode == 2 and "is the file being read" in result.stderr
    assert result.stderr.count("\n") == 1
    assert emdstream_cli("verify", tmp_path / "scan.png").returncode == 0  # still the data
    (tmp_path / "out.png").write_bytes(b"an older picture")
    result = emdstream_cli("preview", simulated, "-o", tmp_path / "out")
    assert result.returncode == 2 and "out.png already exists" in result.stderr
    assert (tmp_path / "out.png").read_bytes() == b"an older picture"


def test_simulate_overwrite_never_replaces_a_file_being_written(tmp_path):
    from support.cli import start_simulate

    path = tmp_path / "live.emd"
    writer = start_simulate(path, "--scan", "30x30", "--frame-shape", "16x16", "--fps", "100")
    try:
        result = emdstream_cli("simulate", path, "--overwrite", "--quiet")
        assert result.returncode == 2 and "is being written by a running process" in result.stderr
        assert writer.poll() is None  # the first writer goes on, its file untouched
    finally:
        writer.terminate()
        writer.communicate(timeout=60)


def _emd_file(path, fill):
    """A minimal EMD v0.2 file, ``fill(data_group)`` adding its members."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["version_major"], f.attrs["version_minor"] = 0, 2
        fill(f.create_group("data"))


def test_verify_names_a_dangling_link_instead_of_a_traceback(tmp_path):
    import h5py

    path = tmp_path / "dangling.emd"

    def fill(data):
        group = data.create_group("a")
        group.attrs["emd_group_type"] = 1
        group.create_dataset("data", data=[1.0, 2.0])
        data["b"] = h5py.SoftLink("/nowhere")
    _emd_file(path, fill)
    result = emdstream_cli("verify", path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "/data/b: a link to nothing (SoftLink to /nowhere)" in result.stdout + result.stderr


def test_info_shows_a_single_value_dataset(tmp_path):
    path = tmp_path / "scalar.emd"

    def fill(data):
        group = data.create_group("x")
        group.attrs["emd_group_type"] = 1
        group.create_dataset("data", data=3.5)
    _emd_file(path, fill)
    result = emdstream_cli("info", path)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "() float64" in result.stdout


def test_info_counts_the_raw_bytes_of_the_frames_written_only(tmp_path):
    """A scan stopped early: its compression ratio is of the frames written, not of the whole
    scan's slots (unwritten slots store nothing; counting them inflated the ratio)."""
    import json

    path = tmp_path / "early.emd"
    assert emdstream_cli("simulate", path, "--scan", "8x8", "--frame-shape", "16x16",
                         "--frames", "4", "--quiet").returncode == 0
    result = emdstream_cli("info", path, "--json")
    assert result.returncode == 0, result.stderr
    ds = json.loads(result.stdout)["datasets"]["diffraction"]
    assert ds["frames_written"] == 4 and ds["raw_bytes"] == 4 * 16 * 16 * 2
