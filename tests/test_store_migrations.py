"""The store: WAL, foreign keys, numbered migrations per package, refusing what it can't trust."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlite_utils

from memory.db import Database, Migrations
from memory.errors import DatabaseError


def notes_migrations(steps: int = 2) -> Migrations:
    m = Migrations("notes")

    @m()
    def m001_create(db: sqlite_utils.Database) -> None:
        db["notes"].create({"id": int, "text": str}, pk="id")

    if steps >= 2:

        @m()
        def m002_add_tag(db: sqlite_utils.Database) -> None:
            db["notes"].add_column("tag", str)

    return m


def test_blank_database_is_migrated_in_wal_mode(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "f.db", [notes_migrations()])
    try:
        assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert db.schema_versions() == {"notes": 2}
        assert set(db.sdb["notes"].columns_dict) == {"id", "text", "tag"}
    finally:
        db.close()


def test_existing_database_gets_only_new_migrations(tmp_path: Path) -> None:
    path = tmp_path / "f.db"
    db = Database.open(path, [notes_migrations(steps=1)])
    db.sdb["notes"].insert({"id": 1, "text": "kept"})
    db.close()
    db = Database.open(path, [notes_migrations(steps=2)])
    try:
        assert db.schema_versions() == {"notes": 2}
        assert list(db.sdb["notes"].rows) == [{"id": 1, "text": "kept", "tag": None}]
        applied = db.conn.execute("SELECT number, name FROM _migrations ORDER BY number").fetchall()
        assert applied == [(1, "m001_create"), (2, "m002_add_tag")]
    finally:
        db.close()


def test_packages_number_their_migrations_independently(tmp_path: Path) -> None:
    other = Migrations("other")

    @other()
    def m001_things(db: sqlite_utils.Database) -> None:
        db["things"].create({"id": int}, pk="id")

    db = Database.open(tmp_path / "f.db", [notes_migrations(), other])
    try:
        assert db.schema_versions() == {"notes": 2, "other": 1}
    finally:
        db.close()


def test_newer_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "f.db"
    Database.open(path, [notes_migrations(steps=2)]).close()
    before = path.read_bytes()
    with pytest.raises(DatabaseError, match="newer Familiar") as info:
        Database.open(path, [notes_migrations(steps=1)])
    assert "upgrade" in info.value.fix
    assert path.read_bytes() == before


def test_failed_migration_rolls_back_and_says_so(tmp_path: Path) -> None:
    m = notes_migrations(steps=1)

    @m()
    def m002_broken(db: sqlite_utils.Database) -> None:
        db["notes"].add_column("half", str)
        raise RuntimeError("boom")

    with pytest.raises(DatabaseError, match="m002_broken"):
        Database.open(tmp_path / "f.db", [m])
    db = Database.open(tmp_path / "f.db", [notes_migrations(steps=1)])
    try:
        assert db.schema_versions() == {"notes": 1}
        assert "half" not in db.sdb["notes"].columns_dict  # the failed step left nothing behind
    finally:
        db.close()


def test_a_file_that_is_not_a_database_is_refused_without_writing(tmp_path: Path) -> None:
    path = tmp_path / "f.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DatabaseError, match="not a valid SQLite database") as info:
        Database.open(path, [notes_migrations()])
    assert "restore" in info.value.fix
    assert path.read_bytes() == b"this is not sqlite" * 100


def test_a_corrupt_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f.db"
    db = Database.open(path, [notes_migrations()])
    db.sdb["notes"].insert_all({"id": i, "text": "x" * 500} for i in range(2000))
    db.close()
    raw = bytearray(path.read_bytes())
    for offset in range(4096 * 3, len(raw), 4096):  # scribble over every page but the first two
        raw[offset + 8 : offset + 64] = b"\xff" * 56
    path.write_bytes(bytes(raw))
    with pytest.raises(DatabaseError, match="corrupt|not a valid"):
        Database.open(path, [notes_migrations()])


def test_transaction_rolls_back_on_error(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "f.db", [notes_migrations()])
    try:
        with pytest.raises(ValueError):
            with db.transaction() as conn:
                conn.execute("INSERT INTO notes (id, text) VALUES (1, 'a')")
                raise ValueError("abort")
        assert db.sdb["notes"].count == 0
    finally:
        db.close()


async def run_on_db_thread(db: Database) -> int:
    def write() -> int:
        with db.transaction() as conn:
            conn.execute("INSERT INTO notes (text) VALUES ('from the loop')")
        return db.sdb["notes"].count

    return await db.run(write)


def test_async_run_uses_the_database_thread(tmp_path: Path) -> None:
    import asyncio

    db = Database.open(tmp_path / "f.db", [notes_migrations()])
    try:
        assert asyncio.run(run_on_db_thread(db)) == 1
    finally:
        db.close()
    # committed before close: a fresh connection sees it
    assert sqlite3.connect(tmp_path / "f.db").execute("SELECT text FROM notes").fetchone() == (
        "from the loop",
    )
