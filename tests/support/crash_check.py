"""The pass rule of one crash state, run in a fresh process: ``python crash_check.py PATH KIND
DURABLE_JSON``; prints a JSON verdict {"ok": bool, "problems": [...], "recover": "..."}.

Pass: ``emdstream recover PATH`` succeeds (or, when no frame was durable yet, the file is absent
or recover refuses it in one line), the recovered file opens in plain h5py, holds at least every
frame and value the writer had reported durable, every frame it counts is correct, and
``emdstream verify`` is clean.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

RECOVER_TIMEOUT = 300  # beyond recover's own limit for HDF5 (120 s): its answer is tested


def run_recover(path: str) -> tuple[int | None, str]:
    try:
        out = subprocess.run([sys.executable, "-m", "emdstream", "recover", path],
                             capture_output=True, text=True, timeout=RECOVER_TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, f"recover hung (> {RECOVER_TIMEOUT} s)"
    return out.returncode, (out.stdout + out.stderr).strip()


def check(path: str, kind: str, durable: dict[str, int],
          held: dict[str, int]) -> tuple[list[str], str]:
    from crash_workload import STREAMS, dropped, expected, value

    any_durable = any(durable.values())
    if not os.path.exists(path):
        return (["no file at the path after frames were durable"] if any_durable else []), "absent"
    rc, said = run_recover(path)
    if rc is None:
        return [said], said
    if rc != 0:
        if rc < 0:
            return [f"recover crashed (signal {-rc}): {said[-300:]}"], said
        if any_durable:
            return [f"recover failed (exit {rc}): {said[-300:]}"], said
        clean = said.count("\n") == 0 and "Traceback" not in said
        return ([] if clean else [f"recover's refusal is not one line: {said[-300:]}"]), said
    problems = _check_recovered(path, kind, durable, STREAMS[kind], expected, value, held,
                                dropped)
    return problems, said


def _check_recovered(path, kind, durable, specs, expected, value, held, dropped) -> list[str]:
    import h5py
    import hdf5plugin  # noqa: F401

    from emdstream.tools.verify import verify

    problems: list[str] = []
    try:
        with h5py.File(path, "r") as f:
            for name, (shape, n_put, _) in specs.items():
                group = f[f"data/{name}"]
                n = held[name] = int(group.attrs["frames_written"])
                if not group.attrs.get("complete"):
                    problems.append(f"{name}: not complete after recover")
                if n < durable.get(name, 0):
                    problems.append(f"{name}: LOST durable frames: the file holds {n}, the writer "
                                    f"had reported {durable[name]} durable")
                data = group["data"][()]
                flat = data.reshape((-1,) + shape)
                values = group["frame_values"][()].reshape(-1, 32)
                columns = json.loads(group["frame_values"].attrs["columns"])
                gone = set(np.asarray(group.attrs.get("dropped_frames", [])).tolist())
                slots = n + len(gone)  # the slots counted: frames written and dropped
                if gone != {s for s in dropped(kind, name) if s < slots}:
                    problems.append(f"{name}: dropped slots {sorted(gone)} of {slots}; the "
                                    f"producer dropped {sorted(dropped(kind, name))}")
                for i in range(min(slots, n_put)):
                    if i in gone:
                        if "z" in columns and not np.isnan(values[i, columns.index("z")]):
                            problems.append(f"{name}: dropped slot {i} has a value")
                            break
                        continue
                    if not np.array_equal(flat[i], expected(kind, name, i)):
                        problems.append(f"{name}: frame {i} of {n} counted is wrong")
                        break
                    if "z" in columns and values[i, columns.index("z")] != value(name, i):
                        problems.append(f"{name}: value z of frame {i} is wrong")
                        break
    except Exception as exc:  # a "recovered" file that plain h5py cannot read
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return [f"FALSE RECOVERED: recover succeeded, plain h5py fails: "
                f"{type(exc).__name__}: {first}"]
    try:
        problems += [f"verify: {p}" for p in verify(path)]
    except Exception as exc:
        problems.append(f"verify raised {type(exc).__name__}: {exc}")
    return problems


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    held: dict[str, int] = {}
    found, said = check(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), held)
    lost = [p for p in found if "LOST" in p]
    if sys.argv[4:] == ["allow-loss"]:  # a power cut without fsync may cost durable frames
        found = [p for p in found if "LOST" not in p]
    print(json.dumps({"ok": not found, "problems": found, "lost": lost, "held": held,
                      "recover": said[-500:]}))
