"""The HDF5 superblock's file-consistency flags, which a killed SWMR writer leaves set.

HDF5 refuses to open such a file read-write ("file is already open for write ... use h5clear"),
and h5py offers no way to clear them. This module does what ``h5clear -s`` does for the
version 2/3 superblocks that 1.10-format files use: zero the flags byte and rewrite the
superblock's Jenkins lookup3 checksum (the ``H5_checksum_lookup3`` of HDF5's H5checksum.c).
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass

SIGNATURE = b"\x89HDF\r\n\x1a\n"
_MASK = 0xFFFFFFFF


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _MASK


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    # lookup3's mix(): six rounds "a -= c; a ^= rot(c, r); c += b", the roles cycling a -> b -> c
    for r in (4, 6, 8, 16, 19, 4):
        a = ((a - c) & _MASK) ^ _rot(c, r)
        c = (c + b) & _MASK
        a, b, c = b, c, a
    return a, b, c


def _final(a: int, b: int, c: int) -> int:
    # lookup3's final(): seven rounds "c ^= b; c -= rot(b, r)", the roles cycling c -> a -> b
    for r in (14, 11, 25, 16, 4, 14, 24):
        c = ((c ^ b) - _rot(b, r)) & _MASK
        a, b, c = b, c, a
    return b  # seven role shifts: the variable in b's place holds c


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle``, as HDF5 uses it for metadata checksums."""
    a = b = c = (0xDEADBEEF + len(data) + initval) & _MASK
    pos = 0
    while len(data) - pos > 12:
        x, y, z = struct.unpack_from("<III", data, pos)
        a, b, c = _mix((a + x) & _MASK, (b + y) & _MASK, (c + z) & _MASK)
        pos += 12
    if pos == len(data):
        return c
    x, y, z = struct.unpack("<III", data[pos:].ljust(12, b"\0"))
    return _final((a + x) & _MASK, (b + y) & _MASK, (c + z) & _MASK)


def _find_superblock(fh) -> int:
    size = os.fstat(fh.fileno()).st_size
    offset = 0
    while offset < size:
        fh.seek(offset)
        if fh.read(8) == SIGNATURE:
            return offset
        offset = 512 if offset == 0 else offset * 2
    raise ValueError("no HDF5 superblock found: not an HDF5 file")


@dataclass
class Superblock:
    offset: int        # where the superblock starts (0, 512, 1024, ...)
    version: int
    flags: int         # file-consistency flags: non-zero while (or since) a writer has it open
    eof: int           # the end-of-file address HDF5 recorded, relative to ``offset``
    offset_size: int = 8


def read_superblock(path: str | os.PathLike) -> Superblock:
    """The superblock's version, flags and end-of-file address; ValueError when there is no HDF5
    superblock or (version 2/3) its checksum does not match: a damaged file."""
    with open(path, "rb") as fh:
        base = _find_superblock(fh)
        fh.seek(base)
        head = fh.read(12)
        if len(head) < 12:
            raise ValueError(f"{os.fspath(path)}: HDF5 superblock cut short")
        version, size_of_offsets, flags = head[8], head[9], head[11]
        if version < 2:
            return Superblock(base, version, 0, 0)
        if size_of_offsets not in (4, 8):
            raise ValueError(f"{os.fspath(path)}: damaged HDF5 superblock (offset size "
                             f"{size_of_offsets})")
        fh.seek(base)
        body = fh.read(12 + 4 * size_of_offsets + 4)
        if len(body) < 16 + 4 * size_of_offsets or \
                lookup3(body[:-4]) != struct.unpack("<I", body[-4:])[0]:
            raise ValueError(f"{os.fspath(path)}: damaged HDF5 superblock (checksum mismatch); "
                             f"nothing was changed")
        fmt = {4: "<I", 8: "<Q"}[size_of_offsets]
        eof = struct.unpack_from(fmt, body, 12 + 2 * size_of_offsets)[0]
        return Superblock(base, version, flags, eof, size_of_offsets)


def clear_consistency_flags(path: str | os.PathLike) -> bool:
    """Clear the flags a killed writer left set; True if anything changed.

    Also makes the end-of-file address the superblock records match the file, as ``h5clear -i``
    does: a file shorter than it (the last allocation before the kill was not yet written) is
    extended; a longer one (a killed flush wrote metadata past the recorded end, which HDF5
    would refuse to read: "addr overflow") gets its end recorded.
    ValueError (nothing changed) for a damaged superblock.
    """
    sb = read_superblock(path)
    if sb.version < 2:
        return False
    changed = False
    with open(path, "r+b") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < sb.offset + sb.eof:
            fh.truncate(sb.offset + sb.eof)
            changed = True
        fh.seek(sb.offset)
        body = bytearray(fh.read(12 + 4 * sb.offset_size))
        at = 12 + 2 * sb.offset_size
        if size > sb.offset + sb.eof:  # a killed flush wrote metadata past the recorded end
            body[at:at + sb.offset_size] = (size - sb.offset).to_bytes(sb.offset_size, "little")
            changed = True
        if sb.flags:
            body[11] = 0
            changed = True
        if changed:
            fh.seek(sb.offset)
            fh.write(bytes(body) + struct.pack("<I", lookup3(bytes(body))))
        fh.flush()
        os.fsync(fh.fileno())
    return changed

