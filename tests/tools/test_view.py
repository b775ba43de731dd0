"""``emdstream view``: the API against a file that ``emdstream simulate`` writes in another process,
the page in a real browser (headless Chromium), the display numerics, the entry points."""
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import types
import urllib.error
import urllib.request
from types import SimpleNamespace

import numpy as np
import pytest
from support.cli import killed_writer_file
from support.counted import SHAPE, events_of

from emdstream import Acquisition, CountedStream, EMDWriter, Stream
from emdstream import open as open_emd
from emdstream.tools import view_kinds, view_server, view_streams
from emdstream.tools.preview import valid_frames, virtual_image
from emdstream.tools.simulate import Simulated4DSTEM
from emdstream.tools.view import ViewURL
from emdstream.tools.view import view as start_view
from emdstream.tools.view_panels import DROPPED, FIRST_LEVEL, UNWRITTEN, Panel, quantize, robust_range
from emdstream.tools.view_server import Monitor, ViewServer

SCAN, FRAME, FPS = (24, 24), (48, 48), 120  # about 5 s of writing, a flush a second
N_FRAMES = SCAN[0] * SCAN[1]
CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))),
                None)


def get(url: str, timeout: float = 10):
    """(status, body) of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def api(server: ViewServer, what: str, **params) -> dict:
    query = "&".join(f"{k}={v}" for k, v in {"token": server.token, **params}.items())
    status, body = get(f"http://127.0.0.1:{server.server_address[1]}/api/{what}?{query}")
    assert status == 200, body
    return json.loads(body)


def codes(panel: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(panel["codes"]), np.uint8).reshape(panel["shape"])


def sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A file being written by ``emdstream simulate`` in another process, and a server on it."""
    path = tmp_path_factory.mktemp("view") / "live.emd"
    writer = subprocess.Popen([sys.executable, "-m", "emdstream", "simulate", str(path), "--quiet",
                               "--scan", "x".join(map(str, SCAN)),
                               "--frame-shape", "x".join(map(str, FRAME)), "--fps", str(FPS)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    server = None
    try:
        deadline = time.monotonic() + 30
        while server is None:
            assert time.monotonic() < deadline and writer.poll() is None, writer.communicate()
            try:
                open_emd(path, live=True).close()
                server = ViewServer(path, interval=0.2).start()
            except (OSError, ValueError):  # not created yet
                time.sleep(0.05)
        yield SimpleNamespace(path=path, writer=writer, server=server)
    finally:
        if server is not None:
            server.stop()
        writer.kill()
        writer.communicate()


def wait_for_frames(server: ViewServer, at_least: int = 1) -> dict:
    deadline = time.monotonic() + 30
    while True:
        state = api(server, "state")
        if state["streams"].get("diffraction", {}).get("frames_written", 0) >= at_least:
            return state
        assert time.monotonic() < deadline, state
        time.sleep(0.1)


def test_every_request_needs_the_token(live):
    server = live.server
    assert server.server_address[0] == "127.0.0.1" and server.url.startswith("http://127.0.0.1:")
    base = f"http://127.0.0.1:{server.server_address[1]}"
    for path in ("/", "/api/state", "/api/panels", "/api/frame?stream=diffraction&index=0",
                 "/nothing"):
        assert get(base + path)[0] == 403
        assert get(base + path + ("&" if "?" in path else "?") + "token=wrong")[0] == 403
    status, page = get(server.url)
    assert status == 200 and b"<canvas" in page and b"http" not in page.split(b"<script>", 1)[1]
    assert get(f"{base}/nothing?token={server.token}")[0] == 404


def test_counts_grow_and_unwritten_slots_stay_blank(live):
    wait_for_frames(live.server)
    seen = []
    deadline = time.monotonic() + 20
    while len(set(seen)) < 2 and time.monotonic() < deadline:
        state, panels = api(live.server, "state"), api(live.server, "panels")
        diffraction = state["streams"]["diffraction"]
        assert diffraction["n_frames"] == N_FRAMES and diffraction["frames_dropped"] == 0
        if not diffraction["complete"]:
            seen.append(diffraction["frames_written"])
        for panel in (p for p in panels["panels"] if p["role"] == "navigation"):
            shown = codes(panel).reshape(-1)
            assert (shown[:panel["filled"]] >= FIRST_LEVEL).all()  # written: drawn
            assert (shown[panel["filled"]:] == UNWRITTEN).all()    # not yet: blank
            assert panel["filled"] <= state["streams"][panel["stream"]]["frame_slots"]
        time.sleep(0.3)
    assert len(set(seen)) >= 2 and seen == sorted(seen) and seen[0] < N_FRAMES, seen
    assert {p["key"] for p in panels["panels"]} >= {"haadf/navigation", "diffraction/navigation",
                                                     "diffraction/latest", "diffraction/mean"}
    assert diffraction["fps"] == pytest.approx(FPS, rel=0.2) and diffraction["eta_s"] > 0


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium to load the page in (Debian: apt-get "
                                              "install chromium; .ci/run installs it)")
def test_the_page_in_headless_chromium(live, tmp_path):
    wait_for_frames(live.server)
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=3000",
             "--enable-logging=stderr", "--v=0"]
    shot = tmp_path / "view.png"
    run = subprocess.run(flags + [f"--screenshot={shot}", "--window-size=1400,900", "--dump-dom",
                                  live.server.url + "#frame=diffraction/3"],
                         capture_output=True, text=True, timeout=90)
    dom = run.stdout
    assert 'data-ready="1"' in dom, run.stderr[-2000:]
    assert re.search(r'<pre id="js-errors"></pre>', dom), dom
    assert "Uncaught" not in run.stderr, run.stderr
    assert 'data-stream="diffraction"' in dom and 'data-stream="haadf"' in dom
    written = [int(n) for n in re.findall(r'data-frames-written="(\d+)"', dom)]
    assert len(written) == 2 and min(written) > 0
    drawn = [int(n) for n in re.findall(r'data-drawn="(\d+)"', dom)]
    assert drawn and max(drawn) > 0  # the navigation image and the frames have pixels drawn
    assert "selected: frame #3 (0, 3)" in dom  # the frame a link (or a click) asks for
    assert "virtual bright field" in dom and "display only" in dom


def test_finished_file_says_complete_and_viewing_changes_no_byte(live):
    out, err = live.writer.communicate(timeout=60)
    assert live.writer.returncode == 0, err
    deadline = time.monotonic() + 10
    while not (state := api(live.server, "state"))["complete"]:
        assert time.monotonic() < deadline, state
        time.sleep(0.2)
    assert state["writer"] == "finished"
    for stream in state["streams"].values():
        assert stream["complete"] and stream["frames_written"] == stream["n_frames"] == N_FRAMES
        assert set(stream["raw_chunks"]) == {"incompressible", "writer_behind"}
        assert stream["raw_chunks"]["writer_behind"] == 0 and stream["ratio"] > 1
    before, stat = sha256(live.path), os.stat(live.path)
    server = ViewServer(live.path, interval=0.01).start()
    try:
        for _ in range(10):  # read it all: the images catch up batch by batch
            state = api(server, "state")
            time.sleep(0.02)
        assert all(s["shown_frames"] == N_FRAMES for s in state["streams"].values())
        frame = api(server, "frame", stream="diffraction", index=5)
        assert frame["state"] == "written" and frame["position"] == [0, 5]
        assert frame["panel"]["shape"] == list(FRAME) and frame["values"]["beam_current_pA"] == 50
    finally:
        server.stop()
    assert sha256(live.path) == before and os.stat(live.path).st_mtime_ns == stat.st_mtime_ns


def test_the_virtual_bright_field_is_previews(live):
    live.writer.wait(timeout=60)
    monitor = Monitor(live.path, interval=0)
    for _ in range(100):
        if all(s["shown_frames"] == N_FRAMES for s in monitor.state()["streams"].values()):
            break
    frames = monitor.views["diffraction"]
    with open_emd(live.path) as f:
        ds = f["diffraction"]
        expected = virtual_image(ds, frames.detector, valid_frames(ds))
        assert np.allclose(frames.reduced.reshape(SCAN), expected)
        assert np.allclose(monitor.views["haadf"].reduced.reshape(SCAN), f["haadf"].data[()])


def test_dropped_and_unwritten_slots_are_marked_and_a_hot_pixel_is_ignored(tmp_path):
    path = tmp_path / "dropped.emd"
    sim = Simulated4DSTEM((8, 8), (32, 32))
    with EMDWriter(path, sim.frame_shape, sim.dtype, scan_shape=sim.scan_shape, workers=1) as w:
        for i, frame in zip(range(40), sim):
            frame[1, 2] = 65535 if i < 3 else frame[1, 2]  # a hot pixel while placing the detector
            if i in (5, 6):  # a failed frame counts as dropped
                with pytest.raises(RuntimeError), w.frame_buffer():
                    raise RuntimeError("detector hiccup")
            else:
                w.put(frame)
    monitor = Monitor(path)
    state = monitor.state()["streams"]["dataset_1"]
    assert (state["frames_written"], state["frames_dropped"], state["complete"]) == (38, 2, True)
    panels = {p["key"]: p for p in monitor.panels()["panels"]}
    nav = codes(panels["dataset_1/navigation"]).reshape(-1)
    assert (nav[[5, 6]] == DROPPED).all() and (nav[40:] == UNWRITTEN).all()
    assert (np.delete(nav[:40], [5, 6]) >= FIRST_LEVEL).all()
    assert np.median(nav[:40]) > FIRST_LEVEL + 30  # not flattened by the frames with a hot pixel
    detector = monitor.views["dataset_1"].detector
    disk = np.pi * sim.radius ** 2
    assert not detector[1, 2] and 0.2 * disk < detector.sum() < 1.2 * disk
    assert monitor.frame("dataset_1", 0)["panel"]["stats"]["saturated"] == 1
    dropped = monitor.frame("dataset_1", 5)
    assert dropped["state"] == "dropped" and "panel" not in dropped
    assert monitor.frame("dataset_1", 50)["state"] == "unwritten"
    with pytest.raises(IndexError):
        monitor.frame("dataset_1", 64)
    with pytest.raises(KeyError):
        monitor.frame("nothing", 0)


def test_the_colour_range_ignores_hot_pixels():
    image = np.arange(100.0).reshape(10, 10)
    image[3, 3] = 65535
    lo, hi = robust_range(image)
    assert lo <= 1 and 97 <= hi < 100
    assert robust_range(np.array([10.0, 11, 12, 13, 65535])) == (11, 13)  # a few pixels written
    assert robust_range(np.array([np.nan, 5.0])) == (4.5, 5.5)
    assert robust_range(np.full(3, np.nan)) is None
    scan = np.where(np.arange(100) < 60, image.reshape(-1), np.nan)  # 60 positions written
    shown = quantize(scan, robust_range(scan))
    assert (shown[60:] == UNWRITTEN).all() and 100 < np.median(shown[:60]) < 160  # not flattened
    big = Panel("k", "s", "navigation", "t", np.random.default_rng(0).random((1200, 700))).to_json()
    assert big["shape"] == [400, 234] and big["bin"] == 3 and big["full_shape"] == [1200, 700]


def test_a_new_kind_of_stream_adds_its_own_panels(tmp_path, monkeypatch):
    class Custom(view_streams.StreamView):  # a kind of stream still to come
        kind = "custom"

        @classmethod
        def accepts(cls, ds):
            return ds.name == "special"

        def panels(self):
            return [Panel("special/map", self.name, "navigation", "special: a map", np.ones((4, 4)))]

    monkeypatch.setattr(view_kinds, "KINDS", [Custom] + view_kinds.KINDS)
    path = tmp_path / "stack.emd"
    with EMDWriter(path, (8,), "float32", name="special", workers=1) as w:
        for i in range(5):
            w.put(np.full(8, i, np.float32))
    monitor = Monitor(path)
    assert monitor.state()["streams"]["special"]["kind"] == "custom"
    assert [p["title"] for p in monitor.panels()["panels"]] == ["special: a map"]


def test_a_counted_stream_shows_its_counts_image_and_summed_pattern(tmp_path):
    path = tmp_path / "counted.emd"
    scan = (6, 10)
    with Acquisition(path, scan_shape=scan, streams=[CountedStream("electrons", frame_shape=SHAPE),
                                                     Stream("haadf", (), "float32")]) as acq:
        for slot in range(40):  # 20 slots never written
            acq["electrons"].put_events(events_of(slot))
            acq["haadf"].put(float(slot))
    monitor = Monitor(path)
    state = monitor.state()["streams"]
    assert state["electrons"]["kind"] == "counted" and state["electrons"]["frames_written"] == 40
    assert state["summed_electrons"]["kind"] == "image"
    panels = {p["key"]: p for p in monitor.panels()["panels"]}
    counts = codes(panels["electrons/navigation"]).reshape(-1)
    assert panels["electrons/navigation"]["title"].startswith("electrons: counts image")
    assert (counts[40:] == UNWRITTEN).all() and (counts[:40] >= FIRST_LEVEL).all()
    assert panels["electrons/navigation"]["frames_from"] == "electrons"
    everything = np.bincount(np.concatenate([events_of(s) for s in range(40)]),
                             minlength=SHAPE[0] * SHAPE[1]).reshape(SHAPE)
    assert np.array_equal(monitor.views["electrons"].pattern, everything)
    assert panels["electrons/summed"]["stats"]["max"] == everything.max()
    assert panels["summed_electrons/image"]["stats"]["max"] == everything.max()
    frame = monitor.frame("electrons", 7)
    assert frame["panel"]["shape"] == list(SHAPE)
    assert frame["panel"]["stats"]["mean"] * SHAPE[0] * SHAPE[1] == pytest.approx(events_of(7).size)


def test_a_stack_of_spectra_shows_lines(tmp_path):
    path = tmp_path / "spectra.emd"
    with EMDWriter(path, (64,), "uint16", workers=1) as w:
        for i in range(5):
            w.put(np.full(64, i, np.uint16))
    monitor = Monitor(path)
    stream = monitor.state()["streams"]["dataset_1"]
    assert stream["n_frames"] is None and stream["progress"] is None and stream["complete"]
    panels = {p["key"]: p for p in monitor.panels()["panels"]}
    assert panels["dataset_1/navigation"]["shape"] == [5]
    assert panels["dataset_1/latest"]["shape"] == [64] and panels["dataset_1/mean"]["shape"] == [64]


def test_command_prints_the_url_first(tmp_path):
    path = tmp_path / "small.emd"
    with EMDWriter(path, (8, 8), "uint16", scan_shape=(2, 2), workers=1) as w:
        for _ in range(4):
            w.put(np.zeros((8, 8), np.uint16))
    command = [sys.executable, "-m", "emdstream", "view"]
    proc = subprocess.Popen(command + [str(path), "--no-browser", "--port", "0", "--interval", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/\?token=[\w-]{20,}", url), proc.stderr.read()
        state = json.loads(get(url.replace("/?", "/api/state?"))[1])
        assert state["streams"]["dataset_1"]["frames_written"] == 4 and state["interval"] == 1
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    missing = subprocess.run(command + [str(tmp_path / "missing.emd"), "--no-browser"],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and missing.stderr.startswith("emdstream view: error: no such")


def test_in_jupyter_view_returns_an_iframe(tmp_path, monkeypatch):
    path = tmp_path / "small.emd"
    with EMDWriter(path, (8, 8), "uint16", workers=1) as w:
        w.put(np.zeros((8, 8), np.uint16))

    class IFrame:  # IPython.display.IFrame's signature
        def __init__(self, src, width, height):
            self.src, self.width, self.height = src, width, height

    display = types.ModuleType("IPython.display")
    display.IFrame = IFrame
    monkeypatch.setitem(sys.modules, "IPython", types.ModuleType("IPython"))
    monkeypatch.setitem(sys.modules, "IPython.display", display)
    frame = start_view(path)
    try:
        assert isinstance(frame, IFrame) and frame.src == frame.url and "token=" in frame.url
        assert get(frame.url)[0] == 200
    finally:
        frame.stop()
    monkeypatch.setitem(sys.modules, "IPython", None)  # not installed
    monkeypatch.setitem(sys.modules, "IPython.display", None)
    url = start_view(path)
    try:
        assert isinstance(url, ViewURL) and "open this URL in a browser" in repr(url)
        assert get(url)[0] == 200
    finally:
        url.stop()
    with pytest.raises(FileNotFoundError):
        start_view(tmp_path / "missing.emd")


def test_a_killed_writer_is_called_stopped(tmp_path, monkeypatch):
    monkeypatch.setattr(view_server, "STALL_S", 0.0)
    path = killed_writer_file(tmp_path / "killed.emd")
    monitor = Monitor(path, interval=0)
    states = [monitor.state() for _ in range(2)]
    assert states[-1]["writer"] == "stopped" and not states[-1]["complete"], states
