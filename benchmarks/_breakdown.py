"""Time spent per section of emdstream's threads, by wrapping its functions with timers.

Used by ``bench_write.py --breakdown`` in the measuring child process only (never imported by the
package). Times are inclusive (a section includes the sections listed indented below it) and are
wall-clock per thread, so they include waiting for the GIL. Wrapping adds ~1 us per call.
Sections that do not exist in the current source (renamed functions) are skipped.
"""
from __future__ import annotations

import functools
import queue
import threading
import time
from concurrent.futures import Future

_acc: dict[tuple[str, str], list] = {}

# (owner import path, attribute, section label, indent); order = report order
_SECTIONS = [
    ("emdstream.write.writer:EMDWriter", "put", "put()", 0),
    ("emdstream.write.frames:FrameSpec", "checked", "checked (shape/dtype)", 1),
    ("emdstream.write.writer:EMDWriter", "_free_buffer", "_free_buffer (waiting when behind)", 1),
    ("emdstream.write.assembler:ChunkAssembler", "add", "add (copy into chunk buffer)", 1),
    ("emdstream.write.writer:EMDWriter", "close", "close()", 0),
    ("emdstream.write.writer_thread:WriterThread", "run", "run (whole thread)", 0),
    ("emdstream.write.writer_thread:WriterThread", "_submit", "_submit", 1),
    ("emdstream.write.writer_thread:WriterThread", "_write_ready", "_write_ready", 1),
    ("concurrent.futures:Future", "result", "Future.result (waiting for encoder)", 2),
    ("emdstream.write.sink:StreamSink", "write_chunk", "write_chunk", 2),
    ("h5py:Dataset", "resize", "Dataset.resize", 3),
    ("emdstream.write.writer_thread:WriterThread", "_flush", "_flush (periodic + final)", 1),
    ("emdstream.write.writer_thread:WriterThread", "_drain", "_drain", 2),
    ("h5py:File", "flush", "File.flush", 2),
    ("emdstream.write.writer_thread:WriterThread", "_finish", "_finish (close)", 1),
    ("h5py:File", "close", "File.close", 2),
    ("emdstream.format.layout:finalize", None, "layout.finalize", 2),
    ("emdstream.encoders:BitshuffleLZ4", "encode", "encoder.encode", 0),
]
_ORDER = {label: (i, indent) for i, (_, _, label, indent) in enumerate(_SECTIONS)}


def _timed(fn, label):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            dt = time.perf_counter() - t
            key = (_thread_group(), label)
            entry = _acc.get(key)
            if entry is None:
                entry = _acc.setdefault(key, [0, 0.0])
            entry[0] += 1
            entry[1] += dt
    return wrapper


def install() -> None:
    import importlib
    for where, attr, label, _ in _SECTIONS:
        module_name, owner_name = where.split(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if attr is None:  # a module-level function
            fn = getattr(module, owner_name, None)
            if fn is not None:
                setattr(module, owner_name, _timed(fn, label))
            continue
        owner = getattr(module, owner_name, None)
        fn = owner.__dict__.get(attr) if owner is not None else None
        if fn is not None and callable(fn):
            setattr(owner, attr, _timed(fn, label))
    assert queue.Queue.get is not None and Future.result is not None


def _thread_group() -> str:
    thread = threading.current_thread()
    if thread is threading.main_thread():
        return "producer"
    if type(thread).__name__ == "WriterThread":  # its name is overwritten by WriterThread.name
        return "writer"
    return thread.name.replace("emdstream-", "")


def report(wall: float) -> list[dict]:
    rows = []
    for (thread, label), (calls, seconds) in _acc.items():
        order, indent = _ORDER.get(label, (99, 0))
        rows.append(dict(thread=thread, section="  " * indent + label, calls=calls,
                         seconds=seconds, us_per_call=seconds / calls * 1e6, order=order))
    rows.sort(key=lambda r: (r["thread"] != "producer", r["thread"] != "writer", r["thread"],
                             r["order"]))
    return rows


# --- CPU time per thread ------------------------------------------------------------------------
# Each of the writer's threads records its own ``time.thread_time()`` (CPU seconds, user + system,
# of that thread alone) when it ends; the producer's is taken around the timed loop by the caller.
# Costs nothing while frames stream (one wrapper call per thread).
_thread_cpu: list[tuple[str, float]] = []


def install_thread_cpu() -> None:
    from emdstream.write.encoder_pool import EncoderPool
    from emdstream.write.writer_thread import WriterThread
    if getattr(WriterThread.run, "_records_cpu", False):  # installed already (--in-process)
        return

    def recording(fn, role):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            finally:
                _thread_cpu.append((role, time.thread_time()))
        wrapper._records_cpu = True
        return wrapper

    WriterThread.run = recording(WriterThread.run, "writer")
    EncoderPool._run = recording(EncoderPool._run, "encoders")


def reset_thread_cpu() -> None:
    _thread_cpu.clear()


def thread_cpu() -> dict[str, float]:
    """CPU seconds per role ("writer", "encoders": the sum over the pool's threads) of the threads
    that have ended so far."""
    out: dict[str, float] = {}
    for role, seconds in _thread_cpu:
        out[role] = out.get(role, 0.0) + seconds
    return out
