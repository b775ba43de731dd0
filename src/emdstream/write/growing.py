"""A dataset the writer thread grows along its first axis (``Growing``), its length kept here
rather than asked of HDF5 before every chunk: h5py's ``Dataset.shape`` holds the GIL and h5py's
lock for ~5 us alone, and waited ~100 us a call in the writer thread of a ``put_csr`` run (797
calls, 78 ms of wall time: ``/work/scratch/s2/tw.py``, 2026-11-28); and it is resized with the
low-level ``set_extent`` (h5py's ``resize`` first asks for the chunk shape, another h5py call
each time; the datasets are chunked by construction). Only the writer thread (or
a producer holding ``io_lock``) resizes these datasets while streaming, and never shrinks them;
finalize trims them after."""
from __future__ import annotations

import h5py


class Growing:
    def __init__(self, dataset: h5py.Dataset):
        self.dataset = dataset
        shape = dataset.shape
        self.length, self._rest = shape[0], tuple(shape[1:])

    def reach(self, end: int, step: int = 1) -> None:
        """At least ``end`` long: resized up to a multiple of ``step`` when shorter."""
        if end > self.length:
            length = (end + step - 1) // step * step
            self.dataset.id.set_extent((length,) + self._rest)
            self.length = length
