"""The data directory's single-instance lock: one daemon, or one restore, per data directory.

``fcntl.flock(LOCK_EX)`` on ``<data>/familiar.lock``, holding the holder's pid (when the disk has room for it). The daemon takes it
through ``bot.daemon.lock.InstanceLock`` (which adds the messages for a person); restore takes it here,
without blocking, and keeps it for the whole swap so no daemon can start on a half-restored
directory. The kernel drops a flock when its process dies, so nothing goes stale.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = "familiar.lock"


class DataDirBusy(Exception):
    """Another process (a running daemon) holds the data directory's lock."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


class DataDirLock:
    """Exclusive, non-blocking hold of ``<dir>/familiar.lock``; ``DataDirBusy`` when taken."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirBusy(holder) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            # The pid only names the holder in a message; the flock is the lock. A full disk
            # must not keep the daemon from starting (it tells people it cannot store).
            pass
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def held_elsewhere(directory: Path) -> bool:
    """True while another process holds the lock (a shared, non-blocking probe; creates nothing)."""
    path = Path(directory) / LOCK_NAME
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
