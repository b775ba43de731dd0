"""The chunk log records where each chunk went without HDF5's whole-index lookup: the offset it
records is the one HDF5's chunk index holds, for every kind of chunk the writer writes."""
import numpy as np
import pytest
from support.frames import detector_frames

from emdstream import Acquisition, CountedStream, EMDWriter, Stream
from emdstream.encoders import BitshuffleLZ4
from emdstream.write import chunk_notes


@pytest.fixture
def placements(monkeypatch):
    """Every offset the notes record, checked against HDF5's own lookup as it is recorded."""
    seen = {"checked": 0, "at_end": 0}
    placed = chunk_notes.ChunkNotes._placed

    def checked(self, ds, offset, payload):
        got = placed(self, ds, offset, payload)
        want = int(ds.id.get_chunk_info_by_coord(offset).byte_offset)
        assert got == want, f"chunk {offset} of {ds.name}: noted at {got}, HDF5 has it at {want}"
        seen["checked"] += 1
        seen["at_end"] += got + memoryview(payload).nbytes == chunk_notes.os.fstat(self._fd).st_size
        return got

    monkeypatch.setattr(chunk_notes.ChunkNotes, "_placed", checked)
    return seen


def test_put_chunks_values_and_flushes_are_placed_where_hdf5_has_them(tmp_path, placements):
    frames = detector_frames(200, (64, 64))
    with EMDWriter(str(tmp_path / "a.emd"), (64, 64), "uint16", scan_shape=(10, 20),
                   chunk_frames=7, flush_frames=9, workers=1) as w:
        for i, frame in enumerate(frames):
            w.put(frame, z=float(i))
    assert placements["checked"] > 30 and placements["at_end"] > 0


def test_detector_frames_one_per_chunk_are_placed_where_hdf5_has_them(tmp_path, placements):
    enc = BitshuffleLZ4()
    blobs = [enc.encode(f[None]) for f in detector_frames(16, (64, 64))]
    with EMDWriter(str(tmp_path / "b.emd"), (64, 64), "uint16", n_frames=300, chunk_frames=1,
                   flush_frames=25) as w:
        for i in range(300):
            w.put_compressed(blobs[i % 16])
    assert placements["checked"] >= 300
    assert placements["at_end"] >= 150  # the cheap answer is the usual one


def test_several_streams_and_counted_events_are_placed_where_hdf5_has_them(tmp_path, placements):
    rng = np.random.default_rng(3)
    with Acquisition(str(tmp_path / "c.emd"), scan_shape=(8, 16), flush_frames=10,
                     streams=[Stream("diffraction", (32, 32), chunk_frames=4),
                              Stream("haadf", (), "float32"),
                              CountedStream("electrons", frame_shape=(32, 32))]) as acq:
        for frame in detector_frames(128, (32, 32)):
            acq["diffraction"].put(frame, stage_x=1.0)
            acq["haadf"].put(float(frame.sum()))
            acq["electrons"].put_events(rng.integers(0, 32 * 32, 40))
    assert placements["checked"] > 40
