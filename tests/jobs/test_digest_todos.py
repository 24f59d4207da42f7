"""The to-do part of the daily digest, read from the agents' ``todos`` table in real SQLite:
open items only, high priority first, overdue ones called out, long lists cut with a count, due
times in the chat's own zone.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from agents.schema import migrations as agents_migrations
from jobs.digest_todos import SHOWN, collect_todos, overdue, render_todos
from memory.db import Database

PARIS = "Europe/Paris"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=ZoneInfo(PARIS)).timestamp()
DAY = 86400.0


def add(
    db: Database,
    text: str,
    priority: int = 1,
    due_at: float | None = None,
    all_day: bool = False,
    done: bool = False,
    chat_id: int = 5,
) -> None:
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO todos (chat_id, text, priority, due_at, due_all_day, timezone,"
            " created_at, done_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                chat_id,
                text,
                priority,
                due_at,
                int(all_day),
                PARIS,
                NOW - DAY,
                NOW if done else None,
            ),
        )


def open_todos(tmp_path: Path, fill) -> list:  # type: ignore[no-untyped-def]
    db = Database.open(tmp_path / "familiar.db", [agents_migrations])
    try:
        fill(db)
        with db.read() as conn:
            return collect_todos(conn, [5])[5]
    finally:
        db.close()


def test_open_items_by_priority_then_due_with_the_overdue_first(tmp_path: Path) -> None:
    def fill(db: Database) -> None:
        add(db, "water the plants", priority=2)
        add(db, "pay the rent", priority=0, due_at=NOW - 2 * DAY)
        add(db, "call the plumber", priority=0, due_at=NOW + DAY)
        add(db, "buy stamps", done=True)
        add(db, "dentist", priority=1, due_at=NOW + 3 * DAY, all_day=True)

    todos = open_todos(tmp_path, fill)
    assert [t.text for t in todos] == [
        "pay the rent",
        "call the plumber",
        "dentist",
        "water the plants",
    ]
    assert [t.text for t in overdue(todos, NOW)] == ["pay the rent"]

    lines = render_todos(todos, NOW)
    assert lines[0] == "To-dos: 4 open (🔴 2 high · ⚪ 1 normal · 🔵 1 low), 1 overdue"
    assert lines[1] == "Overdue:"
    assert lines[2] == "  🔴 #2 pay the rent (due 2026-11-29 12:00)"  # Paris time
    assert lines[3] == "Open:"
    assert "  ⚪ #5 dentist (due 2026-12-04)" in lines  # all day: no time
    assert "  🔵 #1 water the plants" in lines
    assert not any("buy stamps" in line for line in lines)


def test_long_lists_are_cut_with_a_count_and_long_texts_clipped(tmp_path: Path) -> None:
    def fill(db: Database) -> None:
        for n in range(SHOWN + 2):
            add(db, f"late {n}", due_at=NOW - DAY - n)
        for n in range(SHOWN + 3):
            add(db, f"later {n} " + "word " * 40)

    lines = render_todos(open_todos(tmp_path, fill), NOW)
    assert "  … and 2 more" in lines and "  … and 3 more" in lines
    items = [line for line in lines if line.startswith("  ⚪")]
    assert len(items) == 2 * SHOWN
    assert all(len(line.split("#", 1)[1]) <= 80 + 10 for line in items)
    assert any(line.endswith("…") for line in items)


def test_nothing_open_reads_as_none_open(tmp_path: Path) -> None:
    assert render_todos([], NOW) == ["To-dos: none open"]
    assert render_todos(open_todos(tmp_path, lambda db: add(db, "done", done=True)), NOW) == [
        "To-dos: none open"
    ]


def test_only_the_asked_chats_are_read(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "familiar.db", [agents_migrations])
    try:
        add(db, "mine", chat_id=5)
        add(db, "theirs", chat_id=6)
        with db.read() as conn:
            got = collect_todos(conn, [5, 7])
        assert {chat: [t.text for t in todos] for chat, todos in got.items()} == {
            5: ["mine"],
            7: [],
        }
    finally:
        db.close()
