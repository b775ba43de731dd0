"""``emdstream view``: watch a file fill in, in a browser, while it is written (or after).

``serve`` is the command (URL on the first line of stdout, then serve until Ctrl-C); ``view``
serves from a thread, for Jupyter. The server, the page and the images: ``view_server``,
``view_page.html``, ``view_streams`` and ``view_kinds`` (what each kind of stream shows),
``view_panels``.
"""
from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from IPython.display import IFrame

    from emdstream.tools.view_server import ViewServer


class ViewURL(str):
    """The page's URL, returned by ``view`` where IPython is not installed; ``stop()`` ends it."""

    note = "IPython is not installed, so no inline frame: open this URL in a browser"

    def __new__(cls, server: ViewServer) -> ViewURL:
        url = super().__new__(cls, server.url)
        url.server = server
        return url

    def __repr__(self) -> str:
        return f"{str.__repr__(self)}  ({self.note})"

    def stop(self) -> None:
        self.server.stop()


def view(path: str | os.PathLike, host: str = "127.0.0.1", port: int = 0, interval: float = 0.5,
         width: str | int = "100%", height: int = 860) -> IFrame | ViewURL:
    """Serve the live page of an EMD file in a background thread; in Jupyter, an IFrame showing
    it (``.url``, ``.stop()``), else a ``ViewURL`` (a str) to open in a browser."""
    from emdstream.tools.view_server import ViewServer

    server = ViewServer(_existing(path), host, port, interval).start()
    try:
        from IPython.display import IFrame
    except ImportError:
        return ViewURL(server)
    frame = IFrame(server.url, width=width, height=height)
    frame.url, frame.server, frame.stop = server.url, server, server.stop
    return frame


def _existing(path: str | os.PathLike) -> str:
    """The path of an EMD file the live reader opens; FileNotFoundError / ValueError / OSError."""
    from emdstream.read.file import open as open_emd

    open_emd(path, live=True).close()
    return os.fspath(path)


def serve(path: str | os.PathLike, host: str = "127.0.0.1", port: int = 0, interval: float = 0.5,
          browser: bool = True, out=None) -> int:
    """``emdstream view``: print the URL (first line), open it unless ``browser`` is False, serve
    until interrupted."""
    from emdstream.tools.view_server import ViewServer

    server = ViewServer(_existing(path), host, port, interval)
    out = out or sys.stdout
    print(server.url, file=out, flush=True)
    print(f"serving {os.fspath(path)} read-only; Ctrl-C to stop", file=out, flush=True)
    if browser:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
