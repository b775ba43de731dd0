"""``emdstream info``: what an EMD file holds, as a dict (for ``--json``) or readable text."""
from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from emdstream.encoders import describe_filters
from emdstream.format.layout import RAW_REASONS
from emdstream.format.values import TIMESTAMP
from emdstream.read.file import EMDFile
from emdstream.safety.filelock import writer_holds


def describe(f: EMDFile) -> dict[str, Any]:
    """Datasets (shape, dtype, chunks, compression, ratio, dims, counts; ``finished``: the writer
    closed it, ``positions``: frame slots of a scan or pre-allocated stack, None for a growing one;
    ``values``: per-frame value names with frames, min, max), metadata, comments."""
    datasets = {}
    for name, ds in f.datasets.items():
        data = ds.data
        stored = data.id.get_storage_size()
        raw = data.size * data.dtype.itemsize
        if data.ndim:  # the slots written so far, not those of a scan stopped early
            raw = ds.frame_slots * data.dtype.itemsize * int(np.prod(data.shape[len(ds.frame_grid):]))
        datasets[name] = {
            "shape": list(data.shape), "dtype": str(data.dtype),
            "chunks": list(data.chunks) if data.chunks else None,
            "compression": describe_filters(data),
            "stored_bytes": int(stored), "raw_bytes": int(raw),
            "ratio": round(raw / stored, 3) if stored else None,
            "frames_written": ds.frames_written, "frames_dropped": ds.frames_dropped,
            "complete": ds.complete, "finished": ds.complete, "positions": _positions(ds),
            "dims": [{"axis": i + 1, "name": d.name, "units": d.units, "length": len(d.values),
                      "first": _num(d.values[0]) if len(d.values) else None,
                      "last": _num(d.values[-1]) if len(d.values) else None}
                     for i, d in enumerate(ds.dims)],
        }
        datasets[name]["values"] = value_ranges(ds.values)
        if getattr(ds, "counted", False):  # a counted stream: data is the counts image
            datasets[name]["events"] = ds.events_info()
        datasets[name].update(_raw_chunks(ds))
        datasets[name].update(_parts(f, name, ds))
    return {"path": f.path, "emd_version": list(f.version), "datasets": datasets,
            "metadata": {g: {k: _jsonable(v) for k, v in attrs.items()}
                         for g, attrs in f.metadata.items()},
            "comments": [{"time": k, "text": t} for k, t in f.comments]}


def format_text(info: dict[str, Any]) -> str:
    out = [f"{info['path']}  (EMD v{info['emd_version'][0]}.{info['emd_version'][1]})"]
    for name, d in info["datasets"].items():
        state = _state(d)
        ratio = f"{d['ratio']:.2f}x" if d["ratio"] else "n/a"
        out += [f"/data/{name}  [{state}]",
                f"  data    {tuple(d['shape'])} {d['dtype']}, chunks {tuple(d['chunks'] or ())}, "
                f"{d['compression']}, ratio {ratio} ({d['stored_bytes'] / 1e6:.1f} MB stored)",
                f"  frames  {d['frames_written']} written, {d['frames_dropped']} dropped"]
        if d.get("events"):
            e = d["events"]
            out.append(f"  events  {e['events']} in {e['frame_shape'][0]}x{e['frame_shape'][1]} frames "
                       f"(data: events per slot), {e['compression']}, {e['bytes_per_event'] or 0:.2f} "
                       f"bytes/event{', with counts' if e['counts'] else ''}")
        if d["raw_chunks"]:
            why = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in
                            d["raw_chunks_why"].items() if n)
            out.append(f"  raw     {d['raw_chunks']} chunks stored uncompressed"
                       + (f" ({why})" if why else ""))
        out += _format_parts(d)
        for dim in d["dims"]:
            span = (f"{dim['first']:g} .. {dim['last']:g}" if isinstance(dim["first"], (int, float))
                    else "")
            out.append(f"  dim{dim['axis']}    {dim['name']!s:<12} {dim['units']!s:<8} "
                       f"{dim['length']:>6} points  {span}")
        out += _format_values(d.get("values", {}))
    for group, attrs in info["metadata"].items():
        out.append(f"/{group}" + ("" if attrs else "  (empty)"))
        out += [f"  {k} = {v}" for k, v in attrs.items()]
    out.append("/comments")
    out += [f"  {c['time']}  {c['text']}" for c in info["comments"]]
    return "\n".join(out)


def value_ranges(values: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """{name: {"frames": frames with a value, "min": ..., "max": ...}} of per-frame values
    (NaN, where no frame or no value was stored, left out; min and max None without any)."""
    out = {}
    for name, column in values.items():
        column = np.asarray(column, dtype=np.float64)
        have = column[~np.isnan(column)]
        out[name] = {"frames": int(have.size),
                     "min": float(have.min()) if have.size else None,
                     "max": float(have.max()) if have.size else None}
    return out


def _state(d: dict[str, Any]) -> str:
    """"finished" (the writer closed the file) apart from whether every position was written."""
    state = "finished" if d["finished"] else "IN PROGRESS / not finalized"
    total = d.get("positions")
    if total is None:
        return f"{state}, {d['frames_written']} frames"
    if d["frames_written"] == total:
        return f"{state}, all {total} positions written"
    return f"{state}, {d['frames_written']} of {total} positions written"


def _positions(ds) -> int | None:
    """The number of frame slots of a scan or a pre-allocated stack; None for a growing one."""
    if not ds.data.ndim:  # a single value (foreign files)
        return 1
    if ds.data.maxshape[0] is None:
        return None
    return int(np.prod(ds.frame_grid))


def _format_values(values: dict[str, dict[str, Any]]) -> list[str]:
    out = []
    width = max(map(len, values), default=0)
    for name, v in values.items():
        if v["min"] is None:
            span = "no values"
        elif name == TIMESTAMP:
            span = f"{_utc(v['min'])} .. {_utc(v['max'])} (UTC)"
        else:
            span = f"{v['min']:g} .. {v['max']:g}"
        out.append(f"  value   {name:<{width}}  {span}  ({v['frames']} frames)")
    return out


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1000):03d}"


def follow(path: str, interval: float = 1.0, out=print, stop_after: float | None = None,
           grace: float = 2.0) -> bool:
    """Print the frame count of a file being written (reopened at every poll) until its writer
    finishes: True then. False when the writer stopped without finishing (no process has held the
    file for ``grace`` seconds while it is unfinished) or after ``stop_after`` seconds."""
    start = time.monotonic()
    orphaned_since = None
    last = None
    with EMDFile(path, live=True) as f:
        while True:
            counts = {n: ds.frames_written for n, ds in f.datasets.items()}
            if counts != last:
                out(f"{time.strftime('%H:%M:%S')}  " + ", ".join(
                    f"{n}: {c} frames" for n, c in counts.items()))
                last = counts
            if all(ds.complete for ds in f.datasets.values()):
                return True
            f.close()  # an open reader would look like a writer to writer_holds
            now = time.monotonic()
            if writer_holds(path):
                orphaned_since = None
            elif orphaned_since is None:
                orphaned_since = now
            elif now - orphaned_since >= grace:
                out(f"the writer stopped without finishing {path}; run: emdstream recover {path}")
                return False
            if stop_after is not None and now - start > stop_after:
                return False
            time.sleep(interval)
            f.refresh()


def _parts(f: EMDFile, name: str, ds) -> dict[str, Any]:
    """A master's parts (``write_master``: each part's file and counts now), or a part file's place
    in the scan."""
    from emdstream.format import parts
    from emdstream.format.layout import MASTER_ATTR
    from emdstream.parallel.master_check import master_parts

    if MASTER_ATTR in ds.group.attrs:
        found = master_parts(f.path).get(name, [])
        return {"compression": "virtual (HDF5 VDS over the part files)",
                "parts": [{k: st[k] for k in ("rank", "path", "present", "frames_written",
                                              "frames_dropped", "frames", "finished", "problem")}
                          for st in found]}
    part = parts.describe(ds.group.attrs)
    return {"part": json.loads(part)} if part else {}


def _format_parts(d: dict[str, Any]) -> list[str]:
    if "part" in d:
        p = d["part"]
        return [f"  part    {p['rank']} of {p['of']}, blocks of {p['block_frames']} frames of scan "
                f"{tuple(p['scan_shape'])} (emdstream.write_master joins the parts)"]
    if "parts" not in d:
        return []
    present = sum(p["present"] for p in d["parts"])
    out = [f"  parts   {len(d['parts'])} files, {present} present (counts now)"]
    for p in d["parts"]:
        state = ("missing" if not p["present"] else
                 f"{p['frames_written']} of {p['frames']} frames"
                 + (f", {p['frames_dropped']} dropped" if p["frames_dropped"] else "")
                 + (", finished" if p["finished"] else ", unfinished"))
        out.append(f"    {p['rank']:>3}  {p['path']}  {state}"
                   + (f"  ({p['problem']})" if p["problem"] and p["present"] else ""))
    return out


def _raw_chunks(ds) -> dict[str, Any]:
    """How many chunks are stored uncompressed (filter mask set), from the chunks themselves,
    and why, as the writer recorded it."""
    data = ds.data
    count = data.id.get_num_chunks() if data.chunks else 0
    raw = sum(1 for i in range(count) if data.id.get_chunk_info(i).filter_mask)
    return {"raw_chunks": raw,
            "raw_chunks_why": {r: int(ds.group.attrs.get(f"raw_chunks_{r}", 0)) for r in RAW_REASONS}}


def _num(v):
    return v.item() if isinstance(v, np.generic) else v


def _jsonable(v):
    if isinstance(v, np.ndarray):
        return v.tolist()
    return _num(v)
