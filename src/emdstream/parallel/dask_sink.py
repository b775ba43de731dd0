"""``write_dask``: a Dask array (a simulation's output) into an EMD file, compressed on the workers.

    import dask.array as da, emdstream
    emdstream.write_dask(array, "sim.emd", dims=[...], compression="bslz4", microscope={...})

The array's leading axes are the scan (or frame-number) axes, its last ``frame_ndim`` axes a frame.
Each Dask block is cut into the file's chunks (``k`` frames of a scan row, as ``EMDWriter`` lays them
out) and each chunk is compressed by the stream's encoder inside the Dask task that holds the block:
only the codec bytes leave the worker. One writer (``EMDWriter`` in this process) writes the chunks
with direct chunk writes in whatever order they arrive (``StreamWriter.put_encoded_chunk``), counting
frames only up to the first chunk not yet written: the file is crash safe like any EMDWriter file
(a killed process leaves a file ``emdstream recover`` finishes with that prefix).

Schedulers: with a ``dask.distributed`` Client (passed as ``client=``, or the default client) the
chunks come back as futures complete; with the threaded or synchronous local scheduler the tasks
hand their chunks to the writer directly; with the multiprocessing scheduler (or another ``get``)
blocks are computed in batches whose encoded chunks come back. Rechunking happens only where the
file's chunks need it: frame axes split between blocks, or block edges along the last scan axis
that are not multiples of the chunk's frame count.

Dask is an optional dependency (``pip install 'dask[distributed]'``, or ``pip install '.[dask]'``
in the emdstream checkout), imported when this is called.
"""
from __future__ import annotations

import itertools
import math
import os
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from emdstream.errors import EMDStreamError, install_hint
from emdstream.format.chunk_grid import ChunkGeometry
from emdstream.write.frames import lossless_cast


class WriteDaskError(EMDStreamError, RuntimeError):
    """A task (or worker) of the Dask computation failed; ``__cause__`` is its exception. The file
    is finished with the frames written before the first missing chunk (its closing comment says
    why it stopped)."""


@dataclass(frozen=True)
class ChunkPlan:
    """How the array's blocks become the file's chunks."""

    frame_ndim: int
    lead_shape: tuple[int, ...]   # the scan (or frame-number) axes
    frame_shape: tuple[int, ...]
    chunk_frames: int             # k: frames per file chunk along the last scan axis
    rechunk: dict[int, Any]       # axis -> new chunks, only for axes that must change


def plan_chunks(array, frame_ndim: Optional[int] = None, chunk_frames: Optional[int] = None
                ) -> ChunkPlan:
    """Which axes must be rechunked so every block holds whole file chunks, and the chunk size.

    Frame axes must each be one block. Along the last scan axis block edges must fall on multiples
    of ``k`` (or the row's end): with ``chunk_frames=None``, ``k`` is the largest divisor of the
    blocks' common step not above the default chunk (about 2 MiB), unless that is under a quarter
    of the default; other scan axes may be chunked any way."""
    ndim = array.ndim
    if frame_ndim is None:
        frame_ndim = min(2, ndim - 1)
    if isinstance(frame_ndim, bool) or not isinstance(frame_ndim, (int, np.integer)) \
            or not 0 <= frame_ndim < ndim:
        raise ValueError(f"frame_ndim must be an int in 0..{ndim - 1} for a {ndim}-D array (the "
                         f"leading axes are the scan), got {frame_ndim!r}")
    if any(math.isnan(n) for n in array.shape):
        raise ValueError(f"the array's shape {array.shape} has unknown sizes; call "
                         f"array.compute_chunk_sizes() first")
    n_lead = ndim - frame_ndim
    lead, frame = tuple(int(n) for n in array.shape[:n_lead]), tuple(int(n) for n in array.shape[n_lead:])
    if 0 in lead or 0 in frame:
        raise ValueError(f"the array {array.shape} is empty")
    rechunk: dict[int, Any] = {n_lead + i: -1 for i, c in enumerate(array.chunks[n_lead:])
                               if len(c) > 1}
    row = lead[-1]
    default_k = ChunkGeometry(frame, np.dtype(array.dtype).itemsize, None, lead,
                              None).k if len(lead) > 1 else \
        ChunkGeometry(frame, np.dtype(array.dtype).itemsize, row, None, None).k
    sizes = array.chunks[n_lead - 1]
    edges = list(itertools.accumulate(sizes))[:-1]  # block edges inside a row
    if chunk_frames is not None:
        if isinstance(chunk_frames, bool) or not isinstance(chunk_frames, (int, np.integer)) \
                or chunk_frames < 1:
            raise ValueError(f"chunk_frames must be a positive int or None, got {chunk_frames!r}")
        k = min(int(chunk_frames), row)
    elif not edges:
        k = default_k
    else:
        step = math.gcd(*edges)
        k = max(d for d in _divisors(step) if d <= default_k)
        if k < max(1, default_k // 4):  # blocks too finely cut for good chunks: rechunk them
            k = default_k
    if any(e % k for e in edges):
        rechunk[n_lead - 1] = k * max(1, round(sizes[0] / k))
    return ChunkPlan(frame_ndim, lead, frame, k, rechunk)


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return small + [n // d for d in reversed(small) if d * d != n]


# --- the task: one block -> its encoded chunks -------------------------------------------------------
def encode_block(block: np.ndarray, offsets: Sequence[int], lead_shape: Sequence[int],
                 geometry: ChunkGeometry, encoder, fillvalue, dtype=None
                 ) -> list[tuple[int, np.ndarray]]:
    """The file chunks of one block: ``[(chunk id, encoded bytes)]`` (runs in a Dask task).

    ``offsets``: the block's first index along each scan axis. A row's last chunk, when shorter
    than ``k`` frames, is padded with the fill value as ``EMDWriter`` pads it. ``dtype``: the
    file's (default: the block's, in native byte order); the block is cast to it, losslessly."""
    block = _as_file_dtype(np.asarray(block), dtype)
    lead_shape = tuple(lead_shape)
    n_lead = len(lead_shape)
    k, row = geometry.k, lead_shape[-1]
    frame_shape = block.shape[n_lead:]
    x_start, x_len = int(offsets[-1]), block.shape[n_lead - 1]
    out = []
    for outer in np.ndindex(*block.shape[:n_lead - 1]):
        where = tuple(int(o) + int(off) for o, off in zip(outer, offsets[:-1]))
        row_index = int(np.ravel_multi_index(where, lead_shape[:-1])) if n_lead > 1 else 0
        x = x_start
        while x < x_start + x_len:
            end = min(x + k, row, x_start + x_len)
            piece = block[outer + (slice(x - x_start, end - x_start),)]
            if end - x < k:
                padded = np.full((k,) + frame_shape, fillvalue, dtype=block.dtype)
                padded[: end - x] = piece
                piece = padded
            chunk_id = row_index * geometry.chunks_per_row + x // k
            payload = encoder.encode(np.ascontiguousarray(piece).reshape(geometry.chunk_shape))
            out.append((chunk_id, np.frombuffer(payload, dtype=np.uint8)))
            x = end
    return out


def _as_file_dtype(block: np.ndarray, dtype) -> np.ndarray:
    """``block`` in the file's dtype (native byte order: the encoders take the raw bytes), or
    TypeError when the cast would change values."""
    dtype = (block.dtype if dtype is None else np.dtype(dtype)).newbyteorder("=")
    if block.dtype == dtype:
        return block
    if not lossless_cast(block.dtype, dtype):
        raise TypeError(f"a block of dtype {block.dtype} cannot be stored losslessly as the "
                        f"file's dtype {dtype} (the Dask array's declared dtype); convert it "
                        f"explicitly if that is intended")
    return block.astype(dtype)


_WHERE = {"distributed": "on the dask.distributed workers",
          "in-process": "in the local scheduler's threads",
          "local": "by the local scheduler's workers"}
_SINKS: dict[str, Any] = {}  # in-process sinks (threaded / synchronous scheduler), by token


def _encode_and_put(block, offsets, lead_shape, geometry, encoder, fillvalue, token) -> int:
    """The in-process variant: encode the block's chunks and hand them to the writer at once."""
    stream = _SINKS[token]
    chunks = encode_block(block, offsets, lead_shape, geometry, encoder, fillvalue,
                          stream.spec.dtype)
    for chunk_id, payload in chunks:
        stream.put_encoded_chunk(chunk_id, payload)
    return len(chunks)


# --- the driver ------------------------------------------------------------------------------------
def write_dask(array, path: str | os.PathLike, dims=None, compression: Any = "bslz4", *,
               frame_ndim: Optional[int] = None, chunk_frames: Optional[int] = None,
               client=None, scheduler=None, comments: Sequence[str] = (),
               batch_blocks: Optional[int] = None, **writer_options) -> int:
    """Write a Dask array into an EMD v0.2 file; returns the frames written.

    Args:
        array: a ``dask.array.Array``; its leading axes are the scan (2 or more axes: the file's
            ``scan_shape``) or frame-number axis (1 axis: a stack), its last ``frame_ndim`` axes
            (default 2, or 1 for a 2-D array) one frame.
        path, dims, compression: as for ``EMDWriter`` (``dims``: one ``Dim`` per array axis).
        chunk_frames: frames per file chunk (default: fitted to the array's blocks, see
            ``plan_chunks``); the array is rechunked only where its blocks do not hold whole chunks.
        client: a ``distributed.Client`` (default: the current default client, if any).
        scheduler: a local Dask scheduler name ("threads", "sync", "processes") when no client.
        comments: texts added to /comments.
        batch_blocks: blocks computed at once with the multiprocessing scheduler (memory bound).
        **writer_options: ``EMDWriter`` keywords (``name``, ``microscope``, ``user``, ``sample``,
            ``flush_seconds``, ``overwrite``, ``fillvalue``, ``workers``, ...).

    Raises WriteDaskError when a task or worker fails (the file is finished with the frames before
    the first missing chunk), ImportError without dask.
    """
    try:
        import dask.array as da
    except ImportError as exc:
        raise ImportError(f"write_dask needs dask: {install_hint('dask[array]', 'dask')} ({exc})") from None
    from emdstream.write.writer import EMDWriter

    if not isinstance(array, da.Array):
        raise TypeError(f"write_dask takes a dask.array.Array, got {type(array).__name__} "
                        f"(wrap NumPy data with dask.array.from_array)")
    for key in ("scan_shape", "n_frames", "frame_shape", "dtype"):
        if key in writer_options:
            raise TypeError(f"write_dask: {key} comes from the array; do not pass it")
    plan = plan_chunks(array, frame_ndim, chunk_frames)
    if plan.rechunk:
        array = array.rechunk(plan.rechunk)
    lead = plan.lead_shape
    mode, client, get = _scheduler(array, client, scheduler)  # a bad one: no file created
    w = EMDWriter(path, plan.frame_shape, array.dtype,
                  n_frames=lead[0] if len(lead) == 1 else None,
                  scan_shape=lead if len(lead) > 1 else None, compression=compression, dims=dims,
                  chunk_frames=plan.chunk_frames, **writer_options)
    stream = w.streams[w.name]
    try:
        w.comment(f"emdstream: written from a Dask array {tuple(array.shape)} {array.dtype}, "
                  f"{array.npartitions} blocks"
                  + (f" (rechunked axes {sorted(plan.rechunk)})" if plan.rechunk else "")
                  + f", compressed {_WHERE[mode]}")
        for text in comments:
            w.comment(text)
        blocks = _blocks(array, plan.frame_ndim)
        if mode == "distributed":
            _run_distributed(client, blocks, stream, lead, w.fillvalue)
        elif mode == "in-process":
            _run_in_process(blocks, stream, lead, w.fillvalue, get)
        else:
            _run_batches(blocks, stream, lead, w.fillvalue, get, batch_blocks or 4 * (os.cpu_count() or 1))
    except BaseException as exc:
        reason = f"{type(exc).__name__}: {exc}"
        try:
            w.close(comment=f"emdstream: write_dask stopped, the computation failed: {reason}")
        except Exception as close_error:  # the task's error is the one to raise; keep both
            exc.add_note(f"closing {w.path} also failed: {close_error}") \
                if hasattr(exc, "add_note") else None
        if isinstance(exc, (KeyboardInterrupt, SystemExit, WriteDaskError)):
            raise
        where = getattr(exc, "emdstream_block", None)
        raise WriteDaskError(
            f"write_dask: the Dask computation failed{where or ''}: {reason}. {w.path} is finished "
            f"with the {w.frames_written} frames before the first missing chunk (of "
            f"{math.prod(lead)}); its closing comment says why") from exc
    w.close()
    return w.frames_written


def _scheduler(array, client, scheduler):
    """("distributed", client, None), ("in-process", None, get) or ("batches", None, get)."""
    import dask
    import dask.local
    import dask.threaded
    from dask.base import get_scheduler

    if client is None and _is_client(scheduler):
        client = scheduler
    if client is None and scheduler is None:
        try:
            from distributed import default_client

            client = default_client()
        except (ImportError, ValueError):
            client = None
    if client is not None:
        return "distributed", client, None
    try:
        get = get_scheduler(scheduler=scheduler, collections=[array]) or dask.threaded.get
    except ValueError as exc:
        if scheduler is None:
            raise
        raise ValueError(f"write_dask: unknown scheduler {scheduler!r}: {exc} (or pass a "
                         f"dask.distributed Client, or a get function)") from None
    if get in (dask.threaded.get, dask.local.get_sync):
        return "in-process", None, get
    return "local", None, get


def _is_client(obj) -> bool:
    try:
        from distributed import Client
    except ImportError:
        return False
    return isinstance(obj, Client)


def _blocks(array, frame_ndim: int):
    """[(block index over the scan axes, first index of the block per scan axis, delayed block)]."""
    n_lead = array.ndim - frame_ndim
    starts = [np.concatenate([[0], np.cumsum(c)[:-1]]).astype(int) for c in array.chunks[:n_lead]]
    delayed = array.to_delayed(optimize_graph=True)
    out = []
    for index in np.ndindex(*delayed.shape[:n_lead]):
        block = delayed[index + (0,) * frame_ndim]
        out.append((index, tuple(int(s[i]) for s, i in zip(starts, index)), block))
    return out


def _describe_block(index, offsets) -> str:
    return f" in block {tuple(int(i) for i in index)} (scan from {offsets})"


def _note_block(exc: BaseException, where: str) -> None:
    try:
        exc.emdstream_block = where  # read back where the failure is reported
    except AttributeError:  # an exception type without a __dict__
        pass


def _run_in_process(blocks, stream, lead, fillvalue, get) -> None:
    import dask

    token = uuid.uuid4().hex
    _SINKS[token] = stream
    try:
        tasks = [dask.delayed(_encode_and_put, pure=False)(
            block, offsets, lead, stream.geometry, stream.encoder, fillvalue, token)
            for _, offsets, block in blocks]
        dask.compute(*tasks, scheduler=get)
    finally:
        del _SINKS[token]


def _run_batches(blocks, stream, lead, fillvalue, get, batch: int) -> None:
    import dask

    for i in range(0, len(blocks), batch):
        group = blocks[i:i + batch]
        tasks = [dask.delayed(encode_block, pure=True)(
            block, offsets, lead, stream.geometry, stream.encoder, fillvalue, stream.spec.dtype)
            for _, offsets, block in group]
        try:
            results = dask.compute(*tasks, scheduler=get)
        except Exception as exc:
            first, last = group[0], group[-1]
            _note_block(exc, f" in one of blocks {first[0]} .. {last[0]}")
            raise
        for chunks in results:
            for chunk_id, payload in chunks:
                stream.put_encoded_chunk(chunk_id, payload)


def _run_distributed(client, blocks, stream, lead, fillvalue) -> None:
    import dask
    from distributed import as_completed

    tasks = [dask.delayed(encode_block, pure=True)(
        block, offsets, lead, stream.geometry, stream.encoder, fillvalue, stream.spec.dtype)
        for _, offsets, block in blocks]
    futures = client.compute(tasks)
    where = {f.key: (index, offsets) for f, (index, offsets, _) in zip(futures, blocks)}
    done = threading.Event()
    try:
        for future in as_completed(futures):
            if future.status != "finished":
                exc = future.exception()
                _note_block(exc, _describe_block(*where[future.key]))
                raise exc
            for chunk_id, payload in future.result():
                stream.put_encoded_chunk(chunk_id, payload)
            future.release()
        done.set()
    finally:
        if not done.is_set():
            client.cancel(futures)
