"""Does every dependency in pyproject.toml have a wheel on every supported platform and Python?

    python tools/check_wheels.py [--extras preview,hyperspy] [--jobs 8]

For each platform (manylinux x86_64 and aarch64, Windows, macOS arm64) and Python 3.10-3.13 it
asks pip for wheels only, ``pip download --only-binary=:all: --platform P --python-version V``,
resolving the dependencies' own dependencies too, and prints one line per combination: ``ok``,
or which requirement has no wheel there (so ``pip install .`` would need a compiler). Exit 1 if
any combination fails. Environment markers of pyproject's requirements are evaluated for the
target platform here (pip would evaluate ``platform_machine`` for this machine). Needs
``packaging`` (and ``tomli`` on Python 3.10), and the network (or a wheel mirror pip uses).
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from packaging.requirements import Requirement

PLATFORMS = ["manylinux2014_x86_64", "manylinux2014_aarch64", "win_amd64", "macosx_11_0_arm64"]
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
ROOT = Path(__file__).resolve().parent.parent


def requirements(extras: list[str]) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return reqs


def for_target(reqs: list[str], platform: str, python: str) -> list[str]:
    """The requirements that apply on ``platform`` with ``python``, without their markers."""
    machine, sys_platform, system = _marker_env(platform)
    env = {"python_version": python, "python_full_version": f"{python}.0",
           "platform_machine": machine, "sys_platform": sys_platform, "platform_system": system,
           "os_name": "nt" if system == "Windows" else "posix"}
    out = []
    for text in reqs:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate(env):
            req.marker = None
            out.append(str(req))
    return out


def _marker_env(platform: str) -> tuple[str, str, str]:
    """(platform_machine, sys_platform, platform_system) of a wheel platform tag."""
    if platform.startswith("win"):
        return "AMD64" if platform.endswith("amd64") else "ARM64", "win32", "Windows"
    machine = re.search(r"(x86_64|aarch64|arm64|i686|ppc64le|s390x|universal2)$", platform).group(1)
    if platform.startswith("macosx"):
        return machine, "darwin", "Darwin"
    return machine, "linux", "Linux"


def check(platform: str, python: str, reqs: list[str]) -> tuple[bool, str]:
    """(ok, what failed) for one platform and Python version."""
    reqs = for_target(reqs, platform, python)
    with tempfile.TemporaryDirectory() as dest:
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--platform",
             platform, "--python-version", python, "-d", dest, *reqs],
            capture_output=True, text=True)
    if result.returncode == 0:
        return True, "ok"
    missing = re.findall(r"No matching distribution found for (\S+)", result.stderr)
    return False, "no wheel: " + (", ".join(missing) or result.stderr.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--extras", default="", help="comma-separated extras to check as well")
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--platforms", default=",".join(PLATFORMS),
                        help="comma-separated wheel platform tags (default: %(default)s)")
    args = parser.parse_args()
    reqs = requirements([e for e in args.extras.split(",") if e])
    print("requirements:", " ".join(reqs))
    combos = [(p, v) for p in args.platforms.split(",") for v in PYTHONS]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda pv: check(*pv, reqs), combos))
    for (platform, python), (_, what) in zip(combos, results):
        print(f"{platform:<24} {python:<5} {what}")
    failed = sum(not ok for ok, _ in results)
    print(f"{len(combos) - failed} of {len(combos)} platform/Python combinations install from wheels")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
