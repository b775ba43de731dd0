"""A detector stand-in: 4D-STEM frames (Poisson counts, a bright disk that moves with scan
position) and a HAADF signal from the same sample, and ``simulate``, which streams them into a file
like a live acquisition would."""
from __future__ import annotations

import math
import os
import shlex
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Optional

import numpy as np

from emdstream.encoders import describe_filters
from emdstream.format.chunk_grid import DEFAULT_CHUNK_BYTES
from emdstream.format.dims import Dim
from emdstream.read.file import EMDFile
from emdstream.write.acquisition import Acquisition
from emdstream.write.stream import Stream


class Simulated4DSTEM:
    """Frames of a 4D-STEM scan over a crystal-like sample.

    The direct-beam disk shifts with scan position (a periodic deflection field) and its
    intensity follows the sample's transmission, so a virtual bright-field image shows a lattice.
    Counts are Poisson, with a weak diffuse background outside the disk.
    """

    def __init__(self, scan_shape=(64, 64), frame_shape=(128, 128), dtype="uint16",
                 counts_in_disk: float = 40.0, background: float = 0.05, seed: int = 0):
        self.scan_shape = tuple(scan_shape)
        self.frame_shape = tuple(frame_shape)
        self.dtype = np.dtype(dtype)
        self.counts_in_disk = counts_in_disk
        self.background = background
        self.rng = np.random.default_rng(seed)
        h, w = self.frame_shape
        self._yy, self._xx = np.ogrid[:h, :w]
        self.radius = max(2.0, min(h, w) / 8)
        self.period = max(4.0, min(self.scan_shape) / 4)

    def transmission(self, iy: int, ix: int) -> float:
        phase = 2 * math.pi / self.period
        return 0.55 + 0.45 * math.cos(phase * iy) * math.cos(phase * ix)

    def disk_center(self, iy: int, ix: int) -> tuple[float, float]:
        h, w = self.frame_shape
        shift = self.radius / 2
        phase = 2 * math.pi / self.period
        return (h / 2 + shift * math.sin(phase * ix), w / 2 + shift * math.sin(phase * iy))

    def frame(self, iy: int, ix: int) -> np.ndarray:
        cy, cx = self.disk_center(iy, ix)
        inside = (self._yy - cy) ** 2 + (self._xx - cx) ** 2 < self.radius ** 2
        lam = np.where(inside, self.counts_in_disk * self.transmission(iy, ix), self.background)
        counts = self.rng.poisson(lam)
        if self.dtype.kind in "iu":
            np.minimum(counts, np.iinfo(self.dtype).max, out=counts)
        return counts.astype(self.dtype)

    def haadf(self, iy: int, ix: int) -> float:
        """The annular dark-field signal at a position: what the sample scatters out of the
        bright-field disk (so the HAADF image is the bright field's contrast, inverted), with
        Poisson noise."""
        scattered = 400.0 * (1.0 - self.transmission(iy, ix)) + 20.0
        return float(self.rng.poisson(scattered))

    def position(self, index: int) -> tuple[int, int]:
        """(row, column) of the ``index``-th frame of the scan."""
        position = np.unravel_index(index, self.scan_shape)
        return (int(position[-2]) if len(position) > 1 else 0), int(position[-1])

    def __len__(self) -> int:
        return math.prod(self.scan_shape)

    def __iter__(self) -> Iterator[np.ndarray]:
        for index in range(len(self)):
            yield self.frame(*self.position(index))


@dataclass
class SimulationReport:
    path: str
    frames_put: int
    frames_written: int
    frames_dropped: int
    queue_high_water: int
    queue_size: int
    bytes_raw: int
    seconds: float
    file_bytes: int
    writer_seconds: float = 0.0  # of ``seconds``: spent in put() and close(), the rest simulating
    fps: Optional[float] = None  # the pace asked for
    holds: tuple[str, ...] = ()  # one line per stream: what the file holds

    def __str__(self) -> str:
        ratio = self.bytes_raw / self.file_bytes if self.file_bytes else float("nan")
        kept_up = ("writer kept up" if self.frames_dropped == 0 else
                   f"writer fell behind: {self.frames_dropped} frames DROPPED")
        paced = f", paced at {self.fps:g} frames/s" if self.fps else ""
        path = shlex.quote(self.path)
        return "\n".join([
            f"wrote {self.path}: {self.file_bytes / 1e6:.1f} MB on disk "
            f"({self.bytes_raw / 1e6:.1f} MB of frames, "
            f"{f'{ratio:.1f}x smaller' if ratio >= 1 else f'{1 / ratio:.1f}x larger'})",
            *(f"  {line}" for line in self.holds),
            f"  {self.frames_written} frames in {self.seconds:.2f} s{paced}: "
            f"{self.writer_seconds:.2f} s of it in put() and close(), the rest making "
            f"{'and pacing ' if self.fps else ''}the simulated frames",
            f"  {kept_up}; queue high-water mark {self.queue_high_water} of {self.queue_size}",
            "  (the simulator sets this run's speed: for emdstream's own, see docs/performance.md)",
            "next:",
            f"  emdstream info {path}       # dims, per-frame values and their ranges, metadata",
            f"  emdstream preview {path}    # a PNG: HAADF, mean pattern, virtual bright field "
            "(needs matplotlib)",
            f"  emdstream view {path}       # the same in a browser",
            f"  python -c \"import emdstream; print(emdstream.open({self.path!r})['diffraction'])\""])


def holds(path: str) -> tuple[str, ...]:
    """One line per stream of a file: shape, dtype, compression, frames, per-frame value names."""
    lines = []
    with EMDFile(path) as f:
        width = max(map(len, f), default=0)
        for name, ds in f.items():
            slots = math.prod(ds.frame_grid)
            lines.append(f"/data/{name:<{width}}  {ds.data.shape} {ds.data.dtype}, "
                         f"{describe_filters(ds.data)}: {ds.frames_written} of {slots} frames; "
                         f"per-frame values: {', '.join(ds.values) or 'none'}")
    return tuple(lines)


STREAM_OPTIONS = ("chunk_frames", "queue_frames", "fillvalue")  # the diffraction stream's own


def simulate(path: str, scan_shape=(64, 64), frame_shape=(128, 128), dtype="uint16",
             compression: Optional[str] = "bslz4", n_frames: Optional[int] = None,
             fps: Optional[float] = None, progress: Optional[bool] = None, overwrite: bool = False,
             seed: int = 0, **writer_options) -> SimulationReport:
    """Run a simulated 4D-STEM acquisition into ``path``: a ``diffraction`` stream of frames and a
    ``haadf`` stream of one value per position, from the same simulated sample; every frame has
    its timestamp, and the diffraction frames the simulated beam current.

    ``n_frames`` limits the frames put (a scan stopped early). ``fps`` paces frames like a
    detector; then a full queue drops frames (a detector cannot wait) and the report says so.
    ``progress``: a tqdm bar on stderr (default: only when stderr is a terminal).
    ``writer_options``: ``Acquisition`` options, and ``chunk_frames``/``queue_frames``/``fillvalue``
    of the diffraction stream.
    """
    from tqdm import tqdm

    source = Simulated4DSTEM(scan_shape, frame_shape, dtype, seed=seed)
    total = len(source) if n_frames is None else min(n_frames, len(source))
    if fps is not None:
        writer_options.setdefault("on_full", "drop")
        # a slow detector fills at most about one chunk per flush (docs/writing.md: slow streams)
        frame_bytes = int(np.prod(frame_shape)) * np.dtype(dtype).itemsize
        per_flush = fps * writer_options.get("flush_seconds", 1.0)
        writer_options.setdefault("chunk_frames", max(1, min(int(per_flush),
                                                             DEFAULT_CHUNK_BYTES // frame_bytes)))
    stream_options = {k: writer_options.pop(k) for k in STREAM_OPTIONS if k in writer_options}
    scan = [Dim("scan_y", "[nm]", scale=0.5), Dim("scan_x", "[nm]", scale=0.5)] \
        if len(scan_shape) == 2 else None
    acq = Acquisition(
        path, [Stream("diffraction", frame_shape, dtype, compression,
                      scan + [Dim("k_y", "[px]"), Dim("k_x", "[px]")] if scan else None,
                      **stream_options),
               Stream("haadf", (), "float32", "gzip", scan)],
        scan_shape, microscope={"high_tension_kV": 300.0, "camera_length_mm": 115.0,
                                "simulated": True},
        user={"software": "emdstream simulate"}, sample={"name": "simulated lattice"},
        overwrite=overwrite, **writer_options)
    diffraction, haadf = acq["diffraction"], acq["haadf"]
    show = sys.stderr.isatty() if progress is None else progress
    start = time.perf_counter()
    in_writer = 0.0
    with tqdm(total=total, unit="frame", disable=not show, file=sys.stderr, smoothing=0.1) as bar, \
            acq:
        for i, frame in enumerate(source):
            if i >= total:
                break
            if fps is not None:
                _wait_until(start + i / fps)
            adf = source.haadf(*source.position(i))
            t = time.perf_counter()
            diffraction.put(frame, beam_current_pA=50.0)
            haadf.put(adf)
            in_writer += time.perf_counter() - t
            bar.update(1)
        if fps is not None:
            acq.comment(f"paced at {fps} frames/s")
        closing = time.perf_counter()
    seconds = time.perf_counter() - start
    in_writer += time.perf_counter() - closing  # close(): the last chunks and finalizing
    return SimulationReport(path, diffraction.frames_put, diffraction.frames_written,
                            diffraction.frames_dropped, diffraction.queue_high_water,
                            diffraction.queue_size,
                            diffraction.frames_put * int(np.prod(frame_shape)) * np.dtype(dtype).itemsize,
                            seconds, os.path.getsize(path), in_writer, fps, holds(path))


def _wait_until(t: float) -> None:
    delay = t - time.perf_counter()
    if delay > 0.002:
        time.sleep(delay - 0.001)
    while time.perf_counter() < t:
        pass
