"""emdstream: stream detector frames into EMD v0.2 (HDF5) files while they are produced.

    with EMDWriter("scan.emd", frame_shape=(256, 256), dtype="uint16", scan_shape=(128, 128)) as w:
        for frame in detector:
            w.put(frame)
    f = emdstream.open("scan.emd")
"""
from .acquisition import Acquisition
from .dask_sink import write_dask  # imports dask only when called
from .dims import Dim
from .errors import EMDStreamError, QueueFullError, WriterClosedError, WriterError, WriterFullError
from .master import write_master
from .reader import EMDDataset, EMDFile, open
from .recover import RecoveryReport, recover
from .stream import Stream, StreamWriter
from .writer import EMDWriter

__version__ = "0.1.0"

__all__ = ["Acquisition", "Dim", "EMDDataset", "EMDFile", "EMDStreamError", "EMDWriter",
           "QueueFullError", "RecoveryReport", "Stream", "StreamWriter", "WriterClosedError",
           "WriterError", "WriterFullError", "open", "recover", "write_dask", "write_master",
           "__version__"]
