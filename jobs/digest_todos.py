"""The to-do part of the daily digest: open items by priority and what is overdue.

A to-do belongs to the chat it was added in: each recipient's digest shows only the items of its
own chat (an admin's private chat with the bot), never another person's or a group's list.

Read by SQL from the agents package's ``todos`` table (agents/tools/todos.py), like the rest of
the digest: deterministic, no model, and a database without the table reads as no to-dos.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

PRIORITIES = ("high", "normal", "low")
ICONS = ("🔴", "⚪", "🔵")
SHOWN = 5  # items listed per part; the rest are counted


@dataclass(frozen=True)
class OpenTodo:
    id: int
    chat_id: int
    text: str
    priority: int  # 0 high, 1 normal, 2 low
    due_at: float | None
    all_day: bool
    timezone: str

    def due_text(self) -> str:
        if self.due_at is None:
            return ""
        local = datetime.fromtimestamp(self.due_at, ZoneInfo(self.timezone))
        return f"{local:%Y-%m-%d}" if self.all_day else f"{local:%Y-%m-%d %H:%M}"


def collect_todos(conn: sqlite3.Connection, chat_ids: Iterable[int]) -> dict[int, list[OpenTodo]]:
    """The open to-dos of each of ``chat_ids`` (and of no other chat), by priority, then the
    soonest due (call inside the digest's read)."""
    out: dict[int, list[OpenTodo]] = {}
    for chat_id in dict.fromkeys(chat_ids):
        rows = conn.execute(
            "SELECT id, chat_id, text, priority, due_at, due_all_day, timezone FROM todos"
            " WHERE chat_id = ? AND done_at IS NULL ORDER BY priority, due_at IS NULL, due_at, id",
            (chat_id,),
        ).fetchall()
        out[chat_id] = [OpenTodo(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6]) for r in rows]
    return out


def overdue(todos: list[OpenTodo], at: float) -> list[OpenTodo]:
    return [t for t in todos if t.due_at is not None and t.due_at < at]


def render_todos(todos: list[OpenTodo], at: float, clip_to: int = 80) -> list[str]:
    """The digest's lines about one chat's to-dos; none when there are none open."""
    if not todos:
        return ["To-dos: none open"]
    counts = [sum(t.priority == p for t in todos) for p in range(3)]
    late = overdue(todos, at)
    lines = [
        f"To-dos: {len(todos)} open ("
        + " · ".join(f"{ICONS[p]} {counts[p]} {PRIORITIES[p]}" for p in range(3) if counts[p])
        + ")"
        + (f", {len(late)} overdue" if late else "")
    ]

    def item(t: OpenTodo) -> str:
        text = " ".join(t.text.split())
        text = text if len(text) <= clip_to else text[: clip_to - 1] + "…"
        due = f" (due {t.due_text()})" if t.due_at is not None else ""
        return f"  {ICONS[t.priority]} #{t.id} {text}{due}"

    if late:
        lines.append("Overdue:")
        lines += [item(t) for t in late[:SHOWN]]
        if len(late) > SHOWN:
            lines.append(f"  … and {len(late) - SHOWN} more")
    rest = [t for t in todos if t not in late]
    if rest:
        lines.append("Open:")
        lines += [item(t) for t in rest[:SHOWN]]
        if len(rest) > SHOWN:
            lines.append(f"  … and {len(rest) - SHOWN} more")
    return lines
