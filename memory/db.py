"""The one SQLite database: WAL mode, foreign keys, numbered migrations per package.

Migrations are written here rather than taken from ``sqlite-migrate`` (an alpha package of its
own) because we need two things it lacks: several packages numbering their own migrations in one
database, and refusing a database that newer code has migrated further than this code knows.
The API mirrors it: ``migrations = Migrations("memory")`` then ``@migrations()`` on a function
that takes a ``sqlite_utils.Database``. Each migration runs in its own transaction.

One connection is shared. Code on the event loop goes through ``await db.run(fn)``, which runs
``fn`` on the database's own thread; synchronous code (the CLI, worker threads) holds ``db.lock``
through ``db.transaction()`` or ``db.read()``.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils
from loguru import logger

from memory.errors import DatabaseError, StorageUnavailable
from memory.storage_faults import disk_fault, held_elsewhere, storage_fault

T = TypeVar("T")
DB_NAME = "familiar.db"
# quick_check reads every page; past this size it moves from open() to the health check so a
# large database does not delay readiness.
QUICK_CHECK_AT_OPEN_MAX_BYTES = 256 * 1024 * 1024

Step = Callable[[sqlite_utils.Database], None]
FaultListener = Callable[[str | None], None]


@dataclass
class Migrations:
    """The numbered schema steps of one package, applied in order when the store opens."""

    package: str
    steps: list[tuple[str, Step]] = field(default_factory=list)

    def __call__(self) -> Callable[[Step], Step]:
        def register(fn: Step) -> Step:
            self.steps.append((fn.__name__, fn))
            return fn

        return register

    @property
    def latest(self) -> int:
        return len(self.steps)


class Database:
    """A handle on the store. Build it once in the composition root and pass it down."""

    busy_timeout_s = 30.0  # how long a statement waits for another process's lock

    def __init__(self, path: Path | str, migrations: Sequence[Migrations] = ()) -> None:
        self.path = Path(path)
        self.migrations = list(migrations)
        self.lock = threading.RLock()
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._sdb: sqlite_utils.Database | None = None
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the file opened
        # The last write that failed for a storage reason (disk full, read-only, I/O error),
        # cleared by the next committed write; listeners hear both (from the database thread).
        self.write_fault: str | None = None
        self.write_fault_at: float | None = None
        self.fault_listeners: list[FaultListener] = []
        # Why the database is open for this process alone (a full disk at open), else None.
        self.alone: str | None = None

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path | str, migrations: Sequence[Migrations] = ()) -> Database:
        db = cls(path, migrations)
        db.connect()
        return db

    def connect(self) -> None:
        """Open, validate, migrate. Raises DatabaseError with a fix; writes nothing to a bad file.

        A disk with no room for the WAL index (``-shm``, created when the first connection
        opens after a clean stop) would keep a full disk's daemon from starting at all: then the
        database is opened for this process alone (``locking_mode=EXCLUSIVE`` keeps the index in
        memory), reads work, writes fail as on any full disk, and ``probe_write`` shares it again
        once there is room. Meanwhile other processes (the CLI) wait for it."""
        existed = self.path.exists() and self.path.stat().st_size > 0
        try:
            self._open(existed, validate=existed, alone=False)
        except (sqlite3.Error, DatabaseError) as exc:
            fault = disk_fault(exc)
            if fault is None or not existed:
                raise self._unusable(exc) from None
            logger.warning(
                "{} ({}): opening the database for this process alone until there is room",
                fault,
                exc,
            )
            try:
                self._open(existed, validate=True, alone=True)
            except (sqlite3.Error, DatabaseError) as again:
                raise self._unusable(again) from None
            self.alone = fault
            self.write_fault, self.write_fault_at = f"{fault} ({exc})", time.time()

    def _unusable(self, exc: BaseException) -> DatabaseError:
        if held_elsewhere(exc):
            return DatabaseError(
                f"the database {self.path} is held by another process ({exc}): a daemon "
                "started on a full disk keeps it to itself until there is room",
                "free space on the disk holding the data directory (or stop the daemon) and "
                "try again",
            )
        fault = disk_fault(exc)
        if isinstance(exc, DatabaseError) and fault is None:
            return exc
        if fault is not None:  # not the file's fault: nothing to restore, only room to make
            return StorageUnavailable(
                f"the database {self.path} cannot be opened: {fault} ({exc})",
                "free space on (or fix) the disk holding the data directory; the service "
                "manager starts Familiar again",
            )
        return DatabaseError(
            f"the database {self.path} cannot be used: {exc}",
            "restore the latest backup (`familiar restore ARCHIVE`) or move the file aside",
        )

    def _open(self, existed: bool, *, validate: bool, alone: bool) -> None:
        try:
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=self.busy_timeout_s,
            )
        except sqlite3.Error as exc:
            raise DatabaseError(
                f"cannot open the database {self.path}: {exc}",
                "check that the data directory exists and is writable by this user",
            ) from None
        try:
            if alone:  # before the first read: the WAL index then lives in this process's memory
                conn.execute("PRAGMA locking_mode=EXCLUSIVE")
            if existed and validate:
                self._validate(conn)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=NORMAL")  # durable in WAL mode across app crashes
            # Deleted content is overwritten with zeros, not left in free pages, whatever the
            # build's default (Debian's is on already): a memory the user forgets is in no byte
            # of the file (``store.purge_deleted``), nor in a later backup.
            conn.execute("PRAGMA secure_delete=ON")
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
            self._conn = conn
            if self.path.exists():  # not for ":memory:"
                st = self.path.stat()
                self._identity = (st.st_dev, st.st_ino)
            self._sdb = sqlite_utils.Database(conn)
            self._migrate()
        except BaseException:
            conn.close()
            self._conn = self._sdb = None
            raise

    def _share_again(self) -> None:
        """Reopen the database shared (its WAL index in ``-shm`` again) after it was opened for
        this process alone on a full disk; stays alone, saying why, when that still fails."""
        with self.lock:
            if self._conn is not None:
                self._conn.close()  # checkpoints the WAL into the file: there is room now
            self._conn = self._sdb = None
            try:
                self._open(True, validate=False, alone=False)
            except (sqlite3.Error, DatabaseError) as exc:
                logger.warning("the database stays open for this process alone: {}", exc)
                self._open(True, validate=False, alone=True)
                return
            self.alone = None
            logger.info("the database is shared again (other processes may open it)")

    def _validate(self, conn: sqlite3.Connection) -> None:
        corrupt_fix = (
            "restore the latest backup with `familiar restore ARCHIVE`, or move the file aside "
            "to start empty"
        )
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            if self.path.stat().st_size <= QUICK_CHECK_AT_OPEN_MAX_BYTES:
                result = conn.execute("PRAGMA quick_check").fetchone()[0]
                if result != "ok":
                    raise DatabaseError(
                        f"the database {self.path} is corrupt (quick_check: {result})", corrupt_fix
                    )
        except sqlite3.DatabaseError as exc:
            if held_elsewhere(exc) or storage_fault(exc) is not None:  # never "restore a backup"
                raise
            raise DatabaseError(
                f"the database {self.path} is not a valid SQLite database ({exc})", corrupt_fix
            ) from None
        self._check_not_newer(conn)

    def _applied(self, conn: sqlite3.Connection) -> dict[str, int]:
        has_table = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='_migrations'"
        ).fetchone()
        if not has_table:
            return {}
        rows = conn.execute("SELECT package, max(number) FROM _migrations GROUP BY package")
        return {package: number for package, number in rows}

    def _check_not_newer(self, conn: sqlite3.Connection) -> None:
        applied = self._applied(conn)
        for m in self.migrations:
            if applied.get(m.package, 0) > m.latest:
                raise DatabaseError(
                    f"the database {self.path} was written by a newer Familiar "
                    f"({m.package} schema {applied[m.package]}, this version knows {m.latest})",
                    "upgrade Familiar, or restore a backup made by this version",
                )

    def _migrate(self) -> None:
        conn = self.conn
        conn.execute(
            "CREATE TABLE IF NOT EXISTS _migrations (package TEXT NOT NULL, number INTEGER NOT NULL,"
            " name TEXT NOT NULL, applied_at TEXT NOT NULL, PRIMARY KEY (package, number))"
        )
        self._check_not_newer(conn)
        applied = self._applied(conn)
        for m in self.migrations:
            for number, (name, step) in enumerate(m.steps, start=1):
                if number <= applied.get(m.package, 0):
                    continue
                logger.info("applying migration {} {} {}", m.package, number, name)
                try:
                    with self.transaction():
                        step(self.sdb)
                        conn.execute(
                            "INSERT INTO _migrations VALUES (?, ?, ?, ?)",
                            (m.package, number, name, datetime.now(UTC).isoformat()),
                        )
                except Exception as exc:
                    raise DatabaseError(
                        f"migration {m.package} {number} ({name}) failed: {exc}",
                        "the database was left as it was before this migration; report the error",
                    ) from exc

    # -- access --------------------------------------------------------------------------
    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise DatabaseError("the database is not open")
        return self._conn

    @property
    def sdb(self) -> sqlite_utils.Database:
        if self._sdb is None:
            raise DatabaseError("the database is not open")
        return self._sdb

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; rolls back on error. Nests as a savepoint."""
        with self.lock:
            conn = self.conn
            if conn.in_transaction:
                conn.execute("SAVEPOINT nested")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK TO nested")
                    conn.execute("RELEASE nested")
                    raise
                conn.execute("RELEASE nested")
                return
            try:
                conn.execute("BEGIN IMMEDIATE")
                changes = conn.total_changes
                try:
                    yield conn
                except BaseException:
                    if conn.in_transaction:  # SQLite rolls back by itself on a full disk
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                fault = storage_fault(exc)
                if fault is not None:
                    self._wrote(fault, exc)
                raise
            # Only a commit that wrote rows shows that writing works again: one that changed
            # nothing (a DELETE finding no row) commits on a full disk too, and would say
            # "recovered" between every two failures.
            if self.write_fault is not None and conn.total_changes != changes:
                self._wrote(None, None)

    def _wrote(self, fault: str | None, exc: BaseException | None) -> None:
        """Remember a storage fault (or that writing works again) and tell the listeners once."""
        if fault is None and self.write_fault is None:
            return
        was = self.write_fault
        self.write_fault = None if fault is None else f"{fault} ({exc})"
        self.write_fault_at = None if fault is None else time.time()
        if (was is None) == (fault is None):
            return  # still failing: the listeners heard already
        if fault is None:
            logger.info("database writes work again")
        for listener in list(self.fault_listeners):
            try:
                listener(self.write_fault)
            except Exception:  # a listener must not turn a write error into another one
                logger.opt(exception=True).warning("a storage fault listener raised")

    def probe_write(self) -> None:
        """One tiny real write, to learn whether writing works again after a storage fault:
        the header's ``user_version`` (unused otherwise) rewritten with its own value."""
        with self.transaction() as conn:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            conn.execute(f"PRAGMA user_version = {version}")
        self._wrote(None, None)  # the header page was written (no row changed)
        if self.alone is not None:
            self._share_again()

    def replaced(self) -> bool:
        """True when the file at ``path`` is no longer the one this handle opened (moved or
        replaced under the running process: what is written now goes to the old file)."""
        if self._identity is None:
            return False
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return True
        return (st.st_dev, st.st_ino) != self._identity

    def data_version(self) -> int:
        """SQLite's ``PRAGMA data_version``: it changes when another connection (another
        process) commits, never for this connection's own writes."""
        with self.lock:
            return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            yield self.conn

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the database thread, holding the lock, off the event loop."""
        return await self.submit(fn, *args)

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """``run`` as a future rather than a coroutine: for a write that must happen even if
        whoever awaits it is cancelled (``jobs.scheduler.ended_write``); a loop that ends
        cancels its tasks, a coroutine among them, not the futures they wait for."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")

        def call() -> T:
            with self.lock:
                return fn(*args)

        return asyncio.get_running_loop().run_in_executor(self._executor, call)

    def schema_versions(self) -> dict[str, int]:
        with self.read() as conn:
            return self._applied(conn)

    def quick_check(self) -> str:
        with self.read() as conn:
            return str(conn.execute("PRAGMA quick_check").fetchone()[0])

    def integrity_check(self) -> str:
        with self.read() as conn:
            return str(conn.execute("PRAGMA integrity_check").fetchone()[0])

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        with self.lock:
            if self._conn is None:
                return
            try:
                self._conn.execute("PRAGMA optimize")
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                logger.warning("closing the database: {}", exc)
            self._conn.close()
            self._conn = None
            self._sdb = None
