"""What a failed SQLite call says about the storage under the database: a full disk, a
read-only directory, a failing disk, or another process holding the file. The database, the
health checks and the channels use these words for people looking after the data directory."""

from __future__ import annotations

import sqlite3

from memory.errors import DatabaseError

SQLITE_IOERR_SHMSIZE = sqlite3.SQLITE_IOERR | (19 << 8)  # not exported by every Python

# What each primary SQLite result code means for a person looking after the data directory.
_STORAGE_FAULTS = {
    sqlite3.SQLITE_FULL: "the disk holding the data directory is full",
    sqlite3.SQLITE_READONLY: "the database cannot be written (read-only)",
    sqlite3.SQLITE_IOERR: "the disk reported an I/O error",
    sqlite3.SQLITE_CANTOPEN: "a database file cannot be opened",
}


def storage_fault(exc: BaseException) -> str | None:
    """What went wrong with the storage under the database, or None for any other error. An
    error raised from (or while handling) a storage error counts as that storage error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        code = getattr(current, "sqlite_errorcode", None)
        if code == SQLITE_IOERR_SHMSIZE:  # no room to create the WAL index (-shm)
            return _STORAGE_FAULTS[sqlite3.SQLITE_FULL]
        if isinstance(code, int) and (code & 0xFF) in _STORAGE_FAULTS:
            return _STORAGE_FAULTS[code & 0xFF]
        current = current.__cause__ or current.__context__
    return None


def disk_fault(exc: BaseException) -> str | None:
    """The storage fault behind a failed open; None for our own errors (a missing folder, a
    corrupt file), which already say what to do."""
    if isinstance(exc, DatabaseError) and exc.__cause__ is None:
        return None
    return storage_fault(exc)


def held_elsewhere(exc: BaseException) -> bool:
    """Another process holds the database (busy or locked): nothing wrong with the file."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
