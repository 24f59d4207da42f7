"""Reads by time and kind stay cheap in a big chat: counted in SQLite's virtual-machine steps
(``set_progress_handler``), which do not depend on the machine's speed. A time window without
a kind, and the newest rows of a chat, come from the (chat, ts) index; several kinds
(``/memories``) from the (chat, kind, ts) index, not by reading the chat backwards by time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from memory import store
from memory.db import Database
from memory.rows import Filters, NewMemory
from memory.schema import migrations
from memory.types import Scope

TURNS = 4_000  # a scan of the chat costs tens of thousands of steps; a lookup, a few hundred
START = 1_700_000_000.0
CHAT = Scope(1)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.open(tmp_path / "f.db", [migrations])
    rows = [
        NewMemory(1, None, "message", f"turn {i}", f"t{i}", START + 60.0 * i) for i in range(TURNS)
    ]
    # A few notes and facts among the turns, the newest well before the last turn.
    rows += [
        NewMemory(1, None, ("note", "fact")[i % 2], f"kept {i}", f"k{i}", START + 6_000.0 * i)
        for i in range(10)
    ]
    rows.append(NewMemory(2, None, "message", "another chat", "o", START + 60.0 * TURNS))
    store.insert_memories(database, rows)
    yield database
    database.close()


def steps(db: Database, read: Callable[[], Any]) -> tuple[int, Any]:
    """The result of ``read`` and SQLite's steps for it (counted by tens)."""
    count = 0

    def tick() -> int:
        nonlocal count
        count += 10
        return 0

    db.conn.set_progress_handler(tick, 10)
    try:
        result = read()
    finally:
        db.conn.set_progress_handler(None, 10)
    return count, result


def at(minutes: float) -> datetime:
    return datetime.fromtimestamp(START + 60.0 * minutes, UTC)


def test_a_time_window_is_read_from_the_chats_rows_by_time(db: Database) -> None:
    window = Filters(CHAT, since=at(2_000), until=at(2_009.5))
    cost, ids = steps(db, lambda: store.ids_matching(db, window, 500))
    assert ids is not None
    assert sorted(store.rows_by_id(db, ids, window)) == sorted(ids)
    assert sorted(r.text for r in store.rows_by_id(db, ids, window).values()) == sorted(
        f"turn {i}" for i in range(2_000, 2_010)
    )
    assert cost < 2_000, cost


def test_the_newest_rows_of_a_chat_are_read_in_order(db: Database) -> None:
    cost, rows = steps(db, lambda: store.list_rows(db, Filters(CHAT), 5))
    assert [r.text for r in rows] == [f"turn {i}" for i in range(TURNS - 1, TURNS - 6, -1)]
    assert cost < 2_000, cost


def test_a_few_kinds_among_many_turns_are_found_by_kind(db: Database) -> None:
    cost, rows = steps(db, lambda: store.list_rows(db, Filters(CHAT, ["note", "fact"]), 20))
    assert [r.text for r in rows] == [f"kept {i}" for i in range(9, -1, -1)]
    assert cost < 2_000, cost
    cost, rows = steps(db, lambda: store.list_rows(db, Filters(CHAT, ["message"]), 3))
    assert [r.text for r in rows] == [f"turn {i}" for i in range(TURNS - 1, TURNS - 4, -1)]
    assert cost < 2_000, cost
