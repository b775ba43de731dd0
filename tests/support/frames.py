"""Test frames and the one-writer helper most tests use."""
import numpy as np

from emdstream import EMDWriter

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


def write_frames(path, frames, **writer_kwargs):
    """Write ``frames`` (an array, one frame per item of axis 0) with one EMDWriter, closed on
    return; every frame must be taken. Frame shape and dtype are the array's; one compression
    thread unless ``workers`` is given. Returns the closed writer."""
    frames = np.asarray(frames)
    writer_kwargs.setdefault("workers", 1)
    with EMDWriter(path, frames.shape[1:], frames.dtype, **writer_kwargs) as w:
        for frame in frames:
            assert w.put(frame) is True
    assert w.frames_written == len(frames)
    return w
