"""Where the agent loop keeps its answers: ``agent_runs`` (one per answer that offered tools, with
the state of a paused one) and ``agent_tool_calls`` (every call, beside its answer).

Synchronous; the loop calls it through ``Database.run``. A call that changed something keeps what it
returned, so answering the same message again (a restart cut the answer short) does not redo it. A paused answer is committed before the
user is asked, so a restart while waiting loses nothing; ``claim`` takes it back atomically, so a
double press (or a press racing the expiry) carries on at most once.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from memory.db import Database

# The name a search for deferred tools, run by the provider within the answer, is recorded under.
SEARCH_STEP = "tool_search"


@dataclass(frozen=True)
class CallRow:
    step: int
    tool: str
    arguments: dict[str, Any]
    outcome: str
    result_chars: int
    latency_ms: int
    error: str | None
    result: str | None = None  # kept for calls that changed something, and tool searches


@dataclass(frozen=True)
class Waiting:
    run_id: int
    chat_id: int
    user_id: int | None
    waiting_for: str


@dataclass(frozen=True)
class Claim:
    """The outcome of a press on a waiting answer: its state, or why there is none."""

    state: dict[str, Any] | None
    chat_id: int = 0
    user_id: int | None = None
    refusal: str = ""


class RunStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def new_run(self, chat_id: int, user_id: int | None, source_key: str | None = None) -> int:
        now = time.time()
        with self.db.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO agent_runs (chat_id, user_id, created_at, updated_at, status,"
                " source_key) VALUES (?, ?, ?, ?, 'running', ?)",
                (chat_id, user_id, now, now, source_key),
            )
            return int(cur.lastrowid or 0)

    def record_call(
        self,
        run_id: int,
        step: int,
        tool: str,
        arguments: dict[str, Any],
        outcome: str,
        result_chars: int,
        latency_ms: int,
        error: str | None,
        result: str | None = None,
    ) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO agent_tool_calls (run_id, step, tool, arguments, outcome,"
                " result_chars, latency_ms, error, result, created_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    run_id,
                    step,
                    tool,
                    json.dumps(arguments, ensure_ascii=False, default=str)[:4000],
                    outcome,
                    result_chars,
                    latency_ms,
                    error,
                    result,
                    time.time(),
                ),
            )

    def finish(self, run_id: int, status: str, stop_reason: str | None = None) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE agent_runs SET status = ?, stop_reason = ?, state = NULL,"
                " waiting_for = NULL, expires_at = NULL, updated_at = ? WHERE id = ?",
                (status, stop_reason, time.time(), run_id),
            )

    def pause(
        self, run_id: int, state: dict[str, Any], waiting_for: str, expires_at: float
    ) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE agent_runs SET status = 'waiting', state = ?, waiting_for = ?,"
                " expires_at = ?, updated_at = ? WHERE id = ?",
                (json.dumps(state), waiting_for, expires_at, time.time(), run_id),
            )

    def claim(self, run_id: int, user_id: int, now: float) -> Claim:
        """Take a waiting answer back to carry on with it, if ``user_id`` may and it has not
        expired; marks it running in the same transaction."""
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT chat_id, user_id, status, state, expires_at FROM agent_runs WHERE id = ?",
                (run_id,),
            ).fetchone()
            if row is None or row[2] != "waiting":
                return Claim(None, refusal="This request was already answered.")
            chat_id, owner, _, state, expires_at = row
            if owner is not None and owner != user_id:
                return Claim(None, chat_id, owner, "Only the person who asked can answer this.")
            if expires_at is not None and expires_at <= now:
                return Claim(None, chat_id, owner, "This request has expired; nothing was done.")
            conn.execute(
                "UPDATE agent_runs SET status = 'running', state = NULL, updated_at = ?"
                " WHERE id = ?",
                (now, run_id),
            )
        return Claim(json.loads(state), chat_id, owner)

    def expire_due(self, now: float) -> list[Waiting]:
        """Mark every wait past its time expired; returns them (to tell the users)."""
        with self.db.transaction() as conn:
            rows = conn.execute(
                "SELECT id, chat_id, user_id, waiting_for, state FROM agent_runs"
                " WHERE status = 'waiting' AND expires_at <= ?",
                (now,),
            ).fetchall()
            for run_id, _, _, _, state in rows:
                conn.execute(
                    "UPDATE agent_runs SET status = 'expired', state = NULL, updated_at = ?"
                    " WHERE id = ?",
                    (now, run_id),
                )
                pending = (json.loads(state or "{}").get("pending") or [{}])[0]
                conn.execute(
                    "INSERT INTO agent_tool_calls (run_id, step, tool, arguments, outcome,"
                    " error, created_at) VALUES (?, ?, ?, ?, 'expired', ?, ?)",
                    (
                        run_id,
                        json.loads(state or "{}").get("step", 0),
                        pending.get("name", "?"),
                        json.dumps(pending.get("input", {}), ensure_ascii=False)[:4000],
                        "no answer from the user in time",
                        now,
                    ),
                )
        return [Waiting(*r[:4]) for r in rows]

    def forget_user(self, user_id: int) -> int:
        """Every answer of the person (their paused prompts, their calls' arguments): /forgetme."""
        with self.db.transaction() as conn:
            ids = [
                r[0]
                for r in conn.execute("SELECT id FROM agent_runs WHERE user_id = ?", (user_id,))
            ]
            for start in range(0, len(ids), 900):
                part = ids[start : start + 900]
                marks = ",".join("?" * len(part))
                conn.execute(f"DELETE FROM agent_tool_calls WHERE run_id IN ({marks})", part)
                conn.execute(f"DELETE FROM agent_runs WHERE id IN ({marks})", part)
        return len(ids)

    def prune(self, before: float) -> int:
        """Answers that ended before ``before``, with their calls (the daily housekeeping); a
        paused or running answer stays however old. How many answers (their calls go with
        them: ``ON DELETE CASCADE``)."""
        with self.db.transaction() as conn:
            cur = conn.execute(
                "DELETE FROM agent_runs WHERE updated_at < ? AND status NOT IN ('waiting', 'running')",
                (before,),
            )
            return cur.rowcount

    def with_calls(
        self, *, run_id: int | None = None, source_key: str | None = None
    ) -> tuple[int, int] | None:
        """(run id, calls that did something) of an answer, by its id or the latest to a
        message, when its tools did anything; None otherwise: a stopped answer shows them."""
        where, key = (
            ("r.id = ?", run_id) if run_id is not None else ("r.source_key = ?", source_key)
        )
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT r.id, count(c.id) FROM agent_runs r"
                " JOIN agent_tool_calls c ON c.run_id = r.id AND c.outcome = 'ok'"
                f" WHERE {where} GROUP BY r.id ORDER BY r.id DESC LIMIT 1",
                (key,),
            ).fetchone()
        return (int(row[0]), int(row[1])) if row else None

    def done_before(
        self, source_key: str, run_id: int, tool: str, arguments: dict[str, Any]
    ) -> str | None:
        """What the same call returned in an earlier answer to the same message (one cut short
        by a restart and answered again), or None."""
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT c.arguments, c.result FROM agent_tool_calls c"
                " JOIN agent_runs r ON r.id = c.run_id"
                " WHERE r.source_key = ? AND r.id != ? AND c.tool = ? AND c.outcome = 'ok'"
                " AND c.result IS NOT NULL ORDER BY c.id",
                (source_key, run_id, tool),
            ).fetchall()
        return next((r[1] for r in rows if json.loads(r[0]) == arguments), None)

    def peek(self, run_id: int) -> tuple[int, int | None, str, str | None, float | None] | None:
        """(chat id, user id, status, waiting_for, expires_at) of an answer, or None."""
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT chat_id, user_id, status, waiting_for, expires_at FROM agent_runs"
                " WHERE id = ?",
                (run_id,),
            ).fetchone()
        return tuple(row) if row else None  # type: ignore[return-value]

    def run_chat(self, run_id: int) -> int | None:
        with self.db.read() as conn:
            row = conn.execute("SELECT chat_id FROM agent_runs WHERE id = ?", (run_id,)).fetchone()
        return int(row[0]) if row else None

    def calls(self, run_id: int) -> list[CallRow]:
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT step, tool, arguments, outcome, result_chars, latency_ms, error, result"
                " FROM agent_tool_calls WHERE run_id = ? ORDER BY id",
                (run_id,),
            ).fetchall()
        return [CallRow(r[0], r[1], json.loads(r[2]), *r[3:]) for r in rows]
