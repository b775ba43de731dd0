"""The command line: ``cli`` (argument parsing, one-line errors), ``info``, ``verify`` (with its
readers check, ``reader_check``), ``preview``, ``simulate``, ``view`` (the live page in a browser:
``view_server``, ``view_streams``, ``view_kinds``, ``view_panels``, ``view_page.html``).

May import every other layer; nothing imports it (``emdstream.__main__``, the console script and
the package face's ``emdstream.view`` aside).
"""
