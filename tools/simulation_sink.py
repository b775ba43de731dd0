"""A simulation loop writing every step into an EMD file through emdstream, then reading it back.

The toy model: heat spreading from two hot spots over a 96x128 plate (explicit finite differences).
Each step's field is one frame of an open-ended stack (time, y, x).

usage: python tools/simulation_sink.py [OUT.emd]     (default: a file in a new temp directory)
"""
import os
import sys
import tempfile

import numpy as np

import emdstream
from emdstream import Dim, EMDWriter

STEPS, SHAPE, DT, DX = 200, (96, 128), 0.2, 0.5  # steps, grid, time step [s], grid spacing [mm]


def simulate(out: str) -> None:
    field = np.zeros(SHAPE, dtype=np.float32)
    field[30, 40] = field[60, 90] = 2000.0
    dims = [Dim("time", "[s]", scale=DT), Dim("y", "[mm]", scale=DX), Dim("x", "[mm]", scale=DX)]
    with EMDWriter(out, SHAPE, "float32", dims=dims, compression="zstd", overwrite=True,
                   user={"software": "tools/simulation_sink.py"},
                   sample={"model": "2-D heat equation", "diffusivity_mm2_per_s": 0.25}) as w:
        for _ in range(STEPS):
            w.put(field)  # copied at once: the loop may go on changing the field
            neighbours = sum(np.roll(field, shift, axis) for shift in (1, -1) for axis in (0, 1))
            field = field + 0.25 * DT / DX**2 * (neighbours - 4 * field)
        w.comment(f"{STEPS} steps of {DT} s")


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(tempfile.mkdtemp(), "heat.emd")
    simulate(out)
    with emdstream.open(out) as f:
        ds = f["dataset_1"]
        last = ds.data[-1]
        print(f"{out}: {ds.data.shape} {ds.data.dtype}, {ds.frames_written} steps, "
              f"dims {[f'{d.name} {d.units}' for d in ds.dims]}")
        print(f"  heat at the start {ds.data[0].sum():.1f}, at the end {last.sum():.1f}; "
              f"peak {ds.data[0].max():.0f} -> {last.max():.1f}; last comment: {f.comments[-1][1]}")


if __name__ == "__main__":
    main()
