"""The writer thread's side of the chunk log (``chunklog``): where each chunk went, and at each
flush the state the counts rely on, appended after those chunks were written (fsynced first with
``fsync=True``) and before the counts are."""
from __future__ import annotations

import functools
import os
from typing import Optional

import numpy as np

from emdstream.format.values import MAX_VALUES
from emdstream.safety.chunklog import ChunkLog, ChunkRecord, crc, dropped_runs


class ChunkNotes:
    def __init__(self, log: Optional[ChunkLog], sinks: list):
        self.log = log
        self._fd: Optional[int] = None  # the HDF5 file's descriptor, read back to place chunks
        self._end = 0  # the file's size after the last chunk noted
        self._datasets: dict[tuple[str, str], tuple] = {}  # see _dataset
        if log is None:
            return
        for sink in sinks:
            sink.values.on_write = functools.partial(self.note, sink, "values")
            if getattr(sink, "events", None) is not None:  # a counted stream: "events/indices"...
                sink.events.on_write = functools.partial(self.note, sink)

    def note(self, sink, dataset: str, offset: tuple, payload, mask: int, first: int,
             end: int) -> None:
        """A chunk of ``sink`` (``dataset`` "data" or "values") was written at ``offset``. A chunk
        stored as it is may be rewritten in place later: its CRC covers the slots it holds now
        (those bytes stay)."""
        if self.log is None:
            return
        ds, slot_bytes, skip_all = self._dataset(sink, dataset)
        size = memoryview(payload).nbytes
        checked = min(size, (end - first) * slot_bytes) if mask == skip_all else size
        self.log.note(ChunkRecord(sink.name, dataset, tuple(int(i) for i in offset),
                                  self._placed(ds, offset, payload), size, int(mask),
                                  crc(payload, checked), checked, first, end))

    @property
    def file_end(self) -> Optional[int]:
        """The file's size when the last chunk was noted (None without a chunk log)."""
        return self._end if self.log is not None else None

    def _dataset(self, sink, dataset: str) -> tuple:
        """(the dataset, bytes of one slot, the filter mask of a chunk stored as it is), looked up
        once per dataset (h5py's properties cost microseconds a call)."""
        key = (sink.name, dataset)
        found = self._datasets.get(key)
        if found is None:
            ds = sink.data if dataset == "data" else sink.values.ds if dataset == "values" else \
                sink.data.parent[dataset]  # a counted stream's events: first .. end are elements
            slot_bytes = 8 * MAX_VALUES if dataset == "values" else \
                int(np.prod(ds.shape[ds.ndim - len(sink.geometry.frame_shape):])) * ds.dtype.itemsize
            found = self._datasets[key] = (ds, slot_bytes,
                                           (1 << ds.id.get_create_plist().get_nfilters()) - 1)
        return found

    def _placed(self, ds, offset: tuple, payload) -> int:
        """The file offset of the chunk just written at ``offset``. HDF5's lookup by coordinate
        walks the dataset's whole chunk index (HDF5 2.0: 13 us at 1,000 chunks, 150 us at 8,000),
        so the cheap answer first: a new chunk is normally the last thing written, at the file's
        end. Where the bytes written at the end since the last chunk are exactly these, that is
        where the chunk is; otherwise HDF5 is asked."""
        if self._fd is None:
            self._fd = ds.file.id.get_vfd_handle()
        data = memoryview(payload).cast("B")
        file_end = os.fstat(self._fd).st_size
        start = file_end - data.nbytes
        placed = start if start >= self._end and _holds(self._fd, start, data) else \
            int(ds.id.get_chunk_info_by_coord(offset).byte_offset)
        self._end = file_end
        return placed

    def commit(self, sinks: list, comments: list[tuple[str, str]], fsync_fd: Optional[int]) -> None:
        """Append one flush: with ``fsync_fd``, the file is fsynced first (the chunks the record
        names are on disk before it), and the log after."""
        if self.log is None:
            return
        if fsync_fd is not None:
            os.fsync(fsync_fd)
        self.log.commit({"streams": {s.name: self._state(s) for s in sinks},
                         "comments": comments})

    def _state(self, sink) -> dict:
        state = {"committed": sink.committed, "raw": [list(r) for r in sink.raw_written],
                 "names": sink.columns.all_names if not sink.names_logged
                 and sink.columns.names is not None else None}
        change = sink.dropped_change  # only new ones, or all of them (see write.dropped)
        state["dropped_runs" if change.whole else "dropped_runs_add"] = dropped_runs(change.slots)
        return state

    def close(self) -> None:
        self._fd = None
        if self.log is not None:
            self.log.close()


def _holds(fd: int, at: int, data: memoryview, probe: int = 4096) -> bool:
    """Whether the file holds ``data`` at ``at``: all of it when small, else its first and last
    ``probe`` bytes (the region was written since the last chunk: nothing else puts these bytes
    there)."""
    if data.nbytes <= 2 * probe:  # bytes == bytes: one memcmp (a memoryview compares per byte)
        return os.pread(fd, data.nbytes, at) == bytes(data)
    return (os.pread(fd, probe, at) == bytes(data[:probe])
            and os.pread(fd, probe, at + data.nbytes - probe) == bytes(data[data.nbytes - probe:]))
