"""Atomic directory and file writes for adapters and checkpoints, re-exported from memory.atomic.

The helpers live in ``memory.atomic`` so the image store (which may not import agents) shares
them; the training modules keep importing them from here.
"""

from __future__ import annotations

from memory.atomic import (
    atomic_directory,
    atomic_write_bytes,
    atomic_write_text,
    fsync_dir,
    fsync_tree,
)

__all__ = ["atomic_directory", "atomic_write_bytes", "atomic_write_text", "fsync_dir", "fsync_tree"]
