"""The data path: producer -> chunk buffers -> one queue -> writer thread -> encoders -> file.

Modules: ``acquisition`` (a file of several streams, its creation, close and fork rules),
``stream`` (``Stream``, and ``StreamWriter``, the producer's side of one stream), ``session`` (the
narrow handle a stream has on its file), ``writer`` (``EMDWriter``: an acquisition of one stream),
``frames`` (frame checks), ``chunk_buffer`` and ``assembler`` (frames into chunk buffers),
``writer_thread`` (all HDF5 work), ``encoder_pool`` (compression threads), ``value_table`` (the
per-frame values as they are written).

May import: ``emdstream.safety``, ``emdstream.format``, ``emdstream.encoders``,
``emdstream.errors``; never ``emdstream.read``.

Which thread runs what:

* producer threads (any number, any stream): ``put``/``put_many``/``frame_buffer``/
  ``put_compressed`` check a frame and copy it into its slot of the stream's current chunk buffer;
  a full chunk goes on the file's one queue. ``comment`` and ``close`` also run here.
* the writer thread (one per file): takes chunks off the queue, has them compressed, writes them
  with direct chunk writes, flushes and counts durable frames, finalizes at close. It is the only
  thread that calls HDF5 on the file being written.
* encoder threads (``workers``, default one per core): compress whole chunks handed to them by the
  writer thread; they never touch HDF5.

Lock order (a thread holding one may take only those after it, never the reverse):
``Acquisition._close_lock`` -> ``StreamWriter._lock`` (streams in order) -> ``ChunkAssembler.lock``
-> ``WriterThread._comments_lock``. The writer thread takes only the last two, and never waits
while holding one. ``safety.live_registry.reopen_lock`` stands apart: it is taken, holding none of
the others, by the writer thread while it finalizes (closing this process's live readers), by
``safety.journal`` while it applies a finalize journal (writer thread or ``recover``), and by live
readers in this process around each read and reopen (``read.dataset.LiveData``, ``read.file``).
"""
