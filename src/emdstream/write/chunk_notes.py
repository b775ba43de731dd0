"""The writer thread's side of the chunk log (``chunklog``): where each chunk went, and at each
flush the state the counts rely on, appended after those chunks were written (fsynced first with
``fsync=True``) and before the counts are."""
from __future__ import annotations

import functools
import os
from typing import Optional

import numpy as np

from emdstream.format.values import MAX_VALUES
from emdstream.safety.chunklog import ChunkLog, ChunkRecord, crc


class ChunkNotes:
    def __init__(self, log: Optional[ChunkLog], sinks: list):
        self.log = log
        self._dropped: dict[str, list[int]] = {}  # the dropped slots the log has, by stream
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
        ds = sink.data if dataset == "data" else sink.values.ds if dataset == "values" else \
            sink.data.parent[dataset]  # a counted stream's events: first .. end are elements
        slot_bytes = 8 * MAX_VALUES if dataset == "values" else \
            int(np.prod(ds.shape[ds.ndim - len(sink.geometry.frame_shape):])) * ds.dtype.itemsize
        info = ds.id.get_chunk_info_by_coord(offset)
        size = memoryview(payload).nbytes
        raw = mask == (1 << ds.id.get_create_plist().get_nfilters()) - 1
        checked = min(size, (end - first) * slot_bytes) if raw else size
        self.log.note(ChunkRecord(sink.name, dataset, tuple(int(i) for i in offset),
                                  int(info.byte_offset), size, int(info.filter_mask),
                                  crc(payload, checked), checked, first, end))

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
        dropped, logged = sink.snapshot_dropped, self._dropped.get(sink.name, [])
        if dropped[:len(logged)] == logged:  # the usual case: only new ones at the end
            state["dropped_add"] = dropped[len(logged):]
        else:  # a failed frame_buffer inserted one below: the whole list
            state["dropped"] = list(dropped)
        self._dropped[sink.name] = list(dropped)
        return state

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
