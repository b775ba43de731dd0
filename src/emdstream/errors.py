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
