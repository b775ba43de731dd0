"""Real kills at syscall boundaries: strace's fault injection (``-e inject=SYSCALL:signal=SIGKILL:
when=N``) kills a process as it enters its N-th call of SYSCALL (counted per thread), so everything
before that call reached the kernel and nothing after it."""
from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
from typing import Optional

KILL_SYSCALLS = ("pwrite64", "fsync", "rename", "ftruncate", "unlink")
_CALL = re.compile(r"^(\d+)\s+(?:<\.\.\. )?(\w+)[( ]")


def count_calls(argv: list[str], log_path: str, env: Optional[dict] = None,
                timeout: float = 120) -> tuple[dict[str, int], str]:
    """One run without kills: the most calls of each of ``KILL_SYSCALLS`` one thread made (what
    ``when=N`` can reach), and the program's stdout."""
    cmd = ["strace", "-f", "-qq", "-o", log_path, "-e", f"trace={','.join(KILL_SYSCALLS)}", *argv]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    per_thread: collections.Counter = collections.Counter()
    for line in open(log_path):
        m = _CALL.match(line)
        if m and "resumed>" not in line:
            per_thread[(m.group(1), m.group(2))] += 1
    most: dict[str, int] = {s: 0 for s in KILL_SYSCALLS}
    for (_, syscall), n in per_thread.items():
        most[syscall] = max(most[syscall], n)
    return most, out.stdout


def kill_at(argv: list[str], syscall: str, n: int, env: Optional[dict] = None,
            timeout: float = 120) -> tuple[bool, str]:
    """Run ``argv``, killed (SIGKILL) as it enters its ``n``-th ``syscall``: (killed, stdout)."""
    cmd = ["strace", "-f", "-qq", "-o", os.devnull, "-e", f"trace={syscall}",
           "-e", f"inject={syscall}:signal=SIGKILL:when={n}", *argv]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    return out.returncode in (137, -9), out.stdout


def durable_from(stdout: str) -> dict[str, int]:
    """The last ``durable STREAM N`` line per stream a workload printed."""
    seen: dict[str, int] = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "durable":
            seen[parts[1]] = max(seen.get(parts[1], 0), int(parts[2]))
    return seen


def check_in_fresh_process(checker: str, path: str, kind: str, durable: dict[str, int],
                           allow_loss: bool = False, timeout: float = 300) -> dict:
    """Run the pass rule (``checker``: crash_check.py) on ``path`` in a new interpreter;
    ``allow_loss``: durable frames may be missing (a power cut without fsync)."""
    try:
        out = subprocess.run([sys.executable, checker, path, kind, json.dumps(durable),
                              "allow-loss" if allow_loss else "strict"],
                             capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "problems": [f"the check hung (> {timeout} s)"], "recover": ""}
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"ok": False, "problems": [f"the check crashed (exit {out.returncode}): "
                                          f"{out.stderr.strip()[-400:]}"], "recover": ""}
