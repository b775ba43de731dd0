"""A power-cut simulator in the style of ALICE (OSDI 2014) and CrashMonkey (OSDI 2018).

One run of a program is recorded with strace (every write, sync, rename, truncate and unlink of
the files of one directory, with the bytes written), parsed into an operation log, and the files
rebuilt as a disk could hold them after a power cut at any operation boundary:

* writes (and truncations) to a file before its last ``fsync`` are on disk; later ones may or may
  not be: all dropped, all kept, an in-order prefix, each single one dropped, random subsets, or the
  last one torn at 4 KiB pages;
* names (create, rename, unlink; a rename over an existing name is one atomic operation, as
  rename(2) is) are on disk once their directory was fsynced; under the *ext4*
  model an fsync of any file also commits them (one journal transaction), under the *posix* model
  only the directory's fsync does.

``replay(log, len(log.ops), keep_all)`` must give the real files byte for byte (``self_check``).
"""
from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Optional

PAGE = 4096
TRACED = ("pwrite64,write,lseek,fsync,fdatasync,rename,renameat,renameat2,ftruncate,unlink,"
          "unlinkat,openat,close")
MODELS = ("ext4", "posix")
_LINE = re.compile(r"^(\d+)\s+(.*)$")
_CALL = re.compile(r"^(\w+)\((.*)\)\s+=\s+(-?\d+|\?)(.*)$")
_STR = re.compile(r'"((?:\\x[0-9a-f]{2})*)"')
_MARK = re.compile(rb"durable (\S+) (\d+)")


def strace_available() -> Optional[str]:
    """None if strace can trace here, else why not (no strace, ptrace forbidden)."""
    if shutil.which("strace") is None:
        return "strace is not installed (Debian: apt-get install strace)"
    try:
        out = subprocess.run(["strace", "-f", "-qq", "-o", os.devnull, "-e", "trace=getpid",
                              "true"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"strace cannot run: {exc}"
    if out.returncode != 0:
        return f"strace cannot trace here (ptrace refused?): {out.stderr.strip()[:200]}"
    return None


def record(argv: list[str], log_path: str, env: Optional[dict] = None,
           timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``argv`` under strace, writing the raw trace (all strings in hex) to ``log_path``."""
    cmd = ["strace", "-f", "-qq", "-xx", "-s", str(1 << 24), "-o", log_path, "-e",
           f"trace={TRACED}", *argv]
    return subprocess.run(cmd, capture_output=True, timeout=timeout, env=env)


@dataclass
class Op:
    kind: str          # write | truncate | fsync | dirsync | create | rename | unlink | mark
    inode: int = -1
    offset: int = 0
    data: bytes = b""
    size: int = 0
    path: str = ""
    dest: str = ""
    stream: str = ""
    count: int = 0

    def describe(self) -> str:
        if self.kind == "write":
            return f"write ino{self.inode} [{self.offset}, {self.offset + len(self.data)})"
        if self.kind == "truncate":
            return f"truncate ino{self.inode} to {self.size}"
        if self.kind in ("fsync",):
            return f"fsync ino{self.inode}"
        if self.kind == "mark":
            return f"(writer reports {self.stream}: {self.count} durable)"
        if self.kind == "rename":
            return f"rename {os.path.basename(self.path)} -> {os.path.basename(self.dest)}"
        return f"{self.kind} {os.path.basename(self.path)}"


@dataclass
class OpLog:
    folder: str
    ops: list[Op] = field(default_factory=list)

    def durable_at(self, boundary: int) -> dict[str, int]:
        """What the writer had reported durable before the ops from ``boundary`` on."""
        seen: dict[str, int] = {}
        for op in self.ops[:boundary]:
            if op.kind == "mark":
                seen[op.stream] = max(seen.get(op.stream, 0), op.count)
        return seen


def _hex(s: str) -> bytes:
    return bytes.fromhex(s.replace("\\x", ""))


def parse(log_path: str, folder: str) -> OpLog:
    """The operation log of the files directly in ``folder`` (plus ``durable`` marks the program
    wrote to stdout) from a trace ``record`` wrote."""
    folder = os.path.abspath(folder)
    log = OpLog(folder)
    fds: dict[int, tuple[str, int]] = {}    # fd -> (path it was opened as, inode or -1 for a dir)
    names: dict[str, int] = {}              # path -> inode (the program's view)
    pos: dict[int, int] = {}
    pending: dict[str, str] = {}
    inodes = iter(range(1, 1 << 30))
    for raw in open(log_path, encoding="latin-1"):
        m = _LINE.match(raw.rstrip("\n"))
        if not m:
            continue
        tid, text = m.groups()
        if text.endswith("<unfinished ...>"):
            pending[tid] = text[: -len("<unfinished ...>")].rstrip()
            continue
        if text.startswith("<..."):
            text = pending.pop(tid, "") + text.split("resumed>", 1)[1]
        call = _CALL.match(text)
        if not call or call.group(3) == "?" or int(call.group(3)) < 0:
            continue
        name, args, ret = call.group(1), call.group(2), int(call.group(3))
        strs = [_hex(s) for s in _STR.findall(args)]
        plain = _STR.sub('""', args).split(", ")
        fd = _fd(plain[0])
        if name == "openat":
            path = os.path.normpath(strs[0].decode(errors="replace"))
            if os.path.dirname(path) == folder or path == folder:
                if path == folder:
                    fds[ret] = (path, -1)
                    continue
                if path not in names and "O_CREAT" in args:
                    names[path] = next(inodes)
                    log.ops.append(Op("create", names[path], path=path))
                elif path in names and "O_TRUNC" in args:
                    log.ops.append(Op("truncate", names[path], size=0))
                if path in names:
                    fds[ret] = (path, names[path])
                    pos[ret] = 0
        elif name == "close":
            fds.pop(fd, None)
        elif name in ("write", "pwrite64") and fd in fds:
            inode = fds[fd][1]
            data = strs[0][:ret]
            offset = int(plain[-1]) if name == "pwrite64" else pos[fd]
            if name == "write":
                pos[fd] += ret
            log.ops.append(Op("write", inode, offset=offset, data=data))
        elif name == "write" and fd == 1 and strs:
            for stream, count in _MARK.findall(strs[0][:ret]):
                log.ops.append(Op("mark", stream=stream.decode(), count=int(count)))
        elif name == "lseek" and fd in pos:
            pos[fd] = ret
        elif name in ("fsync", "fdatasync") and fd in fds:
            path, inode = fds[fd]
            log.ops.append(Op("dirsync", path=path) if inode < 0 else Op("fsync", inode))
        elif name == "ftruncate" and fd in fds:
            log.ops.append(Op("truncate", fds[fd][1], size=int(plain[1])))
        elif name.startswith("rename") and len(strs) >= 2:
            src, dst = (os.path.normpath(s.decode(errors="replace")) for s in strs[:2])
            if src in names:  # one operation, also when it replaces dst: after a power cut dst
                names.pop(dst, None)  # names the old file or the new one, never none
                names[dst] = names.pop(src)
                log.ops.append(Op("rename", names[dst], path=src, dest=dst))
        elif name.startswith("unlink") and strs:
            path = os.path.normpath(strs[0].decode(errors="replace"))
            if path in names:
                log.ops.append(Op("unlink", names.pop(path), path=path))
    return log


def _fd(arg: str) -> int:
    m = re.match(r"(-?\d+)", arg)
    return int(m.group(1)) if m else -999


# --- crash states ----------------------------------------------------------------------------
def unsynced(log: OpLog, boundary: int, model: str) -> list[int]:
    """Indices of the operations before ``boundary`` that a power cut there may lose."""
    ops = log.ops[:boundary]
    out = []
    synced_after: dict[int, int] = {}  # inode -> index of its last fsync
    last_dirsync = last_anysync = -1
    for i, op in enumerate(ops):
        if op.kind == "fsync":
            synced_after[op.inode] = i
            last_anysync = i
        elif op.kind == "dirsync":
            last_dirsync = i
    for i, op in enumerate(ops):
        if op.kind in ("write", "truncate"):
            if synced_after.get(op.inode, -1) < i:
                out.append(i)
        elif op.kind in ("create", "rename", "unlink"):
            commit = max(last_dirsync, last_anysync) if model == "ext4" else last_dirsync
            if model == "ext4" and op.kind == "create":
                commit = max(commit, synced_after.get(op.inode, -1))
            if commit < i:
                out.append(i)
    return out


def replay(log: OpLog, boundary: int, keep: Callable[[int], bool],
           tear: Optional[tuple[int, set[int]]] = None) -> dict[str, bytes]:
    """The files (path -> bytes) after a power cut before op ``boundary``: ops for which
    ``keep(i)`` is false never reached the disk; ``tear=(i, pages)`` keeps only those 4 KiB
    pages (file pages) of write ``i``."""
    content: dict[int, bytearray] = {}
    where: dict[str, int] = {}
    for i, op in enumerate(log.ops[:boundary]):
        if op.kind in ("mark", "fsync", "dirsync") or not keep(i):
            continue
        if op.kind == "create":
            where[op.path] = op.inode
            content.setdefault(op.inode, bytearray())
        elif op.kind == "rename":
            inode = where.pop(op.path, None)
            if inode is not None:
                where[op.dest] = inode
        elif op.kind == "unlink":
            if where.get(op.path) == op.inode:
                del where[op.path]
        elif op.kind == "truncate":
            buf = content.setdefault(op.inode, bytearray())
            del buf[op.size:]
            buf.extend(bytes(op.size - len(buf)))
        elif op.kind == "write":
            buf = content.setdefault(op.inode, bytearray())
            pieces = [(op.offset, op.data)]
            if tear is not None and tear[0] == i:
                pieces = [(max(op.offset, p * PAGE), op.data[max(0, p * PAGE - op.offset):
                                                               (p + 1) * PAGE - op.offset])
                          for p in sorted(tear[1])]
            for at, data in pieces:
                if len(buf) < at:
                    buf.extend(bytes(at - len(buf)))
                buf[at:at + len(data)] = data
    return {path: bytes(content[inode]) for path, inode in where.items()}


@dataclass
class CrashState:
    boundary: int
    model: str
    kind: str
    files: dict[str, bytes]
    durable: dict[str, int]

    def key(self) -> str:
        h = hashlib.sha256(repr(sorted(self.durable.items())).encode())
        for path in sorted(self.files):
            h.update(path.encode() + b"\0" + hashlib.sha256(self.files[path]).digest())
        return h.hexdigest()


def crash_states(log: OpLog, seed: int = 0, subsets: int = 2,
                 boundaries: Optional[list[int]] = None) -> Iterator[CrashState]:
    """Crash states at every boundary (or those given), both models, every kind; duplicates
    (same files, same durable counts) are given once."""
    rng = random.Random(seed)
    seen: set[str] = set()
    for b in boundaries if boundaries is not None else range(len(log.ops) + 1):
        durable = log.durable_at(b)
        for model in MODELS:
            lost = unsynced(log, b, model)
            for kind, keep, tear in _variants(log, lost, rng, subsets):
                state = CrashState(b, model, kind, replay(log, b, keep, tear), durable)
                k = state.key()
                if k not in seen:
                    seen.add(k)
                    yield state


def _variants(log: OpLog, lost: list[int], rng: random.Random, subsets: int):
    lost_set = set(lost)
    yield "all-kept", (lambda i: True), None
    if not lost:
        return
    yield "all-dropped", (lambda i: i not in lost_set), None
    cut = rng.randrange(len(lost))
    prefix = set(lost[cut:])
    yield f"prefix-{cut}", (lambda i: i not in prefix), None
    for j in lost:
        yield f"dropped-op{j}", (lambda i, j=j: i != j), None
    for n in range(subsets):
        gone = {i for i in lost if rng.random() < 0.5}
        yield f"subset-{n}", (lambda i, gone=gone: i not in gone), None
    writes = [i for i in lost if log.ops[i].kind == "write" and len(log.ops[i].data) > 0]
    for i in writes[-3:]:
        op = log.ops[i]
        pages = list(range(op.offset // PAGE, (op.offset + len(op.data) - 1) // PAGE + 1))
        keep_pages = {p for p in pages if rng.random() < 0.5}
        if len(pages) > 1 and 0 < len(keep_pages) < len(pages):
            yield f"torn-op{i}", (lambda _i: True), (i, keep_pages)


def materialize(state: CrashState, into: str, folder: str) -> None:
    """Write a state's files into ``into`` under their names in the recorded ``folder``."""
    os.makedirs(into, exist_ok=True)
    for path, data in state.files.items():
        with open(os.path.join(into, os.path.relpath(path, folder)), "wb") as fh:
            fh.write(data)


def self_check(log: OpLog) -> list[str]:
    """Replaying everything must give the real files byte for byte: the differences, if any."""
    files = replay(log, len(log.ops), lambda i: True)
    problems = []
    real = {os.path.join(log.folder, n) for n in os.listdir(log.folder)}
    for path in sorted(real | set(files)):
        if not os.path.isfile(path) and path not in files:
            continue
        if path not in files:
            problems.append(f"{path}: on disk, not in the replay")
        elif not os.path.exists(path):
            problems.append(f"{path}: in the replay, not on disk")
        elif open(path, "rb").read() != files[path]:
            problems.append(f"{path}: replay differs from the real file")
    return problems


def last_ops(log: OpLog, boundary: int, n: int = 8) -> str:
    return "; ".join(f"#{i} {op.describe()}" for i, op in
                     list(enumerate(log.ops))[max(0, boundary - n):boundary])
