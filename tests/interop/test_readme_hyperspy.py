"""The README's "Reading a file" code, run as printed in a fresh process on the file the README's
first command makes (`emdstream simulate`: two streams), with the real HyperSpy."""
import os
import re
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("hyperspy.api")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def readme_blocks(section: str) -> list[str]:
    """The ```python blocks of one README section (## heading), as printed."""
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, re.S)


def run(code: str, cwd) -> str:
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("readme")
    subprocess.run([sys.executable, "-m", "emdstream", "simulate", "--quiet"], cwd=cwd, check=True,
                   timeout=300)
    return cwd


def test_the_reading_example_prints_what_its_comments_say(simulated):
    block = readme_blocks("Reading a file")[0]
    printed = run(block, simulated).splitlines()
    said = [line.split("# ", 1)[1] for line in block.splitlines() if line.strip().startswith("print(")]
    assert printed == said


def test_plain_hs_load_gives_what_the_readme_says_and_its_recipe_equals_to_hyperspy(simulated):
    recipe = readme_blocks("Reading a file")[1]
    check = textwrap.dedent("""
        import numpy as np
        signals = hs.load("simulated.emd")            # the README: a list, one per stream
        assert [x.metadata.General.title for x in signals] == ["diffraction", "haadf"]
        assert signals[0].axes_manager.navigation_dimension == 0   # every axis a signal axis
        with emdstream.open("simulated.emd") as ef:
            want = ef["diffraction"].to_hyperspy()
        assert type(s) is type(want), (s, want)
        np.testing.assert_array_equal(s.data, want.data)
        got_axes = [(a.name, a.units, a.scale, a.offset) for a in s.axes_manager._axes]
        assert got_axes == [(a.name, a.units, a.scale, a.offset) for a in want.axes_manager._axes]
        assert s.axes_manager.navigation_shape == (64, 64) and s.axes_manager.signal_shape == (128, 128)
        print("same")
    """)
    assert run(recipe + check, simulated).splitlines()[-1] == "same"


def test_without_the_filters_plain_hs_load_fails_as_the_readme_says(simulated):
    """RosettaSciIO does not register the bslz4 filter itself: when this fails, it does, and the
    README's advice to import emdstream (or hdf5plugin) first can go."""
    code = textwrap.dedent("""
        import hyperspy.api as hs
        try:
            hs.load("simulated.emd")
        except OSError as exc:
            print("failed:", str(exc).splitlines()[0])
    """)
    env = {k: v for k, v in os.environ.items() if k != "HDF5_PLUGIN_PATH"}
    result = subprocess.run([sys.executable, "-c", code], cwd=simulated, capture_output=True,
                            text=True, timeout=300, env=env)
    assert "\nfailed: Can't synchronously read data" in result.stdout, result.stdout + result.stderr
