"""write_dask: a Dask array compressed on the workers, written by one writer in arrival order."""
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from support.frames import detector_frames

import emdstream
from emdstream import Dim, EMDWriter
from emdstream.tools.verify import verify

da = pytest.importorskip("dask.array")
from emdstream.parallel.dask_sink import WriteDaskError, encode_block, plan_chunks  # noqa: E402

SCAN = (6, 10)
FRAME = (16, 16)
DIMS = [Dim("scan_y", "[nm]", scale=0.5), Dim("scan_x", "[nm]", scale=0.5),
        Dim("k_y", "[1/nm]", scale=0.1), Dim("k_x", "[1/nm]", scale=0.1)]


def scan_data():
    return detector_frames(60, FRAME).reshape(SCAN + FRAME)


def boom_on(location):
    def fn(block, block_info=None):
        if tuple(block_info[0]["chunk-location"][:2]) == location:
            raise ValueError(f"simulation diverged in block {location}")
        return block
    return fn


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as c:
        yield c


def direct_chunks(path, name="dataset_1"):
    with h5py.File(path, "r") as f:
        data = f[f"data/{name}/data"]
        return {tuple(data.id.get_chunk_info(i).chunk_offset):
                data.id.read_direct_chunk(data.id.get_chunk_info(i).chunk_offset)[1]
                for i in range(data.id.get_num_chunks())}, data.chunks


def test_local_scheduler_gives_the_emdwriter_file(tmp_path):
    x = scan_data()
    a = da.from_array(x, chunks=(2, 5, 16, 8))  # frame axis split: must be rechunked
    path = str(tmp_path / "sim.emd")
    n = emdstream.write_dask(a, path, dims=DIMS, compression="bslz4", microscope={"kV": 200.0},
                             sample={"name": "Si"}, comments=["multislice, 3 slices"])
    assert n == 60
    ref = str(tmp_path / "ref.emd")
    with EMDWriter(ref, FRAME, "uint16", scan_shape=SCAN, dims=DIMS, chunk_frames=5) as w:
        for frame in x.reshape(-1, *FRAME):
            w.put(frame)
    got, chunks = direct_chunks(path)
    want, ref_chunks = direct_chunks(ref)
    assert chunks == ref_chunks == (1, 5) + FRAME
    assert got == want  # the same bytes in the same chunks as the single writer's file
    f = emdstream.open(path)
    ds = f["dataset_1"]
    assert np.array_equal(ds.data[()], x) and ds.frames_written == 60 and ds.complete
    assert [d.name for d in ds.dims] == ["scan_y", "scan_x", "k_y", "k_x"]
    assert np.allclose(ds.dims[2].values, 0.1 * np.arange(16))
    assert f.metadata["microscope"] == {"kV": 200.0} and f.metadata["sample"] == {"name": "Si"}
    texts = [t for _, t in f.comments]
    assert "multislice, 3 slices" in texts and any("Dask array (6, 10, 16, 16)" in t for t in texts)
    assert not np.isnan(ds.values["timestamp"]).any()
    f.close()
    assert verify(path) == []


def test_rechunks_only_where_it_must():
    x = np.zeros((8, 12, 16, 16), np.uint16)
    assert plan_chunks(da.from_array(x, chunks=(3, 6, 16, 16))).rechunk == {}  # any scan blocks
    plan = plan_chunks(da.from_array(x, chunks=(8, 4, 16, 16)))
    assert plan.rechunk == {} and plan.chunk_frames == 4
    assert plan_chunks(da.from_array(x, chunks=(8, 12, 8, 16))).rechunk == {2: -1}
    plan = plan_chunks(da.from_array(x, chunks=(8, 5, 16, 16)), chunk_frames=4)  # edges 5, 10
    assert set(plan.rechunk) == {1} and plan.rechunk[1] % 4 == 0
    plan = plan_chunks(da.from_array(x, chunks=(8, (1,) * 12, 16, 16)))  # 1-frame blocks: rechunk
    assert set(plan.rechunk) == {1}
    with pytest.raises(ValueError, match="frame_ndim"):
        plan_chunks(da.from_array(x), frame_ndim=4)


def test_stacks_scalars_and_partial_row_chunks(tmp_path):
    stack = detector_frames(23, (8, 8))
    path = str(tmp_path / "stack.emd")
    emdstream.write_dask(da.from_array(stack, chunks=(6, 8, 8)), path, chunk_frames=3,
                         scheduler="sync")
    ds = emdstream.open(path)["dataset_1"]
    assert ds.data.shape == (23, 8, 8) and ds.data.chunks == (3, 8, 8)
    assert np.array_equal(ds.data[()], stack) and ds.frames_written == 23
    haadf = np.random.default_rng(1).random(SCAN).astype(np.float32)
    path = str(tmp_path / "haadf.emd")
    emdstream.write_dask(da.from_array(haadf, chunks=(4, 7)), path, frame_ndim=0, chunk_frames=7,
                         name="haadf")
    ds = emdstream.open(path)["haadf"]
    assert ds.data.chunks == (1, 7) and np.array_equal(ds.data[()], haadf)  # rows of 7 + 3
    assert verify(path) == []


def test_processes_scheduler(tmp_path):
    x = scan_data()
    path = str(tmp_path / "p.emd")
    emdstream.write_dask(da.from_array(x, chunks=(3, 5, 16, 16)), path, scheduler="processes",
                         compression="zstd", batch_blocks=2)
    assert np.array_equal(emdstream.open(path)["dataset_1"].data[()], x)


def test_encode_block_output_is_codec_bytes():
    """What a task returns (and so what travels from a worker) is the encoded chunks."""
    x = scan_data()
    w_geometry = plan_chunks(da.from_array(x, chunks=(2, 5, 16, 16)))
    from emdstream.encoders import get_encoder
    from emdstream.format.chunk_grid import ChunkGeometry

    geometry = ChunkGeometry(FRAME, 2, None, SCAN, w_geometry.chunk_frames)
    encoder = get_encoder("bslz4")
    out = encode_block(x[2:4, 5:10], (2, 5), SCAN, geometry, encoder, 65535)
    assert [cid for cid, _ in out] == [5, 7]
    assert sum(p.nbytes for _, p in out) < x[2:4, 5:10].nbytes / 3
    assert bytes(out[0][1]) == bytes(encoder.encode(x[2, 5:10].reshape(geometry.chunk_shape)))


@pytest.mark.parametrize("compression", [None, "bslz4"])
def test_big_endian_arrays_are_stored_as_their_values(tmp_path, compression):
    """Big-endian blocks are converted to the file's native-order dtype, not stored byte-swapped."""
    for dtype in (">u2", ">f4"):
        x = np.arange(96).astype(dtype).reshape(2, 3, 4, 4)
        path = str(tmp_path / f"be{dtype[1:]}.emd")
        emdstream.write_dask(da.from_array(x, chunks=(1, 2, 4, 4)), path, chunk_frames=2,
                             compression=compression, scheduler="sync")
        with emdstream.open(path) as f:
            got = f["dataset_1"].data[()]
        assert got.dtype == np.dtype(dtype).newbyteorder("=") and np.array_equal(got, x)


def test_block_of_a_lossy_dtype_is_refused(tmp_path):
    """A block whose real dtype cannot be stored losslessly (the array declared another) fails."""
    x = np.zeros((2, 3, 4, 4), np.uint16)
    a = da.from_array(x, chunks=(1, 3, 4, 4)).map_blocks(lambda b: b + 0.5, dtype=x.dtype)
    with pytest.raises(WriteDaskError, match="float64 cannot be stored losslessly") as info:
        emdstream.write_dask(a, str(tmp_path / "lossy.emd"), scheduler="sync")
    assert isinstance(info.value.__cause__, TypeError)


def test_bad_scheduler_creates_no_file(tmp_path):
    """A scheduler name Dask does not know is refused before the file (or its log) is created."""
    a = da.from_array(scan_data(), chunks=(2, 5, 16, 16))
    with pytest.raises(ValueError, match=r"'bogus'.*sync"):
        emdstream.write_dask(a, str(tmp_path / "bad.emd"), scheduler="bogus")
    assert os.listdir(tmp_path) == []


def test_failing_task_local(tmp_path):
    x = scan_data()
    a = da.from_array(x, chunks=(2, 5, 16, 16)).map_blocks(boom_on((2, 1)), dtype=x.dtype)
    path = str(tmp_path / "fail.emd")
    with pytest.raises(WriteDaskError, match="simulation diverged in block") as info:
        emdstream.write_dask(a, path, scheduler="sync")
    assert isinstance(info.value.__cause__, ValueError)
    f = emdstream.open(path)
    ds = f["dataset_1"]
    n = ds.frames_written
    assert n <= 45  # nothing at or after the failed block's first chunk (slot 45) is counted
    assert np.array_equal(ds.data[()].reshape(60, *FRAME)[:n], x.reshape(60, *FRAME)[:n])
    assert "simulation diverged" in f.comments[-1][1]
    f.close()
    assert not emdstream.recover(path).changed and verify(path) == []


def test_distributed_cluster(tmp_path, client):
    x = scan_data()
    path = str(tmp_path / "dist.emd")
    n = emdstream.write_dask(da.from_array(x, chunks=(2, 5, 16, 16)), path, client=client,
                             dims=DIMS)
    assert n == 60
    f = emdstream.open(path)
    assert np.array_equal(f["dataset_1"].data[()], x)
    assert any("dask.distributed workers" in t for _, t in f.comments)
    f.close()
    assert verify(path) == []


def test_failing_task_distributed(tmp_path, client):
    x = scan_data()
    a = da.from_array(x, chunks=(2, 5, 16, 16)).map_blocks(boom_on((1, 1)), dtype=x.dtype)
    path = str(tmp_path / "dfail.emd")
    with pytest.raises(WriteDaskError, match=r"in block \(1, 1\) \(scan from \(2, 5\)\)"):
        emdstream.write_dask(a, path, client=client)
    ds = emdstream.open(path)["dataset_1"]
    n = ds.frames_written
    assert n <= 25  # block (1, 1) starts at slot 25
    assert np.array_equal(ds.data[()].reshape(60, *FRAME)[:n], x.reshape(60, *FRAME)[:n])
    assert not emdstream.recover(path).changed and verify(path) == []


KILLED_CHILD = r"""
import sys, time
import dask.array as da, numpy as np, emdstream
def slow(block):
    time.sleep(0.1)
    return block
x = np.arange(40 * 20 * 8 * 8, dtype=np.uint16).reshape(40, 20, 8, 8)
a = da.from_array(x, chunks=(1, 20, 8, 8)).map_blocks(slow, dtype=x.dtype)
emdstream.write_dask(a, sys.argv[1], scheduler="sync", flush_seconds=0.05, chunk_frames=20)
"""


def test_killed_writer_leaves_a_recoverable_prefix(tmp_path):
    """kill -9 of the writing process mid-computation (blocks arrive in Dask's order, not the
    scan's): recover finishes the file with the frames before the first missing chunk."""
    path = str(tmp_path / "killed.emd")
    child = subprocess.Popen([sys.executable, "-c", KILLED_CHILD, path])
    seen = 0
    try:
        deadline, appeared = time.monotonic() + 30, None
        while True:
            assert time.monotonic() < deadline and child.poll() is None
            if os.path.exists(path):
                appeared = appeared or time.monotonic()
                with emdstream.open(path, live=True) as f:
                    seen = f["dataset_1"].frames_written
                if seen >= 20 or time.monotonic() - appeared > 1.5:
                    break
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    report = emdstream.recover(path)
    assert report.changed
    n = report.frames_written["dataset_1"]
    assert seen <= n < 800 and n % 20 == 0
    data = emdstream.open(path)["dataset_1"].data[()].reshape(800, 8, 8)
    x = np.arange(800 * 64, dtype=np.uint16).reshape(800, 8, 8)
    assert np.array_equal(data[:n], x[:n])
    assert verify(path) == []


def test_lost_worker_surfaces_as_an_error(tmp_path, client):
    """A worker process that dies in a task (the scheduler gives up on the task at once with
    allowed_failures 0): WriteDaskError naming a block, and a finished file."""
    def die_on(block, block_info=None):
        if tuple(block_info[0]["chunk-location"][:2]) == (2, 0):
            os._exit(1)
        return block

    x = scan_data()
    a = da.from_array(x, chunks=(2, 5, 16, 16)).map_blocks(die_on, dtype=x.dtype)
    path = str(tmp_path / "lost.emd")
    before = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures)
    client.run_on_scheduler(lambda dask_scheduler: setattr(dask_scheduler, "allowed_failures", 0))
    try:  # the dying worker takes the tasks it held with it: any of them may be named
        with pytest.raises(WriteDaskError, match=r"in block \(\d, \d\).*KilledWorker"):
            emdstream.write_dask(a, path, client=client)
    finally:
        client.run_on_scheduler(
            lambda dask_scheduler, n=before: setattr(dask_scheduler, "allowed_failures", n))
    ds = emdstream.open(path)["dataset_1"]
    assert ds.complete and ds.frames_written <= 40
    client.wait_for_workers(2, timeout=30)  # the nanny restarts the worker for later tests
