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
    pool = EncoderPool()
    out["encoder pool round trip, one job (writer waits)"] = per_call(
        lambda i: pool.submit(len, rows).result(), n)
    pool.shutdown()
    width = max(map(len, out))
    machine = bw.machine_info(tempfile.gettempdir()).splitlines()[2]
    print(f"per-call costs, 256x256 uint16 detector frames ({machine})")
    for k, us in out.items():
        print(f"  {k:<{width}}  {us:8.1f} us")
    writer = sum(us for k, us in out.items() if "(writer" in k)
    print(f"  writer per put_compressed frame now (data + values write, pool round trip): {writer:.1f} us"
          f" -> at most {1e6 / writer:,.0f} frames/s = {1e6 / writer * bank[0].nbytes / 1e9:.2f} GB/s raw")
    data_only = out["write_direct_chunk of one frame's blob (writer)"]
    print(f"  writer with only the data write per frame: {data_only:.1f} us -> at most "
          f"{1e6 / data_only:,.0f} frames/s = {1e6 / data_only * bank[0].nbytes / 1e9:.2f} GB/s raw")
    return 0


if __name__ == "__main__":
    sys.exit(main())
