"""Storage faults on real filesystems: a full tmpfs, a read-only bind mount, a database file
replaced under an open handle. The database notices, health names the fault, admins hear once,
and everything comes back by itself once the fault ends."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from jobs.health import HealthWatch
from jobs.scheduler import JobSpec, Scheduler, StandaloneBackend
from jobs.settings import JobsSettings
from memory.db import Database
from memory.errors import DatabaseError
from memory.health import HealthRegistry, Status, disk_space_check, storage_check
from tests.jobs.conftest import all_test_migrations, fill
from tests.mounts import fill_up, read_only, small_tmpfs


class Admins:
    """The admin notifier: records what admins were told."""

    def __init__(self) -> None:
        self.told: list[str] = []

    async def __call__(self, text: str) -> None:
        self.told.append(text)


def registry(db: Database, data: Path) -> HealthRegistry:
    health = HealthRegistry()
    health.register("disk", disk_space_check(data, 4))
    health.register("storage", storage_check(db, data))
    return health


def test_a_full_disk_fails_writes_health_names_it_admins_hear_once_and_it_recovers(
    tmp_path: Path,
) -> None:
    with small_tmpfs(tmp_path / "mnt") as mnt:
        data = mnt / "data"
        data.mkdir()
        db = Database.open(data / "familiar.db", all_test_migrations())
        heard: list[str | None] = []
        db.fault_listeners.append(heard.append)
        admins = Admins()
        watch = HealthWatch(registry(db, data), admins, db)
        try:
            assert asyncio.run(watch.run()) == "healthy"
            filler = fill_up(mnt)
            for attempt in range(3):
                with pytest.raises(sqlite3.OperationalError, match="full"):
                    fill(db, 1, [f"a long message {attempt} " * 2000])
            assert db.write_fault is not None and "full" in db.write_fault
            assert len(heard) == 1  # the first failure only, not every retry

            # The snapshot cannot be written either: admins are told all the same, once.
            assert asyncio.run(watch.run()) == "failing (admins told)"
            assert asyncio.run(watch.run()) == "failing"
            [alert] = admins.told
            assert "storage" in alert and "the disk is full" in alert and str(data) in alert

            filler.unlink()
            fill(db, 1, ["space is back"])
            assert db.write_fault is None and heard[-1] is None and len(heard) == 2
            assert asyncio.run(watch.run()) == "healthy (admins told)"
            assert len(admins.told) == 2 and "healthy" in admins.told[-1]
            assert db.integrity_check() == "ok"
            with db.read() as conn:
                assert conn.execute("SELECT text FROM memories").fetchall() == [("space is back",)]
        finally:
            db.close()


def test_a_read_only_data_directory_fails_health_until_it_is_writable(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "mnt") as mnt:
        data = mnt / "data"
        data.mkdir()
        db = Database.open(data / "familiar.db", all_test_migrations())
        check = storage_check(db, data)
        try:
            assert check().status is Status.HEALTHY
            with read_only(data):
                result = check()
                assert result.status is Status.FAILING
                assert "read-only" in result.detail and str(data) in result.detail
            assert check().status is Status.HEALTHY
        finally:
            db.close()


def test_a_database_file_replaced_under_the_daemon_fails_health(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "familiar.db", all_test_migrations())
    check = storage_check(db, tmp_path)
    try:
        assert check().status is Status.HEALTHY
        shutil.copyfile(tmp_path / "familiar.db", tmp_path / "copy.db")
        os.replace(tmp_path / "copy.db", tmp_path / "familiar.db")
        result = check()
        assert result.status is Status.FAILING
        assert "replaced" in result.detail and "restart" in result.detail
    finally:
        db.close()


def test_a_job_runs_when_its_run_record_cannot_be_written(tmp_path: Path) -> None:
    """The health job must run exactly when the disk is full: its record is not a precondition."""
    with small_tmpfs(tmp_path / "mnt") as mnt:
        db = Database.open(mnt / "familiar.db", all_test_migrations())
        ran: list[int] = []

        async def job() -> str:
            ran.append(1)
            return "done"

        async def main() -> str | None:
            scheduler = Scheduler(db, StandaloneBackend(ZoneInfo("UTC")), JobsSettings(), Admins())
            scheduler.register(JobSpec("probe", job, every=timedelta(hours=1)))
            record = await scheduler.run_now("probe")
            return None if record is None else record.outcome

        try:
            filler = fill_up(mnt)
            with pytest.raises(sqlite3.OperationalError):
                fill(db, 1, ["x" * 100_000])  # the disk is full for the database too
            assert asyncio.run(main()) == "ok" and ran == [1]
            filler.unlink()
        finally:
            db.close()


def test_a_database_opened_on_a_full_disk_works_alone_and_is_shared_once_there_is_room(
    tmp_path: Path,
) -> None:
    """Found restarting the daemon while its disk was full (bench/faults.py --scenario
    disk_full): a clean stop removes the WAL index (-shm), the next open could not create it
    (SQLITE_IOERR_SHMSIZE), and the daemon refused to start with "not a valid SQLite database
    ... restore the latest backup", the wrong advice for a file that was fine."""
    with small_tmpfs(tmp_path / "mnt") as mnt:
        data = mnt / "data"
        data.mkdir()
        db = Database.open(data / "familiar.db", all_test_migrations())
        fill(db, 1, ["stored before the disk filled"])
        db.close()
        assert not (data / "familiar.db-shm").exists()  # a clean stop removes the index
        filler = fill_up(mnt)

        db = Database.open(data / "familiar.db", all_test_migrations())
        check = storage_check(db, data)
        try:
            assert db.alone is not None and "full" in db.alone
            with db.read() as conn:  # what was stored reads back
                assert conn.execute("SELECT text FROM memories").fetchall() == [
                    ("stored before the disk filled",)
                ]
            with pytest.raises(sqlite3.OperationalError, match="full"):
                fill(db, 1, ["a long message " * 2000])
            result = check()
            assert result.status is Status.FAILING and "full" in result.detail
            other = Database(data / "familiar.db", all_test_migrations())
            other.busy_timeout_s = 0.2
            with pytest.raises(DatabaseError) as caught:  # alone: `familiar health` waits
                other.connect()
            assert "held by another process" in str(caught.value)
            assert "restore" not in caught.value.explain()  # the file is fine

            filler.unlink()
            assert check().status is Status.HEALTHY
            assert db.alone is None and db.write_fault is None
            fill(db, 1, ["stored once there was room"])
            other = sqlite3.connect(data / "familiar.db", timeout=5)  # shared again
            try:
                texts = [t for (t,) in other.execute("SELECT text FROM memories ORDER BY id")]
                assert texts == ["stored before the disk filled", "stored once there was room"]
            finally:
                other.close()
            assert db.integrity_check() == "ok"
        finally:
            db.close()


def test_a_database_that_cannot_be_opened_for_a_full_disk_says_so_not_restore(
    tmp_path: Path,
) -> None:
    """A migration to apply on a full disk cannot be written even alone: the error names the
    disk and exits 1 (systemd restarts it), not 2 with "restore the latest backup"."""
    from memory.db import Migrations
    from memory.errors import StorageUnavailable

    with small_tmpfs(tmp_path / "mnt") as mnt:
        Database.open(mnt / "familiar.db", all_test_migrations()).close()
        later = Migrations("later")

        @later()
        def big_table(sdb) -> None:  # type: ignore[no-untyped-def]
            sdb.execute("CREATE TABLE big (x BLOB)")
            sdb.execute("INSERT INTO big VALUES (zeroblob(2000000))")

        filler = fill_up(mnt)
        try:
            with pytest.raises(StorageUnavailable) as caught:
                Database.open(mnt / "familiar.db", [*all_test_migrations(), later])
            assert "full" in str(caught.value) and "restore" not in caught.value.explain()
            assert caught.value.exit_code == 1
        finally:
            filler.unlink()
        db = Database.open(mnt / "familiar.db", [*all_test_migrations(), later])
        assert db.integrity_check() == "ok" and db.alone is None
        db.close()


def test_a_commit_that_changed_nothing_does_not_say_writes_work_again(tmp_path: Path) -> None:
    """Found restarting the daemon while its disk was full: commits that wrote no row (a
    DELETE finding nothing) succeed on a full disk, and each one said "database writes work
    again", so every listener ran between every two failures (hundreds of times a minute, each
    retrying the memory warm-up)."""
    with small_tmpfs(tmp_path / "mnt") as mnt:
        db = Database.open(mnt / "familiar.db", all_test_migrations())
        heard: list[str | None] = []
        db.fault_listeners.append(heard.append)
        try:
            filler = fill_up(mnt)
            with pytest.raises(sqlite3.OperationalError, match="full"):
                fill(db, 1, ["a long message " * 2000])
            with db.transaction() as conn:
                conn.execute("DELETE FROM memories WHERE id = -1")
            assert db.write_fault is not None and len(heard) == 1
            filler.unlink()
            fill(db, 1, ["space is back"])
            assert db.write_fault is None and heard[-1] is None and len(heard) == 2
        finally:
            db.close()


def test_the_scheduler_starts_on_a_full_disk_with_runs_left_running_by_a_kill(
    tmp_path: Path,
) -> None:
    """Found by `bench/faults.py --scenario disk_full` (seed 233041): the daemon killed while a
    job ran, then started on the full disk, exited 1 because marking that run interrupted could
    not be written. The mark waits for the next start; the jobs are scheduled."""
    with small_tmpfs(tmp_path / "mnt") as mnt:
        db = Database.open(mnt / "familiar.db", all_test_migrations())
        with db.transaction() as conn:
            conn.execute(
                "INSERT INTO job_runs (job, started_at, outcome, trigger)"
                " VALUES ('probe', 1.0, 'running', 'schedule')"
            )

        async def job() -> str:
            return "done"

        async def main() -> bool:
            scheduler = Scheduler(db, StandaloneBackend(ZoneInfo("UTC")), JobsSettings(), Admins())
            scheduler.register(JobSpec("probe", job, every=timedelta(hours=1)))
            await scheduler.start()
            started = scheduler.started
            await scheduler.stop()
            return started

        try:
            filler = fill_up(mnt)
            with pytest.raises(sqlite3.OperationalError):
                fill(db, 1, ["x" * 100_000])  # the disk is full for the database too
            assert asyncio.run(main())
            with db.read() as conn:  # still running: marked at the next start with room
                assert conn.execute("SELECT outcome FROM job_runs").fetchall() == [("running",)]
            filler.unlink()
            assert asyncio.run(main())
            with db.read() as conn:
                assert conn.execute("SELECT outcome FROM job_runs").fetchall() == [("interrupted",)]
        finally:
            db.close()
