"""emdstream: stream detector frames into EMD v0.2 (HDF5) files while they are produced.

    with EMDWriter("scan.emd", frame_shape=(256, 256), dtype="uint16", scan_shape=(128, 128)) as w:
        for frame in detector:
            w.put(frame)
    f = emdstream.open("scan.emd")

The public API is this namespace (``__all__``) plus ``emdstream.encoders``; the subpackages are the
layers, each importing only those below it (``pyproject.toml``'s import-linter contract):
``tools`` (command line) -> ``parallel`` (part files, master, Dask) | ``interop`` (EMD 1.0,
HyperSpy, py4DSTEM, convert) -> ``write`` (the data path) | ``read`` (finished and live files) ->
``safety`` (locks, superblock, journal, recover) -> ``format`` (what an EMD file holds) ->
``encoders`` (chunk codecs) -> ``errors``.
"""
from emdstream.errors import EMDStreamError, QueueFullError, WriterClosedError, WriterError, WriterFullError
from emdstream.format.dims import Dim
from emdstream.parallel.dask_sink import write_dask  # imports dask only when called
from emdstream.parallel.master import write_master
from emdstream.read.dataset import EMDDataset
from emdstream.read.file import EMDFile, open
from emdstream.safety.recover import RecoveryReport, recover
from emdstream.tools.view import view  # the live page in a browser (Jupyter: an IFrame)
from emdstream.write.acquisition import Acquisition
from emdstream.write.counted import CountedStream
from emdstream.write.stream import Stream, StreamWriter
from emdstream.write.writer import EMDWriter

__version__ = "0.1.0"

__all__ = ["Acquisition", "CountedStream", "Dim", "EMDDataset", "EMDFile", "EMDStreamError", "EMDWriter",
           "QueueFullError", "RecoveryReport", "Stream", "StreamWriter", "WriterClosedError",
           "WriterError", "WriterFullError", "open", "recover", "view", "write_dask", "write_master",
           "__version__"]
