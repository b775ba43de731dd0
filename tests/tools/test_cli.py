"""The ``emdstream`` command, run as a real subprocess: errors, help, info, follow, simulate, tools."""
import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time

import h5py
import pytest
from support.cli import emdstream_cli, killed_writer_file, refuses_to_overwrite, start_simulate

import emdstream
from emdstream.tools.verify import verify

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def small_scan(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "scan.emd"
    result = emdstream_cli("simulate", path, "--scan", "6x8", "--frame-shape", "24x24")
    assert result.returncode == 0, result.stderr
    return path


# --- user mistakes: one line on stderr, exit 2 -------------------------------------------------------
@pytest.fixture(scope="module")
def wrong_inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wrong")
    (folder / "notes.txt").write_text("not HDF5\n")
    with h5py.File(folder / "plain.h5", "w") as f:
        f["x"] = [1, 2, 3]
    return {"missing": (folder / "missing.emd", "no such file"),
            "text": (folder / "notes.txt", "is not an HDF5 file"),
            "hdf5": (folder / "plain.h5", "is an HDF5 file but not an EMD file"),
            "folder": (folder, "is a directory")}


# every command meets two kinds of wrong input, every kind two commands (they share the check)
@pytest.mark.parametrize("command,kind", [
    ("info", "missing"), ("info", "hdf5"), ("verify", "text"), ("verify", "folder"),
    ("preview", "hdf5"), ("preview", "missing"), ("recover", "folder"), ("recover", "text")])
def test_a_wrong_input_file_is_one_line_and_exit_2(wrong_inputs, command, kind):
    path, cause = wrong_inputs[kind]
    result = emdstream_cli(command, path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"emdstream {command}: error: ") and cause in result.stderr


def test_simulate_refuses_to_overwrite(tmp_path):  # preview: see test_preview
    out = tmp_path / "taken.emd"
    refuses_to_overwrite("simulate", out, out, "--scan", "2x2", "--frame-shape", "8x8")


def test_help_shows_examples_of_every_command():
    main = emdstream_cli("--help").stdout
    for command in ("simulate", "info", "recover", "verify", "preview"):
        assert f"  emdstream {command} " in main
    verify_help = emdstream_cli("verify", "--help").stdout
    assert "--readers" in verify_help and "examples:\n  emdstream verify scan.emd" in verify_help
    assert "emdstream preview" not in verify_help  # each command shows its own examples


# --- info ---------------------------------------------------------------------------------------------
def test_info_json_has_shape_dims_metadata_and_comments_in_order(small_scan):
    result = emdstream_cli("info", small_scan, "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["emd_version"] == [0, 2]
    ds = info["datasets"]["diffraction"]
    assert ds["shape"] == [6, 8, 24, 24] and ds["dtype"] == "uint16" and ds["complete"]
    assert ds["frames_written"] == 48 and ds["frames_dropped"] == 0
    assert [(d["name"], d["units"], d["length"]) for d in ds["dims"]] == [
        ("scan_y", "[nm]", 6), ("scan_x", "[nm]", 8), ("k_y", "[px]", 24), ("k_x", "[px]", 24)]
    assert (ds["dims"][1]["first"], ds["dims"][1]["last"]) == (0.0, 3.5)
    assert info["metadata"]["microscope"]["high_tension_kV"] == 300.0
    comments = info["comments"]
    assert [c["time"] for c in comments] == sorted(c["time"] for c in comments)
    assert "acquisition started" in comments[0]["text"]
    assert "48 frames written" in comments[-1]["text"]


def test_info_text_shows_dims_with_ranges_and_units(small_scan):
    text = emdstream_cli("info", small_scan).stdout
    assert re.search(r"dim2\s+scan_x\s+\[nm\]\s+8 points\s+0 \.\. 3\.5", text)
    assert re.search(r"dim4\s+k_x\s+\[px\]\s+24 points\s+0 \.\. 23", text)
    assert "high_tension_kV = 300.0" in text and "[finished, all 48 positions written]" in text


def test_info_follow_ends_when_the_writer_finishes(tmp_path):
    path = tmp_path / "live.emd"
    writer = start_simulate(path, "--scan", "15x20", "--frame-shape", "16x16", "--fps", "150")
    follow = emdstream_cli("info", path, "--follow", "--interval", "0.2", timeout=60)
    writer.communicate(timeout=60)
    assert writer.returncode == 0 and follow.returncode == 0, follow.stderr
    counts = [int(line.split(": ")[1].split()[0]) for line in follow.stdout.splitlines()]
    assert len(counts) >= 2 and counts == sorted(counts) and counts[-1] == 300


def test_info_follow_ends_when_the_writer_was_killed(tmp_path):
    path = killed_writer_file(tmp_path / "killed.emd")
    started = time.monotonic()
    follow = emdstream_cli("info", path, "--follow", "--interval", "0.2", timeout=60)
    assert follow.returncode == 1
    assert follow.stdout.splitlines()[-1].endswith(f"run: emdstream recover {path}")
    assert time.monotonic() - started < 20


# --- simulate -----------------------------------------------------------------------------------------
REPORT = re.compile(r"(\d+) frames in ([\d.]+) s.*in put\(\) and close\(\).*\n"
                    r"  (writer kept up|writer fell behind: (\d+) frames DROPPED); "
                    r"queue high-water mark (\d+) of (\d+)")


def test_simulate_fps_paces_and_reports_counts(tmp_path):
    path = tmp_path / "paced.emd"
    result = emdstream_cli("simulate", path, "--scan", "6x8", "--frame-shape", "16x16",
                           "--fps", "300")
    assert result.returncode == 0, result.stderr
    written, seconds, kept_up, _, high_water, size = REPORT.search(result.stdout).groups()
    assert int(written) == 48 and kept_up == "writer kept up"
    assert float(seconds) >= 47 / 300 and 1 <= int(high_water) <= int(size)
    with emdstream.open(path) as f:
        assert f["diffraction"].frames_written == 48
        assert any("paced at 300.0 frames/s" in text for _, text in f.comments)


def test_simulate_with_a_tiny_queue_counts_every_frame_written_or_dropped(tmp_path):
    path = tmp_path / "drops.emd"
    result = emdstream_cli("simulate", path, "--scan", "20x30", "--frame-shape", "48x48",
                           "--fps", "1000000", "--queue-frames", "1", "--compression", "gzip")
    written, _, _, dropped, high_water, size = REPORT.search(result.stdout).groups()
    dropped = int(dropped or 0)
    # the queue holds whole chunks (at least two): --queue-frames 1 rounds up to 2 x 30 frames
    assert int(written) + dropped == 600 and 1 <= int(high_water) <= int(size) == 60
    assert result.returncode == (1 if dropped else 0)
    with emdstream.open(path) as f:
        assert (f["diffraction"].frames_written, f["diffraction"].frames_dropped) == (int(written), dropped)
    assert verify(path) == []


def _run_on_a_terminal(args) -> tuple[str, str]:
    """(stdout, what appeared on the terminal) of a command whose stderr is a 100-column pty."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "emdstream", *map(str, args)], text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.1)
        try:
            data = os.read(master, 65536) if ready else b""
        except OSError:  # EIO: the child closed the terminal
            break
        if ready and not data:
            break
        seen += data
    os.close(master)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, seen
    return stdout, seen.decode(errors="replace")


def test_simulate_progress_bar_on_a_terminal_only(tmp_path):
    args = ["simulate", tmp_path / "bar.emd", "--scan", "10x12", "--frame-shape", "16x16",
            "--fps", "600", "--overwrite"]
    stdout, terminal = _run_on_a_terminal(args)
    assert "120/120" in terminal and "frame/s" in terminal and "wrote" in stdout
    _, quiet = _run_on_a_terminal(args + ["--quiet"])
    assert "frame/s" not in quiet
    piped = emdstream_cli(*args)  # stderr is a pipe: no bar either
    assert piped.returncode == 0 and piped.stderr == ""


# --- tools ---------------------------------------------------------------------------------------------
def test_simulation_sink_example_runs_and_its_file_verifies(tmp_path):
    out = tmp_path / "heat.emd"
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "simulation_sink.py"), out],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "200 steps" in result.stdout
    assert verify(out) == []
    with emdstream.open(out) as f:
        ds = f["dataset_1"]
        assert ds.data.shape == (200, 96, 128) and [d.name for d in ds.dims] == ["time", "y", "x"]
        assert f.metadata["sample"]["model"] == "2-D heat equation"
