"""The to-do family: ``add_todo``, ``list_todos`` and ``complete_todo``, over the chat's list in
SQLite (``todos``, agents migration 4), and ``TodoStore``, which ``/todo`` and the tools share.

Due dates are read with ``dateparser`` in the chat's time zone ("tomorrow", "friday 17:00",
"2026-12-24"): unlike a reminder, a to-do's due date is a soft deadline, so a forgiving reader is
worth more than a strict grammar. A date without a time means "by the end of that day".
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from agents.tools.base import Tool, ToolContext, ToolError, ToolResult, ToolSource, ToolSpec
from memory.db import Database

PRIORITIES = ("high", "normal", "low")  # stored as their index: 0 sorts first
ICONS = {"high": "🔴", "normal": "⚪", "low": "🔵"}
MAX_TEXT = 500
MAX_OPEN = 200  # open items per chat; a list longer than this is a sign of a runaway loop
DUE_EXAMPLES = '"tomorrow", "friday 17:00", "in 3 days", "2026-12-24"'
_COLUMNS = "id, chat_id, text, priority, due_at, due_all_day, timezone, created_at, done_at"


MAX_ID = 2**63 - 1  # SQLite's largest INTEGER


class TodoError(ToolError):
    """A to-do could not be added or found; the message says why, for a person or the model."""


@dataclass(frozen=True)
class Todo:
    id: int
    chat_id: int
    text: str
    priority: str
    due_at: float | None
    all_day: bool
    timezone: str
    created_at: float
    done_at: float | None = None

    def overdue(self, now: float) -> bool:
        return self.done_at is None and self.due_at is not None and self.due_at < now

    def due_text(self) -> str:
        if self.due_at is None:
            return ""
        local = datetime.fromtimestamp(self.due_at, ZoneInfo(self.timezone))
        return f"{local:%Y-%m-%d}" if self.all_day else f"{local:%Y-%m-%d %H:%M}"

    def line(self, now: float) -> str:
        """``🔴 #3 pay rent (due 2026-12-04, ⚠️ overdue)``"""
        due = self.due_text()
        notes = ([f"due {due}"] if due else []) + (["⚠️ overdue"] if self.overdue(now) else [])
        return f"{ICONS[self.priority]} #{self.id} {self.text}" + (
            f" ({', '.join(notes)})" if notes else ""
        )

    def as_dict(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "text": self.text,
            "priority": self.priority,
            "due": self.due_text() or None,
            "overdue": self.overdue(now),
            "done": self.done_at is not None,
        }


def _row(r: tuple[Any, ...]) -> Todo:
    return Todo(r[0], r[1], r[2], PRIORITIES[r[3]], r[4], bool(r[5]), r[6], r[7], r[8])


def parse_due(text: str, tz: ZoneInfo, now: datetime | None = None) -> tuple[float, bool]:
    """``text`` read in ``tz``: (unix time, all day). Blocking (dateparser): call off the loop."""
    from dateparser.date import DateDataParser

    base = (now or datetime.now(tz)).astimezone(tz).replace(tzinfo=None)
    parser = DateDataParser(
        languages=["en"],
        settings={
            "TIMEZONE": tz.key,
            "RETURN_AS_TIMEZONE_AWARE": True,
            "PREFER_DATES_FROM": "future",
            "RELATIVE_BASE": base,
            "RETURN_TIME_AS_PERIOD": True,
        },
    )
    data = parser.get_date_data(text.strip()[:100])
    if data.date_obj is None:
        raise TodoError(f"I cannot read {text!r} as a due date; write it like {DUE_EXAMPLES}")
    when = data.date_obj.astimezone(tz)
    if data.period == "time":
        return when.timestamp(), False
    # "friday", "2026-12-24", "next week": due by the end of that day
    return when.replace(hour=23, minute=59, second=59, microsecond=0).timestamp(), True


class TodoStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(
        self,
        chat_id: int,
        user_id: int | None,
        text: str,
        priority: str = "normal",
        due: str | None = None,
        tz: ZoneInfo | None = None,
        key: str | None = None,
    ) -> Todo:
        """Add one; ``key`` names the message that asked, so a replay returns the same item."""
        if key is not None:
            known = await self.db.run(self._by_key, key)
            if known is not None:
                return known
        text = " ".join(text.split())
        if not text:
            raise TodoError("a to-do needs some text")
        if len(text) > MAX_TEXT:
            raise TodoError(f"a to-do is at most {MAX_TEXT} characters; this one has {len(text)}")
        if priority not in PRIORITIES:
            raise TodoError(f"priority must be one of {', '.join(PRIORITIES)}, not {priority!r}")
        zone = tz or ZoneInfo("UTC")
        due_at, all_day = (None, False)
        if due and due.strip():
            due_at, all_day = await asyncio.to_thread(parse_due, due, zone)
        return await self.db.run(
            self._insert,
            chat_id,
            user_id,
            text,
            PRIORITIES.index(priority),
            due_at,
            all_day,
            zone,
            key,
        )

    async def forget_user(self, user_id: int) -> int:
        """/forgetme: the person's to-dos; how many."""

        def delete() -> int:
            with self.db.transaction() as conn:
                return int(conn.execute("DELETE FROM todos WHERE user_id = ?", (user_id,)).rowcount)

        return await self.db.run(delete)

    def _by_key(self, key: str) -> Todo | None:
        with self.db.read() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM todos WHERE source_key = ?", (key,)
            ).fetchone()
        return _row(row) if row else None

    def _insert(
        self,
        chat_id: int,
        user_id: int | None,
        text: str,
        priority: int,
        due_at: float | None,
        all_day: bool,
        tz: ZoneInfo,
        key: str | None = None,
    ) -> Todo:
        with self.db.transaction() as conn:
            (count,) = conn.execute(
                "SELECT count(*) FROM todos WHERE chat_id = ? AND done_at IS NULL", (chat_id,)
            ).fetchone()
            if count >= MAX_OPEN:
                raise TodoError(f"this chat already has {count} open to-dos; complete some first")
            cur = conn.execute(
                "INSERT INTO todos (chat_id, user_id, text, priority, due_at, due_all_day, timezone,"
                " created_at, source_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (chat_id, user_id, text, priority, due_at, int(all_day), tz.key, time.time(), key),
            )
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM todos WHERE id = ?", (cur.lastrowid,)
            ).fetchone()
        return _row(row)

    async def open(self, chat_id: int) -> list[Todo]:
        """Open items, high priority first, then the soonest due, then the oldest."""

        def read() -> list[Todo]:
            with self.db.read() as conn:
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM todos WHERE chat_id = ? AND done_at IS NULL"
                    " ORDER BY priority, due_at IS NULL, due_at, id",
                    (chat_id,),
                ).fetchall()
            return [_row(r) for r in rows]

        return await self.db.run(read)

    async def complete(self, chat_id: int, todo_id: int) -> tuple[Todo, bool]:
        """Mark it done: (the item, whether this call changed it). Only this chat's items."""
        if not 1 <= todo_id <= MAX_ID:  # SQLite cannot even look such an id up
            raise TodoError(f"there is no to-do #{todo_id} in this chat")

        def write() -> tuple[Todo, bool]:
            with self.db.transaction() as conn:
                changed = conn.execute(
                    "UPDATE todos SET done_at = ? WHERE id = ? AND chat_id = ? AND done_at IS NULL",
                    (time.time(), todo_id, chat_id),
                ).rowcount
                row = conn.execute(
                    f"SELECT {_COLUMNS} FROM todos WHERE id = ? AND chat_id = ?",
                    (todo_id, chat_id),
                ).fetchone()
            if row is None:
                raise TodoError(f"there is no to-do #{todo_id} in this chat")
            return _row(row), bool(changed)

        return await self.db.run(write)

    async def delete(self, chat_id: int, todo_id: int, only_by: int | None = None) -> Todo:
        """Remove one item of this chat, open or done: the item as it was. With ``only_by``,
        only an item that person added (in a group: not someone else's)."""
        if not 1 <= todo_id <= MAX_ID:
            raise TodoError(f"there is no to-do #{todo_id} in this chat")

        def write() -> Todo:
            with self.db.transaction() as conn:
                row = conn.execute(
                    f"SELECT {_COLUMNS}, user_id FROM todos WHERE id = ? AND chat_id = ?",
                    (todo_id, chat_id),
                ).fetchone()
                if row is None:
                    raise TodoError(f"there is no to-do #{todo_id} in this chat")
                if only_by is not None and row[-1] != only_by:
                    raise TodoError(
                        f"#{todo_id} was added by someone else: only they or a group admin can"
                        " delete it"
                    )
                conn.execute("DELETE FROM todos WHERE id = ?", (todo_id,))
            return _row(row[:-1])

        return await self.db.run(write)


def render_list(todos: list[Todo], now: float | None = None) -> str:
    """The list as lines, by priority; an empty list says so."""
    if not todos:
        return "No open to-dos."
    at = time.time() if now is None else now
    overdue = sum(t.overdue(at) for t in todos)
    head = f"{len(todos)} open to-do(s)" + (f", {overdue} overdue" if overdue else "") + ":"
    return "\n".join([head, *(t.line(at) for t in todos)])


class AddTodo(Tool):
    spec = ToolSpec(
        name="add_todo",
        description='Add a to-do. due: in the user\'s words, e.g. "friday 17:00".',
        input_schema={
            "type": "object",
            "properties": {
                "text": {"type": "string"},
                "priority": {"type": "string", "enum": list(PRIORITIES)},
                "due": {"type": "string"},
            },
            "required": ["text"],
            "additionalProperties": False,
        },
        activity="📝 adding a to-do…",
    )

    def __init__(self, store: TodoStore) -> None:
        self.store = store

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        todo = await self.store.add(
            ctx.chat_id,
            ctx.user_id,
            str(args.get("text", "")),
            str(args.get("priority") or "normal"),
            args.get("due"),
            ctx.tz,
        )
        return ToolResult(f"added {todo.line(time.time())}", data=todo.as_dict(time.time()))

    def describe(self, args: dict[str, Any]) -> str:
        return f"Add to-do: {str(args.get('text', ''))[:100]!r}"


class ListTodos(Tool):
    spec = ToolSpec(
        name="list_todos",
        description="Open to-dos with ids, by priority.",
        input_schema={"type": "object", "properties": {}, "additionalProperties": False},
        read_only=True,
        activity="📋 reading the to-do list…",
    )

    def __init__(self, store: TodoStore) -> None:
        self.store = store

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        todos = await self.store.open(ctx.chat_id)
        now = time.time()
        return ToolResult(render_list(todos, now), data=[t.as_dict(now) for t in todos])


class CompleteTodo(Tool):
    spec = ToolSpec(
        name="complete_todo",
        description="Mark a to-do done by id (from list_todos).",
        input_schema={
            "type": "object",
            "properties": {"id": {"type": "integer", "minimum": 1, "maximum": MAX_ID}},
            "required": ["id"],
            "additionalProperties": False,
        },
        activity="✅ completing a to-do…",
    )

    def __init__(self, store: TodoStore) -> None:
        self.store = store

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        todo, changed = await self.store.complete(ctx.chat_id, int(args["id"]))
        now = time.time()
        said = "done" if changed else "was already done"
        return ToolResult(f"#{todo.id} {said}: {todo.text}", data=todo.as_dict(now))

    def describe(self, args: dict[str, Any]) -> str:
        return f"Mark to-do #{args.get('id')} done"


class TodoTools(ToolSource):
    name = "todos"

    def __init__(self, store: TodoStore) -> None:
        self.store = store
        self._tools: list[Tool] = [AddTodo(store), ListTodos(store), CompleteTodo(store)]

    def tools(self) -> list[Tool]:
        return list(self._tools)
