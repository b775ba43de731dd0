"""LiberTEM opens emdstream files as HDF5 datasets (the recipe in docs/readers.md).

Needs `pip install -e '.[test,libertem]'` (`nox -s libertem`); skipped where LiberTEM is missing.
"""
import hdf5plugin  # noqa: F401  (the inline executor reads bslz4 chunks in this process)
import numpy as np
import pytest
from support.frames import detector_frames

from emdstream import Dim, EMDWriter

pytestmark = [pytest.mark.libertem,
              pytest.mark.filterwarnings("ignore:Loading compressed HDF5:RuntimeWarning")]
lt = pytest.importorskip("libertem.api", reason="LiberTEM not installed here")


@pytest.mark.parametrize("compression", ["bslz4", "gzip"])
def test_libertem_reads_a_scan(tmp_path, compression):
    from libertem.udf.sum import SumUDF
    from libertem.udf.sumsigudf import SumSigUDF

    path = str(tmp_path / "scan.emd")
    frames = detector_frames(12, (10, 8))
    with EMDWriter(path, (10, 8), "uint16", scan_shape=(3, 4), compression=compression,
                   dims=[Dim("scan_y", "[nm]"), Dim("scan_x", "[nm]"), Dim("k_y"), Dim("k_x")]) as w:
        for frame in frames:
            w.put(frame)
    want = frames.reshape(3, 4, 10, 8).astype(np.float64)
    with lt.Context.make_with("inline") as ctx:
        ds = ctx.load("hdf5", path=path, ds_path="/data/dataset_1/data")
        assert tuple(ds.shape) == (3, 4, 10, 8)
        np.testing.assert_array_equal(ctx.run_udf(dataset=ds, udf=SumUDF())["intensity"].data,
                                      want.sum(axis=(0, 1)))
        vbf = ctx.run_udf(dataset=ds, udf=SumSigUDF())["intensity"].data
        np.testing.assert_array_equal(vbf, want.sum(axis=(2, 3)))  # one value per scan position
        auto = ctx.load("auto", path=path)
        assert tuple(auto.shape) == (3, 4, 10, 8)


def test_libertem_reads_a_master_file_as_one_scan(tmp_path):
    from libertem.udf.sumsigudf import SumSigUDF

    from emdstream import write_master

    frames = detector_frames(24, (10, 8))
    parts = []
    for rank in range(2):  # two part writers, blocks of 5 frames crossing the rows of 6
        path = str(tmp_path / f"run.part{rank}.emd")
        with EMDWriter(path, (10, 8), "uint16", scan_shape=(4, 6), part=(rank, 2),
                       block_frames=5) as w:
            for slot in w.dims[0].values:
                w.put(frames[slot])
        parts.append(path)
    master = str(tmp_path / "run.emd")
    write_master(master, parts)
    want = frames.reshape(4, 6, 10, 8).astype(np.float64)
    with lt.Context.make_with("inline") as ctx:
        ds = ctx.load("hdf5", path=master, ds_path="/data/dataset_1/data")
        assert tuple(ds.shape) == (4, 6, 10, 8)
        vbf = ctx.run_udf(dataset=ds, udf=SumSigUDF())["intensity"].data
        np.testing.assert_array_equal(vbf, want.sum(axis=(2, 3)))


@pytest.mark.parametrize("with_counts,parts", [(False, 0), (True, 0), (True, 2)],
                         ids=["events", "counts", "master-of-2-parts"])
def test_libertem_reads_a_counted_stream_densified_per_chunk(tmp_path, with_counts, parts):
    """The route docs/counted.md gives LiberTEM users: the counted stream's ``dense`` view (one
    chunk of the counts image's slots densified at a time; of a master, one part's block, read
    from the part files) through LiberTEM's dask loader. Sums over the detector, per scan
    position, and single frames equal the events'."""
    import dask.array as da
    from libertem.udf.sum import SumUDF
    from libertem.udf.sumsigudf import SumSigUDF
    from support.counted import SHAPE, events_of

    import emdstream
    from emdstream import Acquisition, CountedStream

    scan = (5, 8)
    from emdstream.format.parts import Part

    path = str(tmp_path / "counted.emd")
    weights = {s: (s % 3 + 1 if with_counts else 1) for s in range(40)}
    files = [(path, {}, range(40))] if not parts else [
        (str(tmp_path / f"part{r}.emd"), {"part": (r, parts), "block_frames": 6},
         Part(r, parts, 6).slots(40)) for r in range(parts)]
    for name, kw, slots in files:
        with Acquisition(name, [CountedStream("electrons", SHAPE, chunk_frames=6)], scan_shape=scan,
                         **kw) as acq:
            for slot in slots:
                idx = events_of(int(slot))
                extra = {"counts": np.full(idx.size, weights[slot], np.uint16)} if with_counts else {}
                acq["electrons"].put_events(idx, **extra)
    if parts:
        emdstream.write_master(path, [name for name, _, _ in files])
    want = np.zeros((40,) + SHAPE)
    for slot in range(40):
        np.add.at(want[slot].reshape(-1), events_of(slot).astype(np.int64), weights[slot])
    want = want.reshape(scan + SHAPE)
    e = emdstream.open(path)["electrons"]
    dense = e.dense
    assert dense.shape == scan + SHAPE and dense.chunks[-2:] == SHAPE
    array = da.from_array(dense, chunks=dense.chunks)
    assert array.numblocks[:2] == (5, 2)  # rows of 8 in chunks of 6 slots: read per chunk
    with lt.Context.make_with("inline") as ctx:
        ds = ctx.load("dask", array, sig_dims=2)
        assert tuple(ds.shape) == scan + SHAPE
        np.testing.assert_array_equal(ctx.run_udf(dataset=ds, udf=SumUDF())["intensity"].data,
                                      want.sum(axis=(0, 1)))
        np.testing.assert_array_equal(ctx.run_udf(dataset=ds, udf=SumSigUDF())["intensity"].data,
                                      want.sum(axis=(2, 3)))
        roi = np.zeros(scan, bool)
        roi[3, 7] = True  # one frame through LiberTEM's ROI
        picked = ctx.run_udf(dataset=ds, udf=SumUDF(), roi=roi)["intensity"].data
        np.testing.assert_array_equal(picked, want[3, 7])
        np.testing.assert_array_equal(picked, e.frame(3 * 8 + 7))
