"""The writer thread's per-stream state (``StreamSink``): how a chunk of frames becomes the bytes
written for it (``encode_chunk``, ``raw_chunk``), how those bytes go into the file
(``write_chunk``) and how far the written chunks let the count go (``count_written``)."""
from __future__ import annotations

from typing import Optional

import h5py
import numpy as np

from emdstream.format import layout
from emdstream.write.chunk_buffer import EncodedChunk
from emdstream.write.dropped import DroppedChange, DroppedSeen
from emdstream.write.events import EventWriter
from emdstream.write.growing import Growing
from emdstream.write.value_table import ValueTable

RAW_INCOMPRESSIBLE, RAW_WRITER_BEHIND = 0, 1  # why a chunk is stored raw (layout.RAW_REASONS)



class StreamSink:
    """The writer thread's view of one stream: its datasets and how far it got. Used holding the
    writer's ``io_lock``: by the writer thread, or by a producer's ``write_now``."""

    def __init__(self, h5file: h5py.File, stream):
        self.name = stream.name
        self.geometry = stream.geometry
        self.encoder = stream.encoder
        self.assembler = stream.assembler
        self.columns = stream.columns
        self.events = EventWriter.of(h5file, stream)  # a counted stream's events, else None
        self.data = h5file[f"data/{stream.name}/data"]
        self._length = Growing(self.data) if stream.geometry.growing else None
        self.state = h5file[layout.state_path(stream.name)]
        self.values = ValueTable(h5file[f"data/{stream.name}/{layout.VALUES}"], stream.geometry)
        # filter mask that skips every filter of the data (0: no filter, nothing to skip)
        self.skip_all_filters = (1 << self.data.id.get_create_plist().get_nfilters()) - 1
        self.raw_written: list[tuple[int, int]] = []  # (why, first slot) of raw chunks to record
        self.committed = 0  # slots 0..committed-1 have been handed to HDF5
        self.durable = 0    # ... and were flushed and recorded in the file as valid
        self.in_flight = 0  # chunks handed to the encoder pool, not yet written
        self.out_of_order: dict[int, int] = {}  # first slot -> end of chunks written past committed
        self.names_logged = False
        self.partial_written: Optional[tuple[int, int]] = None
        self.dropped_seen = DroppedSeen()  # the dropped slots the file's state has
        self.dropped_change: Optional[DroppedChange] = None  # new ones, at a flush
        self.stored: dict[tuple, int] = {}  # partly written chunk's offset -> size of that write

    def record_dropped(self) -> None:
        """The state's ``dropped_frames`` brought up to the last flush's ``dropped_change``: the
        new slots appended (all rewritten after one was dropped below: see ``write.dropped``)."""
        change = self.dropped_change
        if change.count != self.dropped_seen.count or change.whole:
            ds = self.state["dropped_frames"]
            ds.resize((change.count,))
            if change.count > change.first:
                ds[change.first:change.count] = np.frombuffer(change.slots, np.int64)
        self.dropped_seen = change.seen

    def frames_written(self) -> int:
        durable = self.durable
        return durable - self.assembler.dropped_below(durable)

    def write_chunk(self, notes, chunk_id: int, rows, end: int, payload,
                    raw_because: Optional[int] = None, frames=None) -> None:
        """A data chunk (encoded) into the file, noted in the chunk log (``notes``), and the
        value rows of its slots up to ``end``; ``raw_because``: the data chunk is stored as it is
        (all filters skipped), and why. ``frames``: the chunk's frames, stored as they are rather
        than rewriting a compressed chunk in place (same size as its last write: HDF5 would
        overwrite the bytes a durable count relies on; see ``safety.chunklog``). Called holding
        the writer's ``io_lock`` (see ``emdstream.write``)."""
        geometry = self.geometry
        offset = geometry.chunk_offset(chunk_id)
        if self._length is not None:
            self._length.reach(offset[0] + geometry.k, geometry.grow_frames)
        first, chunk_end = geometry.chunk_slots(chunk_id)
        if raw_because is None and frames is not None and self.skip_all_filters and \
                memoryview(payload).nbytes == self.stored.get(offset):
            payload, raw_because = raw_chunk(frames, RAW_INCOMPRESSIBLE)
        mask = 0 if raw_because is None else self.skip_all_filters
        self.data.id.write_direct_chunk(offset, payload, filter_mask=mask)
        if raw_because is not None:
            self.raw_written.append((raw_because, first))
        if end < chunk_end:  # a partial chunk is written again as it grows: remember its size
            self.stored[offset] = memoryview(payload).nbytes
        else:  # a whole chunk is never written again: nothing to remember (memory stays bounded)
            self.stored.pop(offset, None)
        notes.note(self, "data", offset, payload, mask, first, end)
        self.values.store(first, end, rows)

    def count_written(self, buffer, end: int, store_raw: bool) -> None:
        """Advance ``committed`` past a written chunk. Chunks written in the order they came (the
        rule for frames put) move it to their end; chunks written in any order (``write_dask``,
        ``store_raw``) only once every chunk below them is written, so the count never claims a
        slot whose chunk is not in the file. Called holding the writer's ``io_lock``."""
        if not store_raw and not (isinstance(buffer, EncodedChunk) and not buffer.in_order):
            self.committed = max(self.committed, end)
            return
        ahead = self.out_of_order
        ahead[buffer.first_slot] = max(end, ahead.get(buffer.first_slot, 0))
        while True:
            reached = [first for first in ahead if first <= self.committed]
            if not reached:
                return
            for first in reached:
                self.committed = max(self.committed, ahead.pop(first))


def encode_chunk(sink: StreamSink, frames) -> tuple:
    """A chunk of frames encoded for ``write_direct_chunk`` (runs in the encoder pool). A chunk
    the codec does not make smaller (noise) is stored as it is."""
    payload = sink.encoder.encode(frames.reshape(sink.geometry.chunk_shape))
    if sink.skip_all_filters and memoryview(payload).nbytes >= frames.nbytes:
        return raw_chunk(frames, RAW_INCOMPRESSIBLE)
    return (payload,)


def raw_chunk(frames, why: int) -> tuple:
    """A chunk stored as it is (HDF5 skips its filters when reading it), and why."""
    return np.ascontiguousarray(frames).data, why
