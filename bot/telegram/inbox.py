"""The durable inbox: every Telegram update is written here before Telegram is told it arrived.

Telegram forgets an update once ``getUpdates`` is called with a higher offset (a webhook's once
it answered 200), so the poller stores each batch first and acknowledges it only afterwards.
Rows are ``pending`` until handled, then ``done`` (or ``failed`` after ``max_attempts`` starts
that did not finish it, so one poisonous update cannot crash-loop the daemon). Handled rows
lose their payload: only the ``update_id`` stays, to ignore a redelivered duplicate, and rows
older than ``keep_s`` are pruned. All methods are synchronous; call them through
``Database.run``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from memory.db import Database


class Inbox:
    def __init__(self, db: Database, max_attempts: int = 3, keep_s: float = 3 * 86400) -> None:
        self.db = db
        self.max_attempts = max_attempts
        self.keep_s = keep_s

    def add(self, updates: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
        """Store a batch in one transaction; returns the updates that were new (not duplicates)."""
        new: list[tuple[int, dict[str, Any]]] = []
        now = time.time()
        with self.db.transaction() as conn:
            for update in updates:
                update_id = update.get("update_id")
                if not isinstance(update_id, int):
                    continue
                cur = conn.execute(
                    "INSERT OR IGNORE INTO inbox (update_id, received_at, payload) VALUES (?, ?, ?)",
                    (update_id, now, json.dumps(update, ensure_ascii=False)),
                )
                if cur.rowcount:
                    new.append((update_id, update))
        return new

    def begin(self, update_id: int) -> int:
        """Count one more attempt; returns the count."""
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE inbox SET attempts = attempts + 1 WHERE update_id = ?", (update_id,)
            )
            row = conn.execute(
                "SELECT attempts FROM inbox WHERE update_id = ?", (update_id,)
            ).fetchone()
        return int(row[0]) if row else 0

    def attempts(self, update_id: int) -> int:
        """The attempts counted so far (a retry that is not a new start reads, not counts)."""
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT attempts FROM inbox WHERE update_id = ?", (update_id,)
            ).fetchone()
        return int(row[0]) if row else 0

    def finish(self, update_id: int, state: str = "done") -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE inbox SET state = ?, payload = NULL, done_at = ? WHERE update_id = ?",
                (state, time.time(), update_id),
            )

    def give_up(self) -> list[tuple[int, int, dict[str, Any]]]:
        """Mark failed the pending updates started ``max_attempts`` times (each start ended by a
        crash or kill); returns (update_id, attempts, payload) of each, for the one notice the
        sender and the admins get. Marked before the notice: told at most once."""
        with self.db.transaction() as conn:
            rows = conn.execute(
                "SELECT update_id, attempts, payload FROM inbox"
                " WHERE state = 'pending' AND attempts >= ? AND payload IS NOT NULL"
                " ORDER BY update_id",
                (self.max_attempts,),
            ).fetchall()
            conn.executemany(
                "UPDATE inbox SET state = 'failed', payload = NULL, done_at = ? WHERE update_id = ?",
                [(time.time(), r[0]) for r in rows],
            )
        return [(int(r[0]), int(r[1]), json.loads(r[2])) for r in rows]

    def pending(self) -> list[tuple[int, dict[str, Any]]]:
        """Unhandled updates, oldest first; those started too often are marked failed instead."""
        out: list[tuple[int, dict[str, Any]]] = []
        with self.db.transaction() as conn:
            rows = conn.execute(
                "SELECT update_id, attempts, payload FROM inbox WHERE state = 'pending' ORDER BY update_id"
            ).fetchall()
            for update_id, attempts, payload in rows:
                if attempts >= self.max_attempts or payload is None:
                    conn.execute(
                        "UPDATE inbox SET state = 'failed', payload = NULL, done_at = ? WHERE update_id = ?",
                        (time.time(), update_id),
                    )
                    continue
                out.append((update_id, json.loads(payload)))
        return out

    def next_message(self, update_id: int, chat_id: int) -> dict[str, Any] | None:
        """The first pending message after ``update_id`` in the chat (its update), or None."""
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT payload FROM inbox WHERE state = 'pending' AND update_id > ?"
                " AND payload IS NOT NULL AND json_extract(payload, '$.message.chat.id') = ?"
                " ORDER BY update_id LIMIT 1",
                (update_id, chat_id),
            ).fetchone()
        return json.loads(row[0]) if row else None

    def prune(self) -> int:
        with self.db.transaction() as conn:
            cur = conn.execute(
                "DELETE FROM inbox WHERE state != 'pending' AND done_at < ?",
                (time.time() - self.keep_s,),
            )
            return cur.rowcount

    def counts(self) -> dict[str, int]:
        with self.db.read() as conn:
            return {
                state: n
                for state, n in conn.execute("SELECT state, count(*) FROM inbox GROUP BY state")
            }


def chat_key(update: dict[str, Any]) -> int:
    """The chat an update belongs to, so one chat's updates are handled in order."""
    for field in ("message", "edited_message", "channel_post", "message_reaction"):
        chat = (
            (update.get(field) or {}).get("chat") if isinstance(update.get(field), dict) else None
        )
        if isinstance(chat, dict) and isinstance(chat.get("id"), int):
            return int(chat["id"])
    query = update.get("callback_query")
    if isinstance(query, dict):
        message = query.get("message")
        if isinstance(message, dict) and isinstance(message.get("chat"), dict):
            chat_id = message["chat"].get("id")
            if isinstance(chat_id, int):
                return chat_id
        sender = query.get("from")
        if isinstance(sender, dict) and isinstance(sender.get("id"), int):
            return int(sender["id"])
    return 0


def sender_of(update: dict[str, Any]) -> int | None:
    """The person who sent an update (a message's author, a button's presser, a reaction's)."""
    for field in ("message", "edited_message", "callback_query", "message_reaction"):
        part = update.get(field)
        sender = (
            part.get("from" if field != "message_reaction" else "user")
            if isinstance(part, dict)
            else None
        )
        if isinstance(sender, dict) and isinstance(sender.get("id"), int):
            return int(sender["id"])
    return None
