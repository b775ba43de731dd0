"""Part files: one of ``n`` writers of a scan, holding the frames of its blocks.

Frames are assigned by block and rank, as Dectris and odin-data deployments do: frame slot ``s`` of
the whole scan belongs to rank ``(s // block_frames) % n``. A part file is an ordinary EMD file
whose stream is a stack of the frames it holds, in scan order; its axis-0 dim vector ``scan_slot``
gives each frame's slot in the whole scan, and the group attributes below say how the parts fit
together (``master.write_master`` reads them to map the parts into one virtual scan).
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from emdstream.format.dims import Dim, dims_to_json

SLOT_DIM = "scan_slot"


@dataclass(frozen=True)
class Part:
    rank: int
    count: int
    block_frames: int

    @classmethod
    def of(cls, part, block_frames) -> Part:
        """From the ``part=(rank, n)``, ``block_frames=`` arguments; ValueError when they are wrong."""
        try:
            rank, count = (int(x) for x in part)
        except (TypeError, ValueError):
            raise ValueError(f"part must be (rank, n), got {part!r}") from None
        if not 0 <= rank < count:
            raise ValueError(f"part=(rank, n) needs 0 <= rank < n, got {part!r}")
        if isinstance(block_frames, bool) or not isinstance(block_frames, (int, np.integer)) \
                or block_frames < 1:
            raise ValueError(f"block_frames must be a positive int with part=, got {block_frames!r}")
        return cls(rank, count, int(block_frames))

    def slots(self, total: int) -> np.ndarray:
        """The scan slots this part holds, in order."""
        starts = np.arange(self.rank * self.block_frames, total, self.count * self.block_frames)
        if not starts.size:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([np.arange(s, min(s + self.block_frames, total)) for s in starts]
                              ).astype(np.int64)

    def stream_dims(self, scan_shape: tuple[int, ...], dims: Sequence[Dim]) -> list[Dim]:
        """The part stack's dims: the slot indices, then the frame axes of the whole scan's dims."""
        slots = self.slots(math.prod(scan_shape))
        return [Dim(SLOT_DIM, "[index]", values=slots)] + list(dims[len(scan_shape):])

    def attrs(self, scan_shape: tuple[int, ...], dims: Sequence[Dim]) -> dict:
        """Group attributes that let a master file place this part's frames."""
        return {"part_rank": np.int64(self.rank), "part_count": np.int64(self.count),
                "block_frames": np.int64(self.block_frames),
                "scan_shape": np.asarray(scan_shape, dtype=np.int64),
                "scan_dims": dims_to_json(dims)}


def read_part(attrs) -> tuple[Part, tuple[int, ...], list[Dim]] | None:
    """(part, scan shape, whole-scan dims) from a data group's attributes, None if not a part."""
    if "part_rank" not in attrs:
        return None
    from emdstream.format.dims import dims_from_json

    part = Part(int(attrs["part_rank"]), int(attrs["part_count"]), int(attrs["block_frames"]))
    scan_dims = attrs["scan_dims"]
    return part, tuple(int(n) for n in attrs["scan_shape"]), dims_from_json(
        scan_dims if isinstance(scan_dims, str) else scan_dims.decode())


def describe(attrs) -> str:
    info = read_part(attrs)
    if info is None:
        return ""
    part, scan, _ = info
    return json.dumps({"rank": part.rank, "of": part.count, "block_frames": part.block_frames,
                       "scan_shape": list(scan)})
