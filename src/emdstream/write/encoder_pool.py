"""A pool of daemon threads that assemble and compress chunks on all cores.

The codecs release the GIL, so threads compress in parallel. The threads are daemons fed by a
plain queue (not ``concurrent.futures.ThreadPoolExecutor``, which refuses work once interpreter
shutdown begins), so a writer that is closed from an ``atexit`` hook can still finish its chunks.
"""
from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Optional


class EncoderPool:
    """Runs ``fn(*args)`` jobs on ``workers`` daemon threads, returning Futures."""

    def __init__(self, workers: Optional[int] = None, name: str = "emdstream-encoder"):
        self.workers = workers or os.cpu_count() or 1
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True)
                         for i in range(self.workers)]
        for t in self._threads:
            t.start()

    def submit(self, fn: Callable, *args) -> Future:
        fut: Future = Future()
        self._jobs.put((fut, fn, args))
        return fut

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fut, fn, args = job
            if not fut.set_running_or_notify_cancel():  # cancelled after a writer error
                continue
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:  # reaches the writer thread via the future
                fut.set_exception(exc)

    def shutdown(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        for t in self._threads:
            if t is not threading.current_thread():
                t.join()
