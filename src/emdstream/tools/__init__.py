"""The command line: ``cli`` (argument parsing, one-line errors), ``info``, ``verify`` (with its
readers check, ``reader_check``), ``preview``, ``simulate``.

May import every other layer; nothing imports it (``emdstream.__main__`` and the console script
aside).
"""
