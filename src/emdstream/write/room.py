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
from typing import Optional


class Room:
    """A fixed number of places (a counting semaphore): ``take`` one, ``give`` it back."""

    def __init__(self, places: int):
        self._places: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(places):
            self._places.put(None)

    def take(self, timeout: Optional[float] = None) -> bool:
        """A place, waiting up to ``timeout`` seconds (0: not at all, None: as long as it takes);
        False if none came."""
        try:
            if timeout == 0:
                self._places.get_nowait()
            else:
                self._places.get(timeout=timeout)
        except queue.Empty:
            return False
        return True

    def give(self) -> None:
        self._places.put(None)


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
