"""One stored turn per Telegram message: the unique key, and the migration that adds it to a
store that already holds copies made by replays (real SQLite)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from memory import store
from memory.db import Database, Migrations
from memory.schema import migrations
from memory.types import Scope

from .conftest import run


def test_a_replayed_turn_is_found_not_stored_again(make_memory) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory()
    first = run(memory.store_turn(5, 1, "user", "buy leeks", telegram_message_id=77))
    again = run(memory.store_turn(5, 1, "user", "buy leeks", telegram_message_id=77))
    assert first == (first[0], True)
    assert again == (first[0], False)
    # The same id in another chat is another message (Telegram numbers messages per chat).
    other = run(memory.store_turn(6, 1, "user", "buy leeks", telegram_message_id=77))
    assert other[1] is True
    with memory.db.read() as conn:
        assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 2
        assert conn.execute("SELECT count(*) FROM memories").fetchone()[0] == 2
    # Nothing of the refused copy reached the index either.
    assert memory.index is not None and memory.index.ntotal == 2
    assert len(run(memory.search("buy leeks", Scope(5), k=10))) == 1


def test_the_unique_key_holds_even_past_the_look_up(make_memory) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory()
    run(memory.add_message(5, 1, "user", "hello", telegram_message_id=3))
    with pytest.raises(sqlite3.IntegrityError), memory.db.transaction() as conn:
        conn.execute(
            "INSERT INTO messages (chat_id, user_id, role, text, ts, telegram_message_id)"
            " VALUES (5, 1, 'user', 'hello', 0, 3)"
        )
    # Answers carry no Telegram id and are never keyed.
    run(memory.add_message(5, None, "assistant", "hi"))
    run(memory.add_message(5, None, "assistant", "hi"))


def test_the_stored_answer_is_found_by_the_turn_it_answers(make_memory) -> None:  # type: ignore[no-untyped-def]
    memory = make_memory()
    turn = run(memory.add_message(5, 1, "user", "hello", telegram_message_id=3))
    assert run(memory.answer_to(5, turn)) is None
    run(memory.add_message(5, None, "assistant", "unrelated"))
    run(memory.add_message(5, None, "assistant", "hi Ann", meta={"reply_to": turn}))
    assert run(memory.answer_to(5, turn)) == "hi Ann"
    assert run(memory.answer_to(6, turn)) is None


def test_the_migration_keeps_copies_made_before_it_but_unkeys_them(tmp_path: Path) -> None:
    first_step = Migrations("memory", migrations.steps[:1])
    path = tmp_path / "f.db"
    db = Database.open(path, [first_step])
    rows = [
        (5, "user", "hello", 3),
        (5, "assistant", "hi", None),
        (5, "user", "hello", 3),  # the copy a replay stored
        (6, "user", "hello", 3),  # another chat's message 3
    ]
    with db.transaction() as conn:
        for chat, role, text, tg in rows:
            conn.execute(
                "INSERT INTO messages (chat_id, role, text, ts, telegram_message_id)"
                " VALUES (?, ?, ?, 0, ?)",
                (chat, role, text, tg),
            )
    db.close()
    db = Database.open(path, [migrations])
    try:
        got = db.conn.execute(
            "SELECT chat_id, role, text, telegram_message_id, meta FROM messages ORDER BY id"
        ).fetchall()
        assert [g[:4] for g in got] == [
            (5, "user", "hello", 3),
            (5, "assistant", "hi", None),
            (5, "user", "hello", None),
            (6, "user", "hello", 3),
        ]
        assert json.loads(got[2][4]) == {"duplicate_of_telegram_message_id": 3}
        assert store.find_turn(db, 5, 3) == 1
    finally:
        db.close()
