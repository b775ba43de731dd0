"""Surviving kills and other processes: the writer's file lock, the superblock, opening a file that
may be half written (the one SWMR rule), the live-reader registry, the finalize journal,
compaction, disk blocks left past a file's end (``past_end``) and ``recover``.

May import: ``emdstream.format``, ``emdstream.encoders``, ``emdstream.errors``.
"""
