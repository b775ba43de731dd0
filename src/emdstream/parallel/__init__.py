"""Past one process: part files, the VDS master that joins them, ``write_dask``.

May import: ``emdstream.write``, ``emdstream.read`` and everything below them; never
``emdstream.interop`` or ``emdstream.tools``.
"""
