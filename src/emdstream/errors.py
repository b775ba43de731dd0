"""Exceptions raised to the producer."""


class EMDStreamError(Exception):
    """Base class of emdstream's own errors."""


class WriterError(EMDStreamError):
    """The writer thread failed (disk full, file removed, ...); ``__cause__`` holds the original."""


class WriterClosedError(EMDStreamError):
    """``put`` or ``comment`` on a writer that is closed."""


class QueueFullError(EMDStreamError):
    """``put`` with ``on_full="raise"`` while the queue is full; the frame was not accepted."""


class WriterFullError(EMDStreamError):
    """``put`` after all pre-allocated frames (``n_frames`` or the whole scan) were put."""


def one_line(exc: BaseException) -> str:
    """The first line of an exception message (HDF5 messages span several lines)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def install_hint(requirement: str, extra: str | None = None) -> str:
    """How to install an optional dependency, in a form that works wherever the user is: the
    package itself from the index (quoted for shells like zsh), or emdstream's extra from a
    checkout (emdstream is not on PyPI)."""
    hint = f"pip install '{requirement}'" if "[" in requirement else f"pip install {requirement}"
    return hint + (f" (or, in the emdstream checkout, pip install '.[{extra}]')" if extra else "")
