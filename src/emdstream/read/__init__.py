"""Reading finished and live EMD files: ``emdstream.open`` -> ``EMDFile`` -> ``EMDDataset``.

May import: ``emdstream.safety``, ``emdstream.format``, ``emdstream.encoders``,
``emdstream.errors``; never ``emdstream.write``. The one exception upward: ``to_hyperspy`` and
``to_py4dstem`` import their ``emdstream.interop`` adapter when called.
"""
