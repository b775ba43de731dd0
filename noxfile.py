"""Developer and CI sessions: ``pip install nox && nox`` runs the tests on the oldest and the
newest supported Python (3.10, 3.13) that are installed.

    nox -s tests-3.10        # the whole suite on one version (tests-3.11, -3.12, -3.13)
    nox -s py4dstem          # py4DSTEM interop in its own environment (py4DSTEM pins numpy < 2)
    nox -s libertem          # LiberTEM interop
    nox -s smoke             # `pip install . && emdstream simulate` on every supported Python found,
                             # dependencies from wheels only (--only-binary=:all:)

Interpreters are looked up on PATH and in pyenv's versions (``~/.pyenv/versions/3.X.Y/bin``);
sessions for versions that are not installed are skipped.
"""
from __future__ import annotations

import glob
import os
import shutil

import nox

SUPPORTED = ["3.10", "3.11", "3.12", "3.13"]
nox.options.sessions = ["tests-3.10", "tests-3.13"]  # the oldest and the newest
nox.options.error_on_missing_interpreters = False
nox.options.reuse_existing_virtualenvs = True

# pyenv installs each version in its own folder; its shims only find the global one
_pyenv = os.path.expanduser(os.environ.get("PYENV_ROOT", "~/.pyenv"))
for folder in sorted(glob.glob(os.path.join(_pyenv, "versions", "3.*", "bin")), reverse=True):
    os.environ["PATH"] += os.pathsep + folder
# one Python for the sessions of packages that do not support every version (py4DSTEM: <= 3.12)
ONE = next((v for v in ("3.11", "3.12", "3.10") if shutil.which(f"python{v}")), "3.11")


@nox.session(python=SUPPORTED)
def tests(session: nox.Session) -> None:
    """The README's test command: the package with its test extra, then pytest."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", "-q", *session.posargs)


@nox.session(python=ONE)
def py4dstem(session: nox.Session) -> None:
    """to_py4dstem and converted files in py4DSTEM.read (numpy < 2, apart from the main suite)."""
    session.install("-e", ".[py4dstem]", "pytest>=7.4", "pytest-xdist>=3.5")
    session.run("python", "-m", "pytest", "-q", "-m", "py4dstem", "tests/interop/test_py4dstem.py",
                *session.posargs)


@nox.session(python=ONE)
def libertem(session: nox.Session) -> None:
    """LiberTEM opening emdstream files."""
    session.install("-e", ".[libertem]", "pytest>=7.4", "pytest-xdist>=3.5")
    session.run("python", "-m", "pytest", "-q", "-m", "libertem", "tests/interop/test_libertem.py",
                *session.posargs)


@nox.session(python=SUPPORTED)
def smoke(session: nox.Session) -> None:
    """The README's first command on one Python: install, then a short simulated acquisition.

    Dependencies from wheels only (``--only-binary=:all:``): a user needs no compiler. On 3.13
    that fails when a dependency has no wheel for the newest Python (as bitshuffle had none);
    ``python tools/check_wheels.py`` checks the other platforms."""
    session.install("--only-binary=:all:", ".")
    tmp = session.create_tmp()
    session.chdir(tmp)
    session.run("emdstream", "simulate", "--quiet", "--overwrite")
    session.run("emdstream", "verify", "simulated.emd")


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    """ruff, and the layer contracts in pyproject.toml (import-linter); in the current environment."""
    session.run("ruff", "check", "src", "tests", "benchmarks", "tools")
    session.run("lint-imports")

