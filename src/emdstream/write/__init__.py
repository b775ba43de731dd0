"""The data path: producer -> chunk buffers -> one queue -> writer thread -> encoders -> file.

Modules: ``acquisition`` (a file of several streams, its creation, close and fork rules),
``stream`` (``Stream``, and ``StreamWriter``, the producer's side of one stream), ``session`` (the
narrow handle a stream has on its file), ``writer`` (``EMDWriter``: an acquisition of one stream),
``frames`` (frame checks), ``chunk_buffer`` and ``assembler`` (frames into chunk buffers),
``dropped`` (the slots dropped), ``packed`` (bslz4 chunks compressed in pieces), ``gather``
(compressed frames into chunks), ``writer_thread`` (all HDF5 work), ``writeback`` (the disk write
of new bytes started as they come), ``reserve`` (disk blocks allocated ahead of the file's end),
``growing`` (the lengths of the datasets the writer grows), ``encoder_pool`` (compression
threads), ``value_table`` (the per-frame values as they are written), ``counted``, ``events`` and
``summed`` (counted streams: their puts, their events on the way to the file, the summed pattern).

May import: ``emdstream.safety``, ``emdstream.format``, ``emdstream.encoders``,
``emdstream.errors``; never ``emdstream.read``.

Which thread runs what:

* producer threads (any number, any stream): ``put``/``put_many``/``frame_buffer`` check a frame
  and copy it into its slot of the stream's current chunk buffer, or, for bslz4 chunks of
  block-aligned frames (``packed``), compress it there and then (straight from the caller's
  frame) while the writer thread has a chunk's worth of pieces left to compress; a full chunk goes
  on the file's one queue. ``put_compressed``/``put_compressed_many`` check each frame and gather
  it into its chunk (``gather``); a full chunk is written by the producer itself
  (``WriterThread.write_now``) when the writer thread is waiting for work, else queued.
  ``comment`` and ``close`` also run here.
* the writer thread (one per file): takes chunks off the queue, compresses what is left of them
  (``packed``) or has the encoder pool compress them (other codecs; chunks under 16 KiB it
  compresses itself), writes them with direct chunk writes, flushes and counts durable frames,
  finalizes at close.
* encoder threads (``workers``, default one per core; started only for codecs other than
  block-aligned bslz4, and chunks over 16 KiB): compress whole chunks handed to them by the writer
  thread; never HDF5.

The HDF5 rule: every HDF5 call on the file being written is made holding ``WriterThread.io_lock``.
The writer thread holds it at all times except while it waits on the queue; a producer only ever
tries it without waiting (``write_now``), and writes only chunks of its own stream that nothing
queued precedes, through the same ``StreamSink.write_chunk`` and counting as the writer thread,
so the file sees one writer at a time, in order, and a frame is still counted durable only at a
flush after its chunk was written.

Lock order (a thread holding one may take only those after it, never the reverse):
``Acquisition._close_lock`` -> ``CountedStreamWriter._order_lock`` (counted streams: one counted
put at a time; ``finish`` waits for it) -> ``StreamWriter._lock`` (streams in order) ->
``WriterThread.io_lock`` (producers: try only) -> ``ChunkAssembler.lock`` ->
``WriterThread._comments_lock``; ``EventQueue._lock`` (counted streams' events) is a leaf, taken
last and holding nothing while it waits on its own condition. The writer
thread takes the last three, and never waits while holding ``ChunkAssembler.lock`` or
``_comments_lock``. ``safety.live_registry.reopen_lock`` stands apart: it is taken, holding none of
the others but ``io_lock``, by the writer thread while it finalizes (closing this process's live
readers), by ``safety.journal`` while it applies a finalize journal (writer thread or
``recover``), and by live readers in this process around each read and reopen
(``read.dataset.LiveData``, ``read.file``).
"""
