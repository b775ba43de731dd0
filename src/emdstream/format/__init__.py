"""What an EMD file holds: dims, metadata, per-frame values, the chunk grid, part files, the layout
of groups and datasets, and finalizing it.

May import: ``emdstream.encoders`` (the value tables' codec) and ``emdstream.errors``; nothing that
writes, reads live, or guards against crashes.
"""
