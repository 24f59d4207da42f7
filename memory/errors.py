"""Errors of the memory layer, and the base of every error a person can act on.

The base lives here because memory/ is the package every other one may import.
"""


class FamiliarError(Exception):
    """A problem a person can fix: ``str()`` says what is wrong, ``fix`` says what to do."""

    exit_code = 2

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.fix = fix

    def explain(self) -> str:
        return f"{self}\n  fix: {self.fix}" if self.fix else str(self)


class DataDirError(FamiliarError):
    """The data directory cannot be used (unreadable, not writable, locked)."""


class DatabaseError(FamiliarError):
    """The database cannot be opened safely (corrupt, newer schema, failed migration)."""


class StorageUnavailable(DatabaseError):
    """The disk under the database cannot be written (full, read-only, failing): nothing is
    wrong with the file, so a restart once the disk is fixed is the cure (exit 1: systemd's
    ``Restart=on-failure`` restarts it, where 2 means a person must act first)."""

    exit_code = 1
