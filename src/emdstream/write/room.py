"""Waiting for room in a way a Ctrl-C cannot break.

``threading.Semaphore`` and ``threading.Condition`` run Python code around their lock, so a
KeyboardInterrupt (or any exception a signal handler raises) landing between their steps can leave
that lock held; the writer thread's next ``release`` then hangs and ``close()`` never returns
(tests/write/test_interrupted_waits.py finds it within seconds). Every wait of a producer for the
writer thread goes through these instead: they wait inside C (``queue.SimpleQueue``), where an
interrupted wait takes nothing.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Optional


class Room:
    """A fixed number of places (a counting semaphore): ``take`` one, ``give`` it back. The count
    lives under a plain lock (``with`` on a C lock cannot leave it held); a waiter sleeps inside
    ``SimpleQueue.get`` and is woken by a token per place given while someone waits. Creating one
    costs the same for any number of places (a stream of small frames has a million)."""

    def __init__(self, places: int):
        self._lock = threading.Lock()
        self._free = places
        self._sleepers = 0  # waiters in _wakes.get
        self._tokens = 0    # wake-up tokens put and not yet taken
        self._wakes: queue.SimpleQueue = queue.SimpleQueue()

    def take(self, timeout: Optional[float] = None) -> bool:
        """A place, waiting up to ``timeout`` seconds (0: not at all, None: as long as it takes);
        False if none came."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                if self._free:
                    self._free -= 1
                    return True
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._sleepers += 1
            woken = False
            try:
                self._wakes.get(timeout=left)
                woken = True
            except queue.Empty:
                pass
            finally:
                with self._lock:
                    self._sleepers -= 1
                    self._tokens -= woken
                    if not self._sleepers:  # the count stays true whatever cut a wait short
                        self._tokens = self._wakes.qsize()

    def give(self) -> None:
        with self._lock:
            self._free += 1
            wake = self._sleepers > self._tokens
            if wake:
                self._tokens += 1
        if wake:
            self._wakes.put(None)


class Signal:
    """Wakes one waiter when something changed (a waiter rechecks its condition itself)."""

    def __init__(self):
        self._wakes: queue.SimpleQueue = queue.SimpleQueue()
        self.waiting = False  # set by a waiter before it waits: only then is a wake queued

    def wait(self, timeout: float) -> None:
        try:
            self._wakes.get(timeout=timeout)
        except queue.Empty:
            pass

    def wake(self) -> None:
        if self.waiting:
            self.waiting = False
            self._wakes.put(None)
