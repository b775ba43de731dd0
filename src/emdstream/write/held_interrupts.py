"""Ctrl-C held back while a producer changes what it shares with the writer thread.

A put takes a buffer or a place in the queue, copies a frame in, counts the slot, hands a full
chunk over, and may write an encoded chunk itself (``WriterThread.write_now``): several steps of
Python. A KeyboardInterrupt between two of them lost the buffer or the place for good (the next
puts then waited for ever), left a chunk in the file that nothing counted, failed the writer, or
(counted streams) gave a slot's events without its slot (tests/write/test_interrupted_waits.py).

Python runs signal handlers in the main thread only, between bytecodes. So a put in the main
thread that finds a SIGINT handler it has not seen before puts a guard in front of it, if that is
Python's (e.g. the default KeyboardInterrupt) and not guarded yet. The guard only notes a SIGINT
while the main thread is inside a put, and calls the wrapped handler otherwise; the noted one is
handed to it when the outermost put ends, or at once where a wait has taken nothing yet
(``raise_if_caught``). A handler the program sets later is wrapped at the next put; closing the
last writer gives the program its handler back (``uninstall``).

Another signal's Python handler that raises inside a hold's exit: after the count went down, the
noted SIGINT is raised there (``finally``) or, if the exception lands in that ``finally``, at the
start of the next hold, before it takes anything. Before the count went down (on its very line),
the count stays up and SIGINTs stay held from then on: pure Python cannot make the exit atomic
against such handlers (blocking signals would cost two syscalls a put).
"""
from __future__ import annotations

import _signal  # the C functions: signal.getsignal converts to an enum, ~1 µs a put more
import os
import threading
from threading import get_ident

_SIGINT = 2


class _Held:
    main = threading.main_thread().ident  # the thread where Python runs signal handlers
    depth = 0          # puts entered and not left, in the main thread
    seen = None        # the SIGINT handler the last put found (a guard, usually)
    caught = False     # a SIGINT came while depth > 0


def _guarding(wrapped):
    """The guard in front of ``wrapped`` (one per handler, so a program that saves and restores
    the handler gets the right one back)."""
    def guard(signum, frame) -> None:
        if _Held.depth:
            _Held.caught = True
        else:
            wrapped(signum, frame)
    guard.emdstream_wraps = wrapped
    return guard


def _raise_caught() -> None:
    handler = _signal.getsignal(_SIGINT)
    handler = getattr(handler, "emdstream_wraps", handler)
    _Held.caught = False  # last before the handler: nothing between that could lose the SIGINT
    if callable(handler):
        handler(_SIGINT, None)
    elif handler == _signal.SIG_DFL:  # set by the program meanwhile: what SIGINT does now
        _signal.raise_signal(_SIGINT)


def uninstall() -> None:
    """No writer open any more: give the program its own SIGINT handler back (so that, e.g.,
    ``asyncio.run`` sees the default handler and installs its own)."""
    if get_ident() == _Held.main and not _Held.depth:
        handler = _signal.getsignal(_SIGINT)
        wrapped = getattr(handler, "emdstream_wraps", None)
        if wrapped is not None:
            _signal.signal(_SIGINT, wrapped)


def _after_fork_in_child() -> None:
    """A child forked while the main thread was inside a put (from another thread) starts
    outside any put, with the forking thread as its main thread."""
    _Held.main = threading.main_thread().ident
    _Held.depth, _Held.caught = 0, False


class HeldInterrupts:
    """``with held_interrupts:`` a SIGINT in the block raises (KeyboardInterrupt) when the
    outermost such block ends, or where ``held_interrupts.raise_if_caught()`` is called. One
    instance, no state of its own: enter and exit happen in the same thread. Per put: a thread
    comparison, the handler compared with the one seen last, a count."""

    __slots__ = ()

    def __enter__(self) -> HeldInterrupts:
        if get_ident() == _Held.main:
            if not _Held.depth:
                if _Held.caught:  # left noted by an exit that another signal's handler cut short
                    _raise_caught()
                if _signal.getsignal(_SIGINT) is not _Held.seen:
                    _guard_handler()
            _Held.depth += 1
        return self

    @staticmethod
    def raise_if_caught() -> None:
        """A SIGINT noted so far raises now (in the main thread: it is the main thread's)."""
        if _Held.caught and get_ident() == _Held.main:
            _raise_caught()

    def __exit__(self, *exc) -> None:
        if get_ident() == _Held.main:
            try:
                _Held.depth -= 1
            finally:  # another signal's handler raising on the count's line: still raised here
                if _Held.caught and not _Held.depth:
                    _raise_caught()


def _guard_handler() -> None:
    """Put the guard in front of the SIGINT handler, if that is Python's (not SIG_IGN / SIG_DFL)
    and not guarded yet; remember what stands there now."""
    handler = _signal.getsignal(_SIGINT)
    if callable(handler) and not hasattr(handler, "emdstream_wraps"):
        handler = _guarding(handler)
        _signal.signal(_SIGINT, handler)
    _Held.seen = handler


held_interrupts = HeldInterrupts()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
