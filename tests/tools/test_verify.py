"""``verify`` passes good files and names what is wrong with files broken on purpose (with h5py)."""
import math
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
from support.cli import emdstream_cli
from support.crash_checks import start_child

from emdstream.format.blocks import iter_blocks
from emdstream.tools.simulate import simulate
from emdstream.tools.verify import verify


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    path = tmp_path_factory.mktemp("verify") / "good.emd"
    simulate(str(path), scan_shape=(6, 8), frame_shape=(24, 24), progress=False)
    return path


@pytest.fixture
def broken(good, tmp_path):
    """A copy of the good file, changed with h5py by the test: ``broken(change) -> path``."""
    def make(change) -> str:
        path = str(tmp_path / "broken.emd")
        shutil.copy(good, path)
        with h5py.File(path, "r+") as f:
            change(f)
        return path
    return make


def _replace_dim(f, key, values):
    group = f["data/diffraction"]
    attrs = dict(group[key].attrs)
    del group[key]
    group[key] = values
    group[key].attrs.update(attrs)


def test_fresh_simulate_output_verifies(tmp_path):
    path = tmp_path / "fresh.emd"
    assert emdstream_cli("simulate", path, "--scan", "5x7", "--frame-shape", "16x16").returncode == 0
    result = emdstream_cli("verify", path)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"OK: {path} is EMD v0.2: /data/diffraction (5, 7, 16, 16) uint16, " \
                            f"35 frames; /data/haadf (5, 7) float32, 35 frames\n"


def test_the_readers_load_a_good_file(good):
    result = emdstream_cli("verify", good, "--readers")
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith("OK: ") and "ncempy, rosettasciio and h5py read it" in result.stdout


BREAKS = {
    "missing dim": (lambda f: f["data/diffraction"].__delitem__("dim3"),
                    "/data/diffraction/dim3: missing"),
    "dim of wrong length": (lambda f: _replace_dim(f, "dim2", np.arange(5.0)),
                            "/data/diffraction/dim2: 5 values, but data axis 1 has 8"),
    "dim stored as (N, 1)": (lambda f: _replace_dim(f, "dim1", np.arange(6.0).reshape(6, 1)),
                             "/data/diffraction/dim1: shape (6, 1); EMD v0.2 wants a 1-D vector"),
    "missing version": (lambda f: [f.attrs.__delitem__(k) for k in ("version_major", "version_minor")],
                        "/: missing attribute version_major"),
    "wrong version": (lambda f: f.attrs.__setitem__("version_minor", 3), "/: version_minor is 3"),
    "missing units": (lambda f: f["data/diffraction/dim4"].attrs.__delitem__("units"),
                      "/data/diffraction/dim4: missing attribute units"),
    "missing emd_group_type": (lambda f: f["data/diffraction"].attrs.__delitem__("emd_group_type"),
                               "/data/diffraction: missing attribute emd_group_type"),
    "one dim too many": (lambda f: f["data/diffraction"].create_dataset("dim5", data=[0.0]),
                         "/data/diffraction/dim5: data has 4 axes"),
    "more frames than slots": (lambda f: f["data/diffraction"].attrs.__setitem__("frames_written", 49),
                               "frames_written (49) + frames_dropped (0) exceed the 48 frame slots"),
    "not finalized": (lambda f: f["data/diffraction"].attrs.__setitem__("complete", False),
                      "complete is False"),
}


@pytest.mark.parametrize("what", list(BREAKS))
def test_a_broken_file_gets_its_problem_named(broken, what):
    change, expected = BREAKS[what]
    problems = verify(broken(change))
    assert any(expected in p for p in problems), problems
    assert len(problems) <= 2  # the problem, and at most its consequence (e.g. no version_minor)


def test_the_command_prints_one_problem_per_line_and_exits_1(broken):
    path = broken(lambda f: (f["data/diffraction/dim2"].attrs.__delitem__("name"),
                             f["data/diffraction"].__delitem__("dim4")))
    result = emdstream_cli("verify", path)
    assert result.returncode == 1 and result.stderr == ""
    assert result.stdout.splitlines() == verify(path) == [
        "/data/diffraction/dim2: missing attribute name",
        "/data/diffraction/dim4: missing (no dim vector for data axis 3 of length 24)"]


def test_readers_that_fail_are_named(broken):
    path = broken(lambda f: _replace_dim(f, "dim1", np.arange(6.0).reshape(6, 1)))
    problems = verify(path, readers=True)
    # RosettaSciIO 0.15 raises on (N, 1) dims with NumPy 2.4, gives NaN scales with NumPy 2.2
    assert any(p.startswith("rsciio.emd.file_reader: failed:") or
               (p.startswith("rsciio.emd.file_reader: axes") and "finite" in p)
               for p in problems), problems


def test_a_corrupt_chunk_is_reported_not_fatal(good, tmp_path):
    path = str(tmp_path / "corrupt.emd")
    shutil.copy(good, path)
    with h5py.File(path, "r") as f:
        chunk = f["data/diffraction/data"].id.get_chunk_info(2)
    with open(path, "r+b") as fh:  # keep the 12-byte bitshuffle header, scramble the LZ4 body
        fh.seek(chunk.byte_offset + 12)
        fh.write(np.random.default_rng(1).bytes(chunk.size - 12))
    problems = verify(path, readers=True)
    assert problems[0].startswith("/data/diffraction/data[")
    assert "unreadable" in problems[0] or "crashed" in problems[0]
    assert problems[1:] == ["readers: not tried, the data is unreadable"]


def test_a_truncated_file_is_reported(good, tmp_path):
    path = str(tmp_path / "truncated.emd")
    shutil.copy(good, path)
    os.truncate(path, os.path.getsize(path) // 2)
    problems = verify(path)
    assert len(problems) == 1 and "HDF5 cannot open it" in problems[0] and "truncated" in problems[0]


def killed_after_a_flush(path) -> str:
    """A scan file whose writer was killed (SIGKILL) after it had counted frames as durable."""
    child = start_child(str(path), "scan", "flush=0.05")
    try:
        for line in child.stdout:
            if line.startswith("durable ") and int(line.split()[1]) > 0:
                break
        else:
            raise AssertionError(f"the writer never flushed: {child.stderr.read()}")
    finally:
        child.kill()
        child.communicate()
    return str(path)


def test_an_unfinished_file_says_run_recover_and_passes_after_it(tmp_path):
    path = killed_after_a_flush(tmp_path / "killed.emd")
    problems = verify(path)
    assert len(problems) == 1
    assert problems[0].startswith("/data/dataset_1: unfinished: its writer stopped without closing")
    assert problems[0].endswith(f"run emdstream recover {path}")
    assert emdstream_cli("recover", path).returncode == 0
    assert verify(path) == []


def test_paths_that_are_no_emd_file_raise(good, tmp_path):
    with pytest.raises(FileNotFoundError):
        verify(tmp_path / "nothing.emd")
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(ValueError, match="not an EMD file"):
        verify(tmp_path / "plain.h5")


@pytest.mark.parametrize("shape,chunks,max_bytes", [
    ((6, 8, 24, 24), (1, 8, 24, 24), 1 << 20),     # whole file in one block
    ((6, 8, 24, 24), (1, 3, 24, 24), 3 * 1152 * 2),  # blocks of whole chunks along axis 1
    ((50, 40, 30), (7, 40, 30), 9 * 1200 * 2),     # a multiple of 7 frames
    ((4, 300), (4, 64), 200),                      # one row is too big: split the last axis
    ((5,), None, 16),                              # contiguous
    ((0, 8, 8), (16, 8, 8), 1 << 20),              # a stack closed without frames: no block
])
def test_iter_blocks_covers_the_data_once_in_bounded_chunk_aligned_blocks(tmp_path, shape, chunks,
                                                                            max_bytes):
    with h5py.File(tmp_path / "blocks.h5", "w") as f:
        data = f.create_dataset("d", shape=shape, chunks=chunks, dtype="uint16",
                                maxshape=(None,) + shape[1:] if chunks else None)
        seen = np.zeros(shape, dtype=int)
        for selection in iter_blocks(data, max_bytes):
            seen[selection] += 1
            assert math.prod(s.stop - s.start for s in selection) * 2 <= max(max_bytes, 2)
            for s, c in zip(selection, chunks or ()):
                assert s.start % c == 0 or s.start // c == (s.stop - 1) // c  # aligned or inside one
        assert (seen == 1).all()


def _verify_without(path, *modules) -> subprocess.CompletedProcess:
    """``emdstream verify PATH --readers`` in a process where ``modules`` cannot be imported, as
    when they are not installed."""
    code = (f"import sys; sys.modules.update(dict.fromkeys({list(modules)!r})); "
            f"from emdstream.tools.cli import main; sys.exit(main(sys.argv[1:]))")
    return subprocess.run([sys.executable, "-c", code, "verify", str(path), "--readers"],
                          capture_output=True, text=True, timeout=120)


def test_readers_not_installed_are_a_note_with_the_install_command_not_a_problem(good):
    result = _verify_without(good, "ncempy", "ncempy.io", "rsciio", "rsciio.emd")
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert lines[0].startswith("OK: ") and lines[0].endswith("; h5py read it")
    assert lines[1].startswith("note: ncempy.io.read: not tried, not installed (")
    assert lines[1].endswith("): pip install ncempy")
    assert lines[2].startswith("note: rsciio.emd.file_reader: not tried, not installed (")
    assert lines[2].endswith("): pip install rosettasciio") and len(lines) == 3


def test_a_broken_file_still_fails_when_a_reader_is_missing(broken):
    path = broken(lambda f: f["data/diffraction"].__delitem__("dim3"))
    result = _verify_without(path, "ncempy", "ncempy.io")
    assert result.returncode == 1
    assert result.stdout.splitlines()[0].startswith("/data/diffraction/dim3: missing")
    assert result.stdout.splitlines()[-1].endswith("pip install ncempy")
