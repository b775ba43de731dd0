#!/usr/bin/env python
"""Summarize a ``py-spy record -f raw --threads`` profile of an emdstream run, per thread role.

    py-spy record --threads --idle --nonblocking -r 1000 -f raw -o profile.txt -- \\
        python benchmarks/bench_write.py --only detector-256x256-bslz4/emdstream --in-process
    python benchmarks/pyspy_summary.py profile.txt [--top 12] [--timed-only]

For each thread role (producer = MainThread, writer = the WriterThread, encoder = pool threads) it
prints the share of samples per innermost frame ("self") and per innermost emdstream frame (the
package function that was running or waiting). ``--timed-only`` keeps only the samples taken while
the producer was inside a timed runner (``bench_write.run_emdstream``, ``bench_limits.run_emd``),
dropping imports and setup.
"""
from __future__ import annotations

import argparse
import collections
import re

_TIMED = re.compile(r"run_emd(stream)? \(")  # bench_write's and bench_limits's timed runners
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<where>[^()]*)\)$")


def role(frames: list[str]) -> str:
    """By the stack, not the thread name (py-spy may reuse a name for a later thread of the same id)."""
    if any(f.startswith("EncoderPool._run ") for f in frames):
        return "encoder"
    if any(f.startswith("WriterThread.run ") for f in frames):
        return "writer"
    if any(f.startswith("<module> ") for f in frames):
        return "producer"
    return "other"


def short(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    where = m["where"]
    where = re.sub(r"^.*site-packages/", "", where)
    where = re.sub(r"^.*/src/emdstream/", "emdstream/", where)
    where = re.sub(r"^.*/", "", where) if "emdstream/" not in where else where
    return f"{m['func']} ({where})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("profile")
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--timed-only", action="store_true")
    args = p.parse_args()
    leaf: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    pkg: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    totals: collections.Counter = collections.Counter()
    with open(args.profile) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            frames = stack.split(";")
            r = role(frames[1:])
            if args.timed_only and r == "producer" and not any(_TIMED.match(x) for x in frames):
                continue
            n = int(count)
            totals[r] += n
            leaf[r][short(frames[-1])] += n
            inner = next((x for x in reversed(frames) if "emdstream/" in x), None)
            pkg[r][short(inner) if inner else "(no emdstream frame)"] += n
    for r in sorted(totals, key=lambda k: ("producer", "writer", "encoder").index(k)
                    if k in ("producer", "writer", "encoder") else 9):
        print(f"\n== {r}: {totals[r]} samples")
        print("  innermost frame:")
        for k, v in leaf[r].most_common(args.top):
            print(f"    {100 * v / totals[r]:5.1f}%  {k}")
        print("  innermost emdstream frame:")
        for k, v in pkg[r].most_common(args.top):
            print(f"    {100 * v / totals[r]:5.1f}%  {k}")


if __name__ == "__main__":
    main()
