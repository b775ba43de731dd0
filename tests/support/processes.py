"""Real separate processes and HDF5's own command-line tools."""
import os
import shutil
import subprocess
import sys

import hdf5plugin
import pytest


def run_python(code: str, timeout=60, **kw):
    """Run code in a fresh interpreter (a real separate process)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, **kw)


def h5dump_env():
    env = dict(os.environ)
    env["HDF5_PLUGIN_PATH"] = hdf5plugin.PLUGIN_PATH
    return env


requires_h5dump = pytest.mark.skipif(shutil.which("h5dump") is None,
                                     reason="h5dump (Debian hdf5-tools) not installed")
