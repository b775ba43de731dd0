"""pytest configuration; shared helpers live in the ``support`` package (``tests/`` is on the path)."""
