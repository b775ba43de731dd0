"""Ctrl-C held back while a producer takes a place in the queue and hands its chunk over.

A producer may write its encoded chunk in its own thread (``WriterThread.write_now``): a direct
chunk write, the chunk log's note, the value rows and the count, several steps. A KeyboardInterrupt
between them, or between taking a place in the queue and using it, left a chunk in the file that
nothing counted, or failed the writer, or kept the place for ever so that the next puts waited
for good (tests/write/test_interrupted_waits.py). Python runs signal handlers in the main thread
only, between bytecodes; so while the main thread is in such a step, the SIGINT handler (if it is
Python's) is swapped for one that only notes the signal, and the original runs at the end, or at
once (``raise_if_caught``) where a wait has taken nothing yet. The C-level ``_signal`` functions:
the ``signal`` module's wrappers cost 7 µs a swap, these 0.4.
"""
from __future__ import annotations

import _signal
import threading

_SIGINT = 2


class HeldInterrupts:
    """``with HeldInterrupts() as held:`` a SIGINT in the block raises (KeyboardInterrupt) at its
    end, or where ``held.raise_if_caught()`` is called."""

    __slots__ = ("_handler", "_caught")

    def __enter__(self) -> HeldInterrupts:
        self._handler = None
        self._caught = False
        if threading.current_thread() is threading.main_thread():
            handler = _signal.getsignal(_SIGINT)
            if callable(handler):  # not SIG_IGN / SIG_DFL (those act outside Python)
                _signal.signal(_SIGINT, self._note)
                self._handler = handler
        return self

    def _note(self, signum, frame) -> None:
        self._caught = True

    def raise_if_caught(self) -> None:
        """Give the handler back; a SIGINT noted so far raises now."""
        handler, self._handler = self._handler, None
        if handler is not None:
            _signal.signal(_SIGINT, handler)
            if self._caught:
                handler(_SIGINT, None)

    def __exit__(self, *exc) -> None:
        self.raise_if_caught()
