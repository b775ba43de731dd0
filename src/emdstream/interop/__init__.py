"""Other tools' formats and objects: EMD 1.0 (py4DSTEM), ``convert``, HyperSpy signals,
py4DSTEM DataCubes.

May import: ``emdstream.read``, ``emdstream.write`` and everything below them; never
``emdstream.parallel`` or ``emdstream.tools``.
"""
