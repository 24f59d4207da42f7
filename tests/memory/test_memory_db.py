"""``Database`` in the cases test_store_migrations.py leaves out: a nested transaction that fails
undoes only its own writes, a database that cannot be opened or is closed says so with a fix,
and closing twice is harmless. Real SQLite files in ``tmp_path``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from memory.db import Database, storage_fault
from memory.errors import DatabaseError
from memory.schema import migrations


class Boom(Exception):
    pass


def texts(db: Database) -> list[str]:
    with db.read() as conn:
        return [r[0] for r in conn.execute("SELECT text FROM notes ORDER BY id")]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.open(tmp_path / "familiar.db", [migrations])
    with database.transaction() as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)")
    yield database
    database.close()


def test_a_failed_inner_transaction_undoes_only_its_own_writes(db: Database) -> None:
    with db.transaction() as conn:
        conn.execute("INSERT INTO notes (text) VALUES ('outer before')")
        with pytest.raises(Boom), db.transaction() as inner:
            inner.execute("INSERT INTO notes (text) VALUES ('inner')")
            raise Boom
        conn.execute("INSERT INTO notes (text) VALUES ('outer after')")
    assert texts(db) == ["outer before", "outer after"]


def test_a_successful_inner_transaction_commits_with_the_outer_one(db: Database) -> None:
    with pytest.raises(Boom), db.transaction() as conn:
        conn.execute("INSERT INTO notes (text) VALUES ('outer')")
        with db.transaction() as inner:
            inner.execute("INSERT INTO notes (text) VALUES ('inner')")
        raise Boom  # the outer fails after the inner finished: both are undone
    assert texts(db) == []
    with db.transaction() as conn, db.transaction() as inner:
        inner.execute("INSERT INTO notes (text) VALUES ('kept')")
    assert texts(db) == ["kept"]


def test_the_writes_reach_the_file_for_another_connection(db: Database, tmp_path: Path) -> None:
    with db.transaction() as conn:
        conn.execute("INSERT INTO notes (text) VALUES ('committed')")
    other = sqlite3.connect(tmp_path / "familiar.db")
    try:
        assert other.execute("SELECT text FROM notes").fetchall() == [("committed",)]
    finally:
        other.close()


def test_a_database_in_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError) as caught:
        Database.open(tmp_path / "no-such-folder" / "familiar.db", [migrations])
    assert "cannot open the database" in str(caught.value)
    assert "writable" in caught.value.explain()
    assert not (tmp_path / "no-such-folder").exists()


def test_a_closed_database_refuses_use_and_closes_twice_quietly(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "familiar.db", [migrations])
    db.close()
    db.close()
    with pytest.raises(DatabaseError, match="the database is not open"), db.transaction():
        pass
    with pytest.raises(DatabaseError, match="the database is not open"):
        db.sdb  # noqa: B018


def test_a_database_from_before_migrations_is_adopted_and_its_rows_kept(tmp_path: Path) -> None:
    path = tmp_path / "familiar.db"
    plain = sqlite3.connect(path)
    plain.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    plain.execute("INSERT INTO notes (text) VALUES ('written by hand')")
    plain.commit()
    plain.close()

    db = Database.open(path, [migrations])
    try:
        assert texts(db) == ["written by hand"]
        assert db.schema_versions() == {"memory": len(migrations.steps)}
    finally:
        db.close()


def test_a_storage_fault_is_recognised_behind_an_error_raised_from_it(tmp_path: Path) -> None:
    """The dispatcher retries an update whose handling hit a full disk; the error it sees may
    be one a layer above raised from (or while handling) SQLite's."""
    conn = sqlite3.connect(tmp_path / "tiny.db")
    conn.execute("CREATE TABLE t (x BLOB)")
    conn.execute("PRAGMA max_page_count = 3")  # a database that cannot grow: SQLITE_FULL
    with pytest.raises(sqlite3.OperationalError) as full:
        conn.execute("INSERT INTO t VALUES (zeroblob(100000))")
    conn.close()
    assert storage_fault(full.value) == "the disk holding the data directory is full"
    try:
        raise RuntimeError("storing the answer failed") from full.value
    except RuntimeError as wrapped:
        assert storage_fault(wrapped) == "the disk holding the data directory is full"
    assert storage_fault(RuntimeError("not storage")) is None
    assert storage_fault(sqlite3.OperationalError("no such table: x")) is None
