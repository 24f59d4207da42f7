"""The daemon's single-instance lock: ``jobs.datalock`` with messages a person can act on.

``fcntl.flock`` on a file in the data directory; the kernel drops it when the process dies, so
a SIGKILLed daemon never leaves a stale lock behind.
"""

from __future__ import annotations

from bot.errors import DataDirError
from jobs.datalock import DataDirBusy, DataDirLock, held_elsewhere


class InstanceLock(DataDirLock):
    def acquire(self) -> None:
        try:
            super().acquire()
        except DataDirBusy as busy:
            raise DataDirError(
                f"another Familiar process (pid {busy.holder}) is using the data directory {self.path.parent}",
                "stop it first (`systemctl stop familiar`), or give this one its own FAMILIAR_DATA_DIR",
            ) from None
        except OSError as exc:
            raise DataDirError(
                f"cannot create the lock file {self.path}: {exc.strerror}",
                "make the data directory writable by this user, or set FAMILIAR_DATA_DIR",
            ) from None

    def is_held_elsewhere(self) -> bool:
        """True while another process holds the lock (`familiar health`, restore)."""
        return held_elsewhere(self.path.parent)

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self
