"""The reliability child (``reliability_child.py``) and checks of what its files hold."""
import hashlib
import os
import subprocess
import sys

import h5py
import numpy as np

from support.reliability_child import SHAPE, expected_frame

CHILD = os.path.join(os.path.dirname(__file__), "reliability_child.py")


def start_child(path, mode, *opts):
    return subprocess.Popen([sys.executable, CHILD, path, mode, *opts], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def frames_in(path, n, mode):
    with h5py.File(path, "r", swmr=True) as f:
        data = f["data/dataset_1/data"]
        flat = data[()].reshape((-1,) + SHAPE) if mode == "scan" else data[:n]
    return flat[:n]


def check_frames(got, n):
    for i in range(n):
        np.testing.assert_array_equal(got[i], expected_frame(i), err_msg=f"frame {i}")


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def last_durable(stdout):
    """The last ``durable N`` the child printed: frames its writer already counted as durable."""
    counts = [int(line.split()[1]) for line in stdout.splitlines() if line.startswith("durable ")]
    return counts[-1] if counts else 0
