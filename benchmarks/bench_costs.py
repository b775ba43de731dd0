#!/usr/bin/env python
"""Per-call costs of the pieces of emdstream's data paths (issue #10), each alone in a tight loop.

    python benchmarks/bench_costs.py

Says what bounds the per-frame paths of ``bench_limits.py`` (``put_compressed`` above all): the
producer's checks, the writer's direct chunk writes of one frame's data and of its row of values,
the values row's encoding and the encoder pool's round trip. Medians of 5 loops, µs per call.
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

import harness as bw  # first: this checkout's src/ on sys.path
import numpy as np


def per_call(fn, n: int, loops: int = 5) -> float:
    times = []
    for _ in range(loops):
        t = time.perf_counter()
        for i in range(n):
            fn(i)
        times.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(times)


def main() -> int:
    import h5py

    from emdstream.encoders import BitshuffleLZ4
    from emdstream.format.values import ENCODER as VALUES_ENCODER
    from emdstream.format.values import MAX_VALUES, empty_rows
    from emdstream.write.encoder_pool import EncoderPool
    shape = (256, 256)
    bank = bw.make_bank("detector", shape)
    enc = BitshuffleLZ4()
    blobs = [enc.encode(f[None]) for f in bank]
    b, n = len(bank), 2048
    rows = empty_rows(1)
    rows[0, 0] = 1.0
    out = {}
    out["check_encoded (producer, put_compressed)"] = per_call(
        lambda i: enc.check_encoded(blobs[i % b], bank[0].nbytes, 2), n)
    out["BitshuffleLZ4.encode of one frame (for reference)"] = per_call(
        lambda i: enc.encode(bank[i % b][None]), 256)
    out["VALUES_ENCODER.encode of one row (gzip)"] = per_call(
        lambda i: VALUES_ENCODER.encode(rows), n)
    vals = VALUES_ENCODER.encode(rows)
    with tempfile.TemporaryDirectory() as tmp:
        with h5py.File(os.path.join(tmp, "c.h5"), "w", libver="latest") as f:
            import hdf5plugin  # noqa: F401
            d = f.create_dataset("d", (8 * n,) + shape, "u2", chunks=(1,) + shape,
                                 **enc.dataset_options())
            v = f.create_dataset("v", (8 * n, MAX_VALUES), "f8", chunks=(1, MAX_VALUES),
                                 **VALUES_ENCODER.dataset_options())
            j = iter(range(8 * n))
            out["write_direct_chunk of one frame's blob (writer)"] = per_call(
                lambda i: d.id.write_direct_chunk((next(j), 0, 0), blobs[i % b]), n // 4)
            j = iter(range(8 * n))
            out["write_direct_chunk of one values row (writer)"] = per_call(
                lambda i: v.id.write_direct_chunk((next(j), 0), vals), n // 4)
            chunk16 = np.asarray(enc.encode(np.ascontiguousarray(bank[:16]))).tobytes()
            d16 = f.create_dataset("d16", (16 * 4096,) + shape, "u2", chunks=(16,) + shape,
                                   **enc.dataset_options())
            j = iter(range(4096))
            out["write_direct_chunk of a 16-frame chunk (2 MiB raw)"] = per_call(
                lambda i: d16.id.write_direct_chunk((16 * next(j), 0, 0), chunk16), 256)
            for count in (1000, 8000):  # the chunk log's lookup of where a chunk went (chunk_notes)
                for i in range(count):
                    d.id.write_direct_chunk((i, 0, 0), blobs[i % b])
                out[f"get_chunk_info_by_coord with {count:,} chunks written (chunk log)"] = per_call(
                    lambda i, c=count: d.id.get_chunk_info_by_coord((c - 1 - i % 64, 0, 0)), 64, 3)
    from emdstream import Acquisition, Stream
    from emdstream.write.held_interrupts import held_interrupts
    with tempfile.TemporaryDirectory() as tmp:
        with Acquisition(os.path.join(tmp, "s.emd"), [Stream("haadf", (), "float32",
                                                             compression=None)],
                         scan_shape=(1000, 1000)) as acq:
            haadf = acq["haadf"]
            out["put of one scalar (a HAADF value; producer)"] = per_call(
                lambda i: haadf.put(float(i)), 20000)

    def hold(_):
        with held_interrupts:
            pass
    out["the Ctrl-C hold every put takes (held_interrupts)"] = per_call(hold, 20000)
    pool = EncoderPool()
    out["encoder pool round trip, one job (writer waits)"] = per_call(
        lambda i: pool.submit(len, rows).result(), n)
    pool.shutdown()
    width = max(map(len, out))
    machine = bw.machine_info(tempfile.gettempdir()).splitlines()[2]
    print(f"per-call costs, 256x256 uint16 detector frames ({machine})")
    for k, us in out.items():
        print(f"  {k:<{width}}  {us:8.1f} us")
    k1 = (out["write_direct_chunk of one frame's blob (writer)"]
          + out["write_direct_chunk of one values row (writer)"]
          + out["get_chunk_info_by_coord with 8,000 chunks written (chunk log)"])
    print(f"  a chunk_frames=1 frame (data + values writes, chunk log lookup at 8,000 chunks): "
          f"{k1:.1f} us -> at most {1e6 / k1:,.0f} frames/s")
    data_only = out["write_direct_chunk of one frame's blob (writer)"]
    print(f"  the bare loop's write alone: {data_only:.1f} us -> at most {1e6 / data_only:,.0f} frames/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
