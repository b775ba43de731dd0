import os
import shutil
import subprocess
import sys

import hdf5plugin
import numpy as np
import pytest

COMPRESSIONS = ["bslz4", "zstd", "blosc-lz4", "gzip", None]


def detector_frames(n, shape=(32, 32), dtype="uint16", seed=0):
    """Poisson counts with a bright disk, like a pixelated detector's frames."""
    rng = np.random.default_rng(seed)
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    disk = ((yy - shape[0] / 2) ** 2 + (xx - shape[1] / 2) ** 2) < (min(shape) / 5) ** 2
    lam = np.where(disk, 30.0, 0.3)
    frames = rng.poisson(lam, size=(n,) + tuple(shape))
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return (frames * 0.37).astype(dtype)
    if dtype.kind == "i":
        frames = frames - 3
    return np.clip(frames, *(np.iinfo(dtype).min, np.iinfo(dtype).max)).astype(dtype)


@pytest.fixture
def emd_path(tmp_path):
    return str(tmp_path / "test.emd")


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
