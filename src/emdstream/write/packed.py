"""bslz4 chunks compressed in pieces, by the producer and the writer thread together.

A chunk of block-aligned frames (frame bytes a multiple of bslz4's 8 KiB block) is split into
pieces of whole blocks (a frame, a few small frames, or part of a large one). The body of a chunk
is its pieces' bodies in order, so each piece is compressed on its own, into its own place of the
chunk's reusable output buffer (``Packing.out``, the 12-byte header written once):

* the producer copies a piece's frames into the chunk buffer, leaving the piece to the writer
  thread (which gets it when the chunk is full), while the writer has less than one chunk's
  worth of pieces to compress (``Packing.room``, ``ChunkAssembler.writer_backlog``); otherwise it
  compresses the piece inside ``put``, straight from the caller's frame (no copy);
* the writer thread compresses the pieces left raw (runs of them in one call) and closes the gaps
  between the bodies (``finish``), then writes the chunk.

So both cores compress without a hand-off per piece (a thread wake-up costs ~50-100 µs on a VM;
one chunk-sized hand-off per chunk remains), and each call writes into memory already touched.
A piece compressed by the producer has no raw copy in the chunk buffer; ``materialize`` decodes
it back where the raw frames are needed (a flush's snapshot of a partly filled chunk, a chunk
stored raw). Thread safety: a ``Packing`` belongs to its chunk buffer, used under the
assembler's lock by the producer, then by the writer thread alone once the chunk is handed over.
"""
from __future__ import annotations

import ctypes
from typing import Optional

import numpy as np

from emdstream.encoders import BitshuffleLZ4, ChunkEncoder
from emdstream.encoders.bslz4_lib import library

PIECE_BYTES = 128 << 10  # ~55 µs of compression on one core: a put stays well under 1 ms
RUN_PIECES = 4  # the writer thread compresses at most this many pieces in one call


def address(array: np.ndarray) -> int:
    """The address of a C-contiguous array's first element: ``array.ctypes.data`` costs ~0.9 µs
    a call here, a writable array's buffer ~0.15 µs (about 2 % of a 256x256 ``put``)."""
    if array.flags.writeable:
        return ctypes.addressof(ctypes.c_char.from_buffer(array))
    return array.ctypes.data


class PieceLayout:
    """How the chunks of one stream split into pieces (all sizes in elements)."""

    def __init__(self, encoder: BitshuffleLZ4, k: int, frame_elems: int, itemsize: int):
        self.encoder, self.k, self.itemsize = encoder, k, itemsize
        self.frame_elems = frame_elems
        block = encoder.block_elems(itemsize)
        if frame_elems >= PIECE_BYTES // itemsize:  # pieces of one frame: whole blocks
            blocks = frame_elems // block
            per_piece = max(d for d in range(1, blocks + 1)
                            if blocks % d == 0 and d * block * itemsize <= PIECE_BYTES)
            self.piece_elems = per_piece * block
        else:  # pieces of whole frames
            frames = max(d for d in range(1, k + 1)
                         if k % d == 0 and d * frame_elems * itemsize <= PIECE_BYTES)
            self.piece_elems = frames * frame_elems
        self.n_pieces = k * frame_elems // self.piece_elems
        self.bound = encoder.bound(self.piece_elems * itemsize, itemsize)
        self.header = encoder.header(k * frame_elems * itemsize, itemsize)
        self.block = encoder.block_elems(itemsize)
        self.compress = library().compress  # addresses in, body length out; releases the GIL

    @staticmethod
    def of(encoder: ChunkEncoder, k: int, frame_shape: tuple, dtype: np.dtype,
           on_full: str) -> Optional[PieceLayout]:
        """The layout if this stream's chunks can be compressed in pieces, else None (other
        codecs, frames not block-aligned, ``store_raw``: those use the encoder pool)."""
        frame_elems = int(np.prod(frame_shape, dtype=np.int64))
        itemsize = np.dtype(dtype).itemsize
        if type(encoder) is not BitshuffleLZ4 or on_full == "store_raw" or not frame_elems:
            return None
        if frame_elems % encoder.block_elems(itemsize):
            return None
        return PieceLayout(encoder, k, frame_elems, itemsize)


class Packing:
    """One chunk buffer's output: where each piece's body is, and which are still raw."""

    def __init__(self, layout: PieceLayout, flat: np.ndarray):
        self.layout, self.flat = layout, flat  # flat: the chunk buffer's elements
        self.out = np.empty(12 + layout.n_pieces * layout.bound, dtype=np.uint8)
        self.out[:12] = np.frombuffer(layout.header, np.uint8)
        self.out_at = self.out.ctypes.data  # the buffers live as long as this object
        self.flat_at = flat.ctypes.data
        self.lens = np.full(layout.n_pieces, -1, dtype=np.int64)   # -1: not compressed yet
        self.starts = np.zeros(layout.n_pieces, dtype=np.int64)
        self.has_raw = np.zeros(layout.n_pieces, dtype=bool)       # raw copy in the buffer
        self.done = np.zeros(layout.n_pieces, dtype=np.int64)      # frames in each piece so far
        self.cursor, self.leading = 12, 0  # bodies of pieces 0..leading-1 end at cursor
        self.left = 0  # pieces of this chunk left raw, for the writer thread

    def room(self, backlog: int) -> int:
        """How many pieces of this chunk the writer thread may get, ``backlog`` pieces (of chunks
        handed over) still to compress: up to one chunk's worth in all. So each thread compresses
        about every other chunk's worth, the writer in one call per chunk, and a writer that falls
        behind gets nothing more until it catches up."""
        return self.layout.n_pieces - backlog

    def reset(self) -> None:
        self.lens.fill(-1)
        self.has_raw.fill(False)
        self.done.fill(0)
        self.cursor, self.leading = 12, 0
        self.left = 0

    # --- the producer (under the assembler's lock) -------------------------------------------
    def take(self, position: int, frames: np.ndarray, backlog: int) -> None:
        """Frames for chunk positions ``position`` ... (checked, shape ``(n, *frame)``): each
        piece they cover whole is compressed from them or copied raw (``room``); frames of a
        piece they cover in part are copied, and the piece compressed once it is complete."""
        lay, n = self.layout, len(frames)
        if n == 1 and lay.piece_elems == lay.frame_elems and self.left >= self.room(backlog) \
                and frames.flags.c_contiguous and frames.dtype == self.flat.dtype:
            self._compress(position, frames, address(frames))  # the common put: one piece
            return
        first, end = position * lay.frame_elems, (position + n) * lay.frame_elems
        src = frames.reshape(-1) if frames.flags.c_contiguous and \
            frames.dtype == self.flat.dtype else None
        src_at = address(src) - first * lay.itemsize if src is not None else 0
        pe = lay.piece_elems
        for p in range(first // pe, (end - 1) // pe + 1):
            a, b = max(first, p * pe), min(end, (p + 1) * pe)
            if src is not None and self.left >= self.room(backlog) and b - a == pe:
                self._compress(p, src[a - first:b - first], src_at + a * lay.itemsize)
                continue
            np.copyto(self.flat[a:b], frames.reshape(-1)[a - first:b - first], casting="unsafe")
            self.mark_raw(p, (b - a) // lay.frame_elems or 1, backlog, b - a == pe)

    def filled_in_place(self, position: int, backlog: int) -> None:
        """The frame at ``position`` was written into the chunk buffer itself (``frame_buffer``)."""
        lay = self.layout
        pe, whole = lay.piece_elems, lay.piece_elems <= lay.frame_elems
        first = position * lay.frame_elems
        for p in range(first // pe, (first + lay.frame_elems - 1) // pe + 1):
            self.mark_raw(p, 1, backlog, whole)

    def mark_raw(self, p: int, frames: int, backlog: int, whole: bool = False) -> None:
        """Frames of piece ``p`` were put in the chunk buffer; compress it when it is complete
        and the writer thread has enough (``room``)."""
        lay = self.layout
        self.has_raw[p] = True
        complete = whole or self._count(p, frames)
        if complete and self.lens[p] < 0:
            if self.left >= self.room(backlog):
                pe = lay.piece_elems
                self._compress(p, self.flat[p * pe:(p + 1) * pe],
                               self.flat_at + p * pe * lay.itemsize)
            else:
                self.left += 1

    def _count(self, p: int, frames: int) -> bool:
        lay = self.layout
        per_piece = max(1, lay.piece_elems // lay.frame_elems)
        self.done[p] += frames
        return self.done[p] >= per_piece

    def _compress(self, p: int, src: np.ndarray, src_at: int) -> None:
        """Compress piece ``p`` from ``src`` (its elements, at address ``src_at``)."""
        lay = self.layout
        at = self.cursor if p == self.leading else 12 + p * lay.bound
        n = lay.compress(src_at, self.out_at + at, lay.piece_elems, lay.itemsize, lay.block)
        self.starts[p], self.lens[p] = at, n
        if p == self.leading:
            self.cursor, self.leading = at + n, p + 1
        if n >= src.nbytes and not self.has_raw[p]:  # incompressible: keep the raw bytes too
            pe = self.layout.piece_elems
            self.flat[p * pe:(p + 1) * pe] = src.reshape(-1)
            self.has_raw[p] = True

    def raw_pieces(self) -> int:
        return int(np.count_nonzero(self.lens < 0))

    # --- the writer thread ---------------------------------------------------------------------
    def finish(self, done=None) -> memoryview:
        """Compress the pieces left raw and close the gaps: the whole chunk (header and body).
        ``done(n)``: called after each call that compressed ``n`` pieces (runs of at most
        ``RUN_PIECES``), so the producer sees the writer's backlog shrink as it goes."""
        lay, lens, pe = self.layout, self.lens, self.layout.piece_elems
        cursor, p = self.cursor, self.leading
        while p < lay.n_pieces:
            if lens[p] >= 0:
                s, n = int(self.starts[p]), int(lens[p])
                if s != cursor:
                    self.out[cursor:cursor + n] = self.out[s:s + n]  # overlap: numpy copies safely
                    self.starts[p] = cursor
                cursor += n
                p += 1
                continue
            q = p + 1
            while q < lay.n_pieces and lens[q] < 0 and q - p < RUN_PIECES:
                q += 1
            cursor += lay.compress(self.flat_at + p * pe * lay.itemsize, self.out_at + cursor,
                                   (q - p) * pe, lay.itemsize, lay.block)
            if done is not None:
                done(q - p)
            p = q
        return memoryview(self.out)[:cursor]

    def chunk(self, assembler, rewrite: bool) -> Optional[memoryview]:
        """The writer thread's part: ``finish``, counted in ``assembler.raw_done`` as it goes (the
        producer compresses in put while the writer is behind); None if the chunk is no smaller
        than its frames (stored raw: decoded back first). ``rewrite``: a partial copy of this
        chunk was written, so its raw frames may be needed (decoded too)."""
        payload = self.finish(assembler.count_raw_done)
        incompressible = payload.nbytes >= self.flat.nbytes
        if incompressible or rewrite:
            self.materialize()
        return None if incompressible else payload

    def materialize(self) -> None:
        """Decode the pieces that have no raw copy into the chunk buffer (before ``finish``, or
        after it, whose moves keep ``starts`` right)."""
        lay, pe = self.layout, self.layout.piece_elems
        for p in np.flatnonzero((self.lens >= 0) & ~self.has_raw):
            s, n = int(self.starts[p]), int(self.lens[p])
            body = np.concatenate([np.frombuffer(lay.header, np.uint8), self.out[s:s + n]])
            lay.encoder.decode_into(body, self.flat[p * pe:(p + 1) * pe])
            self.has_raw[p] = True
