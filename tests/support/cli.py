"""Running the ``emdstream`` command line as a user does: a separate process, its output as text."""
import os
import signal
import subprocess
import sys
import time


def emdstream_cli(*args, timeout=120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emdstream", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, **kw)


def start_simulate(path, *args) -> subprocess.Popen:
    """A paced ``emdstream simulate`` running in the background; returns once the file exists."""
    proc = subprocess.Popen([sys.executable, "-m", "emdstream", "simulate", str(path), "--quiet",
                             *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 30
    while not os.path.exists(path):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return proc


def killed_writer_file(path) -> str:
    """A file whose ``simulate`` writer was killed (SIGKILL) as soon as the file existed, as left
    on disk."""
    proc = start_simulate(path, "--scan", "20x20", "--frame-shape", "16x16", "--fps", "150")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    return str(path)


def refuses_to_overwrite(command, out, *args) -> None:
    """``emdstream command *args`` leaves an existing ``out`` alone without --overwrite (one
    line, exit 2) and replaces it with --overwrite."""
    out.write_bytes(b"keep me")
    result = emdstream_cli(command, *args)
    assert result.returncode == 2
    assert result.stderr == f"emdstream {command}: error: {out} already exists; use --overwrite " \
                            f"to replace it\n"
    assert out.read_bytes() == b"keep me"
    assert emdstream_cli(command, *args, "--overwrite").returncode == 0
    assert out.read_bytes() != b"keep me"
