"""Leaving the process when a thread cannot be interrupted, for the daemon and the CLI alike."""

from __future__ import annotations

import os
import sys
import threading

from loguru import logger


def leave_now_if_threads_linger(code: int) -> None:
    """Exit at once when a worker thread cannot be interrupted (the embedding model still loading,
    a blocked read): the interpreter would otherwise wait for it and overrun the stop bound.
    The caller has closed everything that matters: the database, the lock, the logs."""
    # The model's loader is a daemon thread, but it may hold the import lock (torch loading):
    # finalizers that import at interpreter exit then wait for it, so it counts as lingering.
    lingering = [
        t.name
        for t in threading.enumerate()
        if t is not threading.main_thread()
        and t.is_alive()
        and (not t.daemon or t.name == "memory-warm")
    ]
    if lingering:
        logger.info(
            "leaving {} background thread(s) behind: {}", len(lingering), ", ".join(lingering[:5])
        )
        leave_now(code)


def leave_now(code: int) -> None:
    """End the process at once, skipping the interpreter's shutdown (it would wait on, or abort
    over, a thread that cannot be interrupted); standard output and error are flushed first."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
