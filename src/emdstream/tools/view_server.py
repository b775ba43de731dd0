"""The server of ``emdstream view``: ``Monitor`` (the file as the page sees it) and ``ViewServer``.

A small HTTP server (standard library) for one file serves one self-contained page
(``view_page.html``: canvas and JavaScript, nothing from the network) and its JSON:
``/api/state`` (counts, rates, storage per stream; comments, metadata), ``/api/panels`` (the
display images and per-frame values of the last poll) and ``/api/frame?stream=S&index=I`` (one
frame). Every request needs the random token of the printed URL (403 otherwise). The file is only
read, through the live reader, opened at each poll and closed again: the writer never waits for it.
"""
from __future__ import annotations

import hmac
import json
import math
import os
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

import numpy as np

from emdstream.read.file import open as open_emd
from emdstream.safety.filelock import writer_holds
from emdstream.tools.view_kinds import kind_of, view_for
from emdstream.tools.view_panels import Panel
from emdstream.tools.view_streams import StreamView

PAGE = Path(__file__).with_name("view_page.html")
STALL_S = 3.0  # no new frame for this long: ask whether a writer still holds the file
FAILURES_SHOWN = 3  # a poll that fails (caught while the writer finalizes) is retried quietly


class Monitor:
    """One file as the page sees it. ``state()`` polls the file (at most every ``interval / 2``
    seconds, opening it read-only through the live reader and closing it again), ``panels()``
    gives the images of the last poll; both are safe to call from several threads."""

    def __init__(self, path: str | os.PathLike, interval: float = 0.5):
        self.path = os.fspath(path)
        self.interval = interval
        self.lock = threading.Lock()
        self.views: dict[str, StreamView] = {}
        self.version = 0
        self._state: dict[str, Any] = {"streams": {}, "error": None}
        self._panels: dict[str, Any] = {"version": 0, "panels": [], "series": {}}
        self._polled = -math.inf
        self._failures = 0  # polls failed in a row
        self._identity: Optional[tuple[int, int]] = None
        self._moved_at = time.monotonic()
        self._checked_at = -math.inf
        self._writer = "unknown"

    def state(self) -> dict[str, Any]:
        with self.lock:
            if time.monotonic() - self._polled >= self.interval / 2:
                self._poll()
            return self._state

    def panels(self) -> dict[str, Any]:
        with self.lock:
            return self._panels

    def _poll(self) -> None:
        self._polled = time.monotonic()
        try:
            stat = os.stat(self.path)
            if (stat.st_dev, stat.st_ino) != self._identity:  # replaced: start afresh
                self._identity, self.views = (stat.st_dev, stat.st_ino), {}
            changed, streams = False, {}
            with open_emd(self.path, live=True) as f:
                for name, ds in f.datasets.items():
                    view = self.views.get(name) or self.views.setdefault(name, view_for(name, ds))
                    changed |= view.update(ds)
                    streams[name] = view.status(f, ds)
                comments, metadata = f.comments, f.metadata
        except Exception as exc:  # caught mid-finalize, or the file went away: keep the last state
            self._failures += 1
            if self._failures >= FAILURES_SHOWN:
                self._state = {**self._state, "error": f"{type(exc).__name__}: {exc}"}
            return
        self._failures = 0
        complete = bool(streams) and all(s["complete"] for s in streams.values())
        self._state = {"path": self.path, "file": os.path.basename(self.path), "time": time.time(),
                       "interval": self.interval, "complete": complete,
                       "writer": self._writer_state(complete, changed), "streams": streams,
                       "comments": [{"time": k, "text": t} for k, t in comments],
                       "metadata": metadata, "version": self.version + changed, "error": None}
        if changed:
            self.version += 1
            self._panels = self._build_panels()

    def _writer_state(self, complete: bool, changed: bool) -> str:
        """finished / writing / stopped (unfinished, and no process holds the file: recover it)."""
        now = time.monotonic()
        if complete:
            return "finished"
        if changed or self._writer == "unknown":
            self._moved_at = now
            self._writer = "writing"
        elif now - self._moved_at >= STALL_S and now - self._checked_at >= STALL_S:
            self._checked_at = now
            self._writer = "writing" if writer_holds(self.path) else "stopped"
        return self._writer

    def _build_panels(self) -> dict[str, Any]:
        drawn = [panel for view in self.views.values() for panel in view.panels()]
        framed = [v for v in self.views.values() if v.has_frames]
        for panel in drawn:  # a click on a scan position shows the frame of a stream on that scan
            if panel.role == "navigation":
                own = self.views[panel.stream]
                source = own if own.has_frames else next(
                    (v for v in framed if v.grid == own.grid), None)
                panel.frames_from = source.name if source else None
        drawn.sort(key=lambda p: (p.role != "navigation", self.views[p.stream].kind != "scalar"))
        return {"version": self.version, "panels": [p.to_json() for p in drawn],
                "series": {name: v.series for name, v in self.views.items() if v.series}}

    def frame(self, stream: str, index: int) -> dict[str, Any]:
        """The frame at slot ``index`` of ``stream``, and its per-frame values; KeyError for an
        unknown stream, IndexError for a slot outside the grid."""
        with self.lock, open_emd(self.path, live=True) as f:
            ds = f.datasets[stream]
            grid = ds.frame_grid
            if not 0 <= index < math.prod(grid):
                raise IndexError(f"frame slot {index} is outside {stream}'s {math.prod(grid)}")
            state = ("unwritten" if index >= ds.frame_slots else
                     "dropped" if ds.dropped_between(index, index + 1).size else "written")
            out: dict[str, Any] = {"stream": stream, "index": index, "state": state,
                                   "position": [int(i) for i in np.unravel_index(index, grid)]}
            if state == "written":
                out["values"] = {k: float(np.asarray(v).reshape(-1)[index])
                                 for k, v in ds.values.items()}
                frame = kind_of(ds).read_frame(ds, index).astype(np.float64)
            if state == "written" and frame.ndim:
                where = ", ".join(map(str, out["position"]))
                dtype = ds.data.dtype
                out["panel"] = Panel(f"{stream}/selected", stream, "frame",
                                     f"{stream}: frame #{index} ({where})", frame,
                                     log=frame.ndim == 2,
                                     cmap="inferno", ceiling=float(np.iinfo(dtype).max)
                                     if dtype.kind in "iu" else None).to_json()
            return out


# --- the server ----------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """JSON-safe: numpy scalars and arrays as Python ones, NaN and infinities as null."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class ViewServer(ThreadingHTTPServer):
    """The page and API of one file; ``url`` carries the token, ``stop()`` ends it."""

    daemon_threads = True

    def __init__(self, path: str | os.PathLike, host: str = "127.0.0.1", port: int = 0,
                 interval: float = 0.5):
        if ":" in host:  # an IPv6 address
            import socket

            self.address_family = socket.AF_INET6
        self.monitor = Monitor(path, interval)
        self.token = secrets.token_urlsafe(24)
        self.page = PAGE.read_bytes()
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        if host in ("0.0.0.0", "::"):
            import socket

            host = socket.gethostname()
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/?token={self.token}"

    def start(self) -> ViewServer:
        """Serve in a daemon thread; returns self."""
        threading.Thread(target=self.serve_forever, args=(0.1,), name="emdstream-view",
                         daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: ViewServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if not hmac.compare_digest(query.get("token", "").encode(), self.server.token.encode()):
            self._send(403, b"403: this page needs the token of the URL that emdstream view "
                            b"printed\n", "text/plain")
            return
        monitor = self.server.monitor
        try:
            if url.path in ("/", "/index.html"):
                self._send(200, self.server.page, "text/html; charset=utf-8")
            elif url.path == "/api/state":
                self._json(monitor.state())
            elif url.path == "/api/panels":
                self._json(monitor.panels())
            elif url.path == "/api/frame":
                self._json(monitor.frame(query.get("stream", ""), int(query.get("index", "-1"))))
            else:
                self._send(404, b"404: no such page\n", "text/plain")
        except KeyError as exc:
            self._json({"error": f"no stream {exc}"}, 404)
        except (IndexError, ValueError) as exc:
            self._json({"error": str(exc)}, 400)
        except OSError as exc:  # the file went away, or is mid-finalize
            self._json({"error": str(exc)}, 503)

    def _json(self, value: Any, status: int = 200) -> None:
        body = json.dumps(_plain(value), allow_nan=False, separators=(",", ":")).encode()
        self._send(status, body, "application/json")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        for key, value in (("Content-Type", kind), ("Content-Length", str(len(body))),
                           ("Cache-Control", "no-store"), ("Referrer-Policy", "no-referrer"),
                           ("X-Content-Type-Options", "nosniff"),
                           ("Content-Security-Policy", "default-src 'none'; connect-src 'self'; "
                            "script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:")):
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # quiet: the terminal shows the URL only
        pass
