"""The conversation tables: turns (``messages``, each also a memory row), the turns around a
hit, and the summaries that compact them. Every function takes the lock through ``db.read()`` or
``db.transaction()``, like ``memory.store``."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from memory.db import Database
from memory.rows import from_epoch, to_epoch
from memory.types import Message


def find_turn(db: Database, chat_id: int, telegram_message_id: int) -> int | None:
    """The id of the stored user turn of a Telegram message (a replayed update finds it here)."""
    turn = turn_of(db, chat_id, telegram_message_id)
    return turn.id if turn is not None else None


def turn_of(db: Database, chat_id: int, telegram_message_id: int) -> Message | None:
    """The stored user turn of a Telegram message, whole."""
    with db.read() as conn:
        r = conn.execute(
            f"SELECT {MSG_COLUMNS} FROM messages WHERE chat_id = ? AND telegram_message_id = ?"
            " AND role = 'user'",
            (chat_id, telegram_message_id),
        ).fetchone()
    return message_of(r) if r else None


def latest_user_turn(db: Database, chat_id: int) -> int | None:
    """The id of the chat's newest user turn."""
    with db.read() as conn:
        r = conn.execute(
            "SELECT max(id) FROM messages WHERE chat_id = ? AND role = 'user'", (chat_id,)
        ).fetchone()
    return int(r[0]) if r and r[0] is not None else None


def answer_to(db: Database, chat_id: int, message_id: int, edit: int | None = None) -> str | None:
    """The stored assistant answer to the user turn ``message_id`` (meta ``reply_to``), if any;
    with ``edit``, the answer given after that edit of it (meta ``edit``, the edit's time)."""
    edited = "AND json_extract(meta, '$.edit') = ?" if edit is not None else ""
    with db.read() as conn:
        r = conn.execute(
            "SELECT text FROM messages WHERE chat_id = ? AND id > ? AND role = 'assistant'"
            f" AND json_extract(meta, '$.reply_to') = ? {edited} ORDER BY id LIMIT 1",
            (chat_id, message_id, message_id, *([edit] if edit is not None else [])),
        ).fetchone()
    return str(r[0]) if r else None


def message_id_of(db: Database, memory_id: int) -> int | None:
    with db.read() as conn:
        r = conn.execute("SELECT id FROM messages WHERE memory_id = ?", (memory_id,)).fetchone()
    return int(r[0]) if r else None


def add_summary(db: Database, chat_id: int, memory_id: int, first: int, last: int) -> None:
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO summaries (chat_id, memory_id, first_message_id, last_message_id, created_at)"
            " VALUES (?,?,?,?,?)",
            (chat_id, memory_id, first, last, time.time()),
        )


def message_of(r: Sequence[Any]) -> Message:
    return Message(
        r[0], r[1], r[2], r[3], r[4], from_epoch(r[5]), r[6], json.loads(r[7]) if r[7] else {}, r[8]
    )


MSG_COLUMNS = "id, chat_id, user_id, role, text, ts, telegram_message_id, meta, memory_id"


def recent_messages(db: Database, chat_id: int, limit: int, *, after_id: int = 0) -> list[Message]:
    """The newest ``limit`` messages of the chat with id above ``after_id``, oldest first."""
    with db.read() as conn:
        rows = conn.execute(
            f"SELECT {MSG_COLUMNS} FROM messages WHERE chat_id = ? AND id > ? ORDER BY id DESC LIMIT ?",
            (chat_id, after_id, limit),
        ).fetchall()
    return [message_of(r) for r in reversed(rows)]


def messages_between(db: Database, chat_id: int, first_id: int, last_id: int) -> list[Message]:
    with db.read() as conn:
        rows = conn.execute(
            f"SELECT {MSG_COLUMNS} FROM messages WHERE chat_id = ? AND id BETWEEN ? AND ? ORDER BY id",
            (chat_id, first_id, last_id),
        ).fetchall()
    return [message_of(r) for r in rows]


def conversation_between(
    db: Database, chat_id: int, start: datetime, end: datetime
) -> list[Message]:
    """The chat's user and assistant turns with ``start <= ts < end``, oldest first (no system
    or tool rows: what a summary of that stretch of conversation is written from)."""
    with db.read() as conn:
        rows = conn.execute(
            f"SELECT {MSG_COLUMNS} FROM messages WHERE chat_id = ? AND ts >= ? AND ts < ?"
            " AND role IN ('user', 'assistant') ORDER BY id",
            (chat_id, to_epoch(start), to_epoch(end)),
        ).fetchall()
    return [message_of(r) for r in rows]


def adjacent_turns(
    db: Database, memory_ids: Sequence[int], n: int
) -> dict[int, tuple[list[int], list[int]]]:
    """For message memories, the memory ids of the ``n`` turns before (oldest first) and after
    each in the same chat: ``{id: (before, after)}``."""
    out: dict[int, tuple[list[int], list[int]]] = {}
    part = [int(i) for i in memory_ids[:900]]
    if not part:
        return out
    with db.read() as conn:
        turns = conn.execute(
            f"SELECT memory_id, id, chat_id FROM messages WHERE memory_id IN ({','.join('?' * len(part))})",
            part,
        ).fetchall()
        for mid, message_id, chat_id in turns:
            before = conn.execute(
                "SELECT memory_id FROM messages WHERE chat_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
                (chat_id, message_id, n),
            ).fetchall()
            after = conn.execute(
                "SELECT memory_id FROM messages WHERE chat_id = ? AND id > ? ORDER BY id LIMIT ?",
                (chat_id, message_id, n),
            ).fetchall()
            out[int(mid)] = (
                [r[0] for r in reversed(before) if r[0] is not None],
                [r[0] for r in after if r[0] is not None],
            )
    return out


def previous_turn_vectors(db: Database, memory_ids: Sequence[int], model: str) -> dict[int, bytes]:
    """For message memories, the stored ``model`` vector of the turn just before each in its
    chat, where that turn is the other side's (the question a reply answers: another role) and
    visible to whoever may see this one (the same person's or the assistant's), as full text
    counts the turns beside it (``memory.schema`` m004): ``{id: vector bytes}``. One person's
    run of turns (a journal kept in a chat) are not each other's context."""
    out: dict[int, bytes] = {}
    with db.read() as conn:
        for start in range(0, len(memory_ids), 900):
            part = [int(i) for i in memory_ids[start : start + 900]]
            out.update(
                conn.execute(
                    "SELECT cur.memory_id, m.embedding FROM messages cur"
                    " JOIN messages p ON p.id = (SELECT max(id) FROM messages"
                    "   WHERE chat_id = cur.chat_id AND id < cur.id)"
                    " JOIN memories m ON m.id = p.memory_id"
                    f" WHERE cur.memory_id IN ({','.join('?' * len(part))})"
                    " AND p.role != cur.role"
                    " AND (p.user_id IS NULL OR cur.user_id IS NULL OR p.user_id = cur.user_id)"
                    " AND m.embedding_model = ? AND m.embedding IS NOT NULL",
                    (*part, model),
                )
            )
    return out


def user_turns(db: Database, user_id: int) -> list[int]:
    """The memory ids of the user's stored turns."""
    with db.read() as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT memory_id FROM messages WHERE user_id = ? AND memory_id IS NOT NULL",
                (user_id,),
            )
        ]


def turns_in_chats(db: Database, chat_ids: Sequence[int]) -> list[int]:
    """The memory ids of every stored turn in these chats."""
    with db.read() as conn:
        return [
            r[0]
            for c in set(chat_ids)
            for r in conn.execute(
                "SELECT memory_id FROM messages WHERE chat_id = ? AND memory_id IS NOT NULL", (c,)
            )
        ]


def latest_summary(db: Database, chat_id: int) -> tuple[str, int, int] | None:
    """(text, memory id, last message id covered) of the chat's newest summary."""
    with db.read() as conn:
        r = conn.execute(
            "SELECT m.text, s.memory_id, s.last_message_id FROM summaries s JOIN memories m ON m.id = s.memory_id"
            " WHERE s.chat_id = ? ORDER BY s.last_message_id DESC, s.id DESC LIMIT 1",
            (chat_id,),
        ).fetchone()
    return (r[0], r[1], r[2]) if r else None
