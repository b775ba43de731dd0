"""The pass rule of one crash state of ``counted_crash_workload.py``, in a fresh process:
``python counted_crash_check.py PATH KIND DURABLE_JSON strict|allow-loss`` (the arguments of
``crashkill.check_in_fresh_process``); prints the JSON verdict of ``crash_check.py``.

``crash_check``'s rule (recover succeeds or refuses in one line when nothing was durable, the file
opens in plain h5py, the dense stream keeps every durable frame and value, ``emdstream verify`` is
clean), plus the events: the recovered counted stream holds at least every slot the writer had
reported durable, and every slot it counts has exactly its events, counts and value; the counts
image, ``indptr``/``indices`` extents and the summed pattern agree with them.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from support.counted import events_of  # noqa: E402
from support.counted_crash_workload import SLOTS, weight  # noqa: E402
from support.crash_check import check  # noqa: E402


def check_events(path: str, durable: int, held: dict) -> list[str]:
    import h5py

    import emdstream

    with emdstream.open(path) as f:
        e = f["electrons"]
        n = held["electrons"] = e.frames_written
        problems = [] if e.complete else ["electrons: not complete after recover"]
        if n < durable:
            problems.append(f"electrons: LOST durable slots: the file holds {n}, the writer had "
                            f"reported {durable} durable")
        if n > SLOTS:
            return problems + [f"electrons: {n} slots counted, {SLOTS} were put"]
        matrix = e.csr(0, n)
        x = e.values["x"].reshape(-1) if n else None  # (no slot counted: no value names either)
        for slot in range(n):
            row = slice(matrix.indptr[slot], matrix.indptr[slot + 1])
            if not (np.array_equal(matrix.indices[row], events_of(slot))
                    and np.all(matrix.data[row] == weight(slot)) and x[slot] == slot):
                return problems + [f"electrons: slot {slot} of {n} counted is wrong"]
        sizes = [events_of(s).size for s in range(n)]
        if not np.array_equal(e.counts_image.reshape(-1)[:n], sizes):
            problems.append("electrons: the counts image differs from the events")
        size = e.frame_shape[0] * e.frame_shape[1]
        everything = [events_of(s) for s in range(n)] or [np.zeros(0, np.uint32)]
        want = np.bincount(np.concatenate(everything), np.repeat(
            [weight(s) for s in range(n)], sizes) if n else None, size)
        if not np.array_equal(e.summed_pattern.reshape(-1), want):
            problems.append("electrons: the summed pattern differs from the events")
    with h5py.File(path, "r") as h5:
        events = h5["data/electrons/events"]
        if events["indptr"].shape != (n + 1,) or events["indices"].shape != (sum(sizes),):
            problems.append(f"electrons: events datasets of {events['indptr'].shape} / "
                            f"{events['indices'].shape} for {n} slots of {sum(sizes)} events")
    return problems


if __name__ == "__main__":
    path, kind, durable = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    held: dict[str, int] = {}
    found, said = check(path, kind, durable, held)
    if os.path.exists(path) and not found:
        try:
            found += check_events(path, durable.get("electrons", 0), held)
        except Exception as exc:  # recover refused a file with nothing durable: no events
            if durable.get("electrons", 0):  # (a file recover passed is checked by crash_check)
                found.append(f"electrons: reading the events failed: {type(exc).__name__}: {exc}")
    lost = [p for p in found if "LOST" in p]
    if sys.argv[4:] == ["allow-loss"]:  # a power cut without fsync may cost durable frames
        found = [p for p in found if "LOST" not in p]
    print(json.dumps({"ok": not found, "problems": found, "lost": lost, "held": held,
                      "recover": said[-500:]}))
