"""The writer thread's per-stream state (``StreamSink``) and how a chunk of frames becomes the
bytes written for it (``encode_chunk``, ``raw_chunk``)."""
from __future__ import annotations

from typing import Optional

import h5py
import numpy as np

from emdstream.format import layout
from emdstream.write.events import EventWriter
from emdstream.write.value_table import ValueTable

RAW_INCOMPRESSIBLE, RAW_WRITER_BEHIND = 0, 1  # why a chunk is stored raw (layout.RAW_REASONS)



class StreamSink:
    """The writer thread's view of one stream: its datasets and how far it got (writer thread only)."""

    def __init__(self, h5file: h5py.File, stream):
        self.name = stream.name
        self.geometry = stream.geometry
        self.encoder = stream.encoder
        self.assembler = stream.assembler
        self.columns = stream.columns
        self.events = EventWriter.of(h5file, stream)  # a counted stream's events, else None
        self.data = h5file[f"data/{stream.name}/data"]
        self.state = h5file[layout.state_path(stream.name)]
        self.values = ValueTable(h5file[f"data/{stream.name}/{layout.VALUES}"], stream.geometry)
        # filter mask that skips every filter of the data (0: no filter, nothing to skip)
        self.skip_all_filters = (1 << self.data.id.get_create_plist().get_nfilters()) - 1
        self.raw_written: list[tuple[int, int]] = []  # (why, first slot) of raw chunks to record
        self.committed = 0  # slots 0..committed-1 have been handed to HDF5
        self.durable = 0    # ... and were flushed and recorded in the file as valid
        self.in_flight = 0  # chunks handed to the encoder pool, not yet written
        self.out_of_order: dict[int, int] = {}  # first slot -> end of chunks written past committed
        self.dropped_logged = 0
        self.names_logged = False
        self.partial_written: Optional[tuple[int, int]] = None
        self.snapshot_dropped: list[int] = []
        self.stored: dict[tuple, int] = {}  # chunk offset -> size of its last write

    def frames_written(self) -> int:
        durable = self.durable
        return durable - self.assembler.dropped_below(durable)


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
