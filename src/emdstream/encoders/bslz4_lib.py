"""The C function behind bslz4, ``bshuf_compress_lz4``, called through ctypes (no compiler, no
``bitshuffle`` package needed).

Two builds export it: hdf5plugin's bundled filter library (``libh5bshuf``, present wherever
hdf5plugin installs: every platform has wheels) and, if installed, the ``bitshuffle`` wheel's
extension. Both write the same bytes (checked in ``tests/encoders``). A ctypes call releases the
GIL and writes into a buffer the caller reuses. The ``bitshuffle`` build runs an OpenMP team inside
each call; emdstream parallelizes with its own threads, so each calling thread's team is limited
to itself (``omp_set_num_threads(1)`` is a per-thread setting of the libgomp that wheel bundles;
the rest of the process is left alone). hdf5plugin 7.1's Linux build has no OpenMP
(``hdf5plugin.get_config().build_config.openmp``).

Which build: ``EMDSTREAM_BSLZ4_LIBRARY`` ("hdf5plugin" or "bitshuffle") if set, else the
``bitshuffle`` wheel's if it is installed (one core: 2.30 vs 2.08 GB/s for hdf5plugin's, issue 17;
``benchmarks/bench_costs.py`` times the one in use), else hdf5plugin's. Thread safety: the
library object is immutable; its functions may be called from any thread at once.
"""
from __future__ import annotations

import ctypes
import functools
import glob
import importlib.util
import os
import threading
from typing import Optional

_ARGS = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_size_t]
_per_thread = threading.local()


class Bslz4Library:
    """``bshuf_compress_lz4`` / ``bshuf_decompress_lz4`` of one shared library."""

    def __init__(self, name: str, path: str, libgomp: Optional[str] = None):
        self.name, self.path = name, path
        lib = ctypes.CDLL(path)
        self._compress = lib.bshuf_compress_lz4
        self._decompress = lib.bshuf_decompress_lz4
        for fn in (self._compress, self._decompress):
            fn.restype, fn.argtypes = ctypes.c_int64, _ARGS
        self._bound = lib.bshuf_compress_lz4_bound
        self._bound.restype = ctypes.c_size_t
        self._bound.argtypes = [ctypes.c_size_t] * 3
        self._bounds: dict[tuple[int, int, int], int] = {}  # asked per chunk: a ctypes call each
        self._gomp = _load(libgomp) if libgomp else None

    def compress(self, src: int, dst: int, n_elems: int, elem_size: int, block_elems: int) -> int:
        """Compress ``n_elems`` elements at address ``src`` into ``dst`` (room for ``bound``
        bytes): the blocks without the 12-byte chunk header. Returns the bytes written."""
        if self._gomp is not None and not getattr(_per_thread, "one_team", False):
            _per_thread.one_team = True
            self._gomp.omp_set_num_threads(1)
        n = self._compress(src, dst, n_elems, elem_size, block_elems)
        if n < 0:
            raise RuntimeError(f"bshuf_compress_lz4 failed ({n}) in {self.path}")
        return n

    def decompress(self, src: int, dst: int, n_elems: int, elem_size: int, block_elems: int) -> int:
        """The reverse of ``compress``: returns the compressed bytes read."""
        n = self._decompress(src, dst, n_elems, elem_size, block_elems)
        if n < 0:
            raise ValueError(f"bshuf_decompress_lz4 failed ({n}): not a valid bslz4 body")
        return n

    def bound(self, n_elems: int, elem_size: int, block_elems: int) -> int:
        """The most bytes ``compress`` writes for ``n_elems`` elements."""
        key = (n_elems, elem_size, block_elems)
        bound = self._bounds.get(key)
        if bound is None:
            if len(self._bounds) > 256:  # a few sizes per stream: never grows without end
                self._bounds.clear()
            bound = self._bounds[key] = int(self._bound(n_elems, elem_size, block_elems))
        return bound

    def __repr__(self) -> str:
        return f"<Bslz4Library {self.name} {self.path}>"


def hdf5plugin_path() -> Optional[str]:
    """hdf5plugin's bundled bitshuffle filter library (libh5bshuf.so / .dylib / .dll)."""
    import hdf5plugin

    found = sorted(glob.glob(os.path.join(hdf5plugin.PLUGIN_PATH, "*h5bshuf*")))
    return found[0] if found else None


def bitshuffle_paths() -> Optional[tuple[str, Optional[str]]]:
    """The ``bitshuffle`` wheel's extension and the libgomp it bundles, without importing it."""
    spec = importlib.util.find_spec("bitshuffle")
    if spec is None or not spec.submodule_search_locations:
        return None
    here = list(spec.submodule_search_locations)[0]
    ext = sorted(glob.glob(os.path.join(here, "ext.*")))
    if not ext:
        return None
    gomp = sorted(glob.glob(os.path.join(here, os.pardir, "bitshuffle.libs", "libgomp*")))
    return ext[0], (gomp[0] if gomp else None)


@functools.cache
def library(name: Optional[str] = None) -> Bslz4Library:
    """The build to use: ``name`` ("hdf5plugin", "bitshuffle"), else as the module says."""
    name = name or os.environ.get("EMDSTREAM_BSLZ4_LIBRARY") or None
    if name in (None, "bitshuffle"):
        paths = bitshuffle_paths()
        if paths is not None:
            try:
                return Bslz4Library("bitshuffle", *paths)
            except (OSError, AttributeError):
                if name == "bitshuffle":
                    raise
        elif name == "bitshuffle":
            raise ImportError("EMDSTREAM_BSLZ4_LIBRARY=bitshuffle, but the bitshuffle package is "
                              "not installed")
    elif name != "hdf5plugin":
        raise ValueError(f"EMDSTREAM_BSLZ4_LIBRARY must be 'hdf5plugin' or 'bitshuffle', got {name!r}")
    path = hdf5plugin_path()
    if path is None:
        raise ImportError("hdf5plugin's bitshuffle filter library (libh5bshuf) was not found")
    return Bslz4Library("hdf5plugin", path)


def _load(path: str):
    try:
        return ctypes.CDLL(path)
    except OSError:
        return None
