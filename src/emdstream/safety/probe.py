"""HDF5's part of ``recover`` on a file a crash may have damaged, run in a child process.

HDF5 can hang or crash (segfault) on damaged metadata, and one failed open can leave the library
unusable for the rest of the process. So ``recover`` runs these steps here, in a fresh
interpreter under a timeout, and gets one line of JSON back (``run``):

* ``streams PATH``: the names of the streams that still have streaming state;
* ``finalize PATH COMMENT``: finalize them through the journal (``journal.finalize``);
* ``read PATH``: open the file as plain h5py would, walk every chunk index and read the first
  and last block of every dataset (a file of any size answers in seconds).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

TIMEOUT = 120.0  # seconds: far beyond any healthy file of a crashed writer's size


class NoAnswer(ValueError):
    """The child hung or crashed: it says nothing about the file, only that HDF5 gave no answer."""


def run(command: str, path: str, *args: str, timeout: float = TIMEOUT) -> Any:
    """Run a step in a child process; its result, or ValueError with one line saying why not."""
    argv = [sys.executable, "-m", __name__, command, path, *args]
    env = dict(os.environ)  # the child imports this very emdstream, installed or not
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise NoAnswer(f"HDF5 hung reading {path} (no answer in {timeout:.0f} s); "
                         f"nothing more was changed") from None
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        raise NoAnswer(f"HDF5 crashed reading {path} (exit status {out.returncode}); nothing "
                         f"more was changed")
    answer = json.loads(lines[-1])
    if "error" in answer:
        raise ValueError(answer["error"])
    return answer["result"]


def _streams(path: str) -> list[str]:
    import h5py

    from emdstream.format import layout
    from emdstream.safety.h5open import open_h5, require_emd_like

    try:
        f = open_h5(path)
    except OSError as exc:
        raise ValueError(f"HDF5 cannot open {path}: {_first(exc)}; nothing was changed") from None
    with f:
        require_emd_like(f)
        names = layout.stream_names(f)
        for name in names:  # what finalize reads: fail here, not halfway through it
            f[layout.state_path(name)]["committed_slots"][()]
            isinstance(f.get(f"data/{name}/data"), h5py.Dataset)
    return names


def _read(path: str) -> bool:
    import h5py

    from emdstream.format.blocks import iter_blocks

    def visit(_name, obj) -> None:
        if not isinstance(obj, h5py.Dataset):
            return
        if obj.chunks is not None:  # every chunk's index entry
            for i in range(obj.id.get_num_chunks()):
                obj.id.get_chunk_info(i)
        blocks = list(iter_blocks(obj))
        for block in blocks[:1] + blocks[1:][-1:]:  # the data at both ends
            obj[block]

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return True


def _first(exc: BaseException) -> str:
    from emdstream.errors import one_line

    return one_line(exc)


def main(argv: list[str]) -> None:
    import hdf5plugin  # noqa: F401

    from emdstream.safety import journal

    command, path = argv[0], argv[1]
    try:
        if command == "streams":
            result: Any = _streams(path)
        elif command == "finalize":
            result = journal.finalize(path, argv[2])
        else:
            result = _read(path)
    except Exception as exc:  # whatever it is: one line back to recover
        message = str(exc) if isinstance(exc, ValueError) else \
            f"HDF5 cannot read {path}: {_first(exc)}"
        print(json.dumps({"error": message.splitlines()[0] if message else type(exc).__name__}), flush=True)
        return
    print(json.dumps({"result": result}), flush=True)


if __name__ == "__main__":
    sys.stdout.flush()
    main(sys.argv[1:])
    os._exit(0)  # HDF5's shutdown on a damaged file can crash too: the answer is out
