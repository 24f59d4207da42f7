"""The review engine's runs in SQLite: one ``review_runs`` row per run, with its transcript.

Every mode of ``agents.review.ReviewEngine`` (three-pass, panel, assessment, judgement) stores
its run here; ``/review``'s buttons read a transcript back ("show the critique", "one more
round") and record the admin's accept / reject. Blocking: the engine calls ``insert`` through
``Database.run``, off the event loop.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from agents.providers.base import Usage
from memory.db import Database


class ReviewRuns:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def forget_user(self, user_id: int) -> int:
        """/forgetme: the runs on the person's messages (task and transcript hold their words)."""

        def delete() -> int:
            with self.db.transaction() as conn:
                cur = conn.execute("DELETE FROM review_runs WHERE user_id = ?", (user_id,))
                return int(cur.rowcount)

        return await self.db.run(delete)

    def insert(
        self,
        kind: str,
        chat_id: int | None,
        user_id: int | None,
        task: str,
        outcome: str,
        rounds: int,
        final: str,
        transcript: dict[str, Any],
        usage: Usage,
    ) -> int:
        with self.db.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO review_runs (ts, kind, chat_id, user_id, task, outcome, rounds,"
                " final_text, transcript, input_tokens, output_tokens)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    datetime.now(UTC).isoformat(),
                    kind,
                    chat_id,
                    user_id,
                    task,
                    outcome,
                    rounds,
                    final,
                    json.dumps(transcript, ensure_ascii=False),
                    usage.total_input,
                    usage.output_tokens,
                ),
            )
            return int(cur.lastrowid or 0)

    def load(self, run_id: int) -> dict[str, Any] | None:
        """The stored transcript with its decision, or None."""
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT transcript, decision FROM review_runs WHERE id = ?", (run_id,)
            ).fetchone()
        if row is None:
            return None
        return dict(json.loads(row[0])) | {"decision": row[1], "run_id": run_id}

    def set_decision(self, run_id: int, decision: Literal["accepted", "rejected"]) -> bool:
        """Record the accept / reject button; False when the run does not exist."""
        with self.db.transaction() as conn:
            cur = conn.execute(
                "UPDATE review_runs SET decision = ? WHERE id = ?", (decision, run_id)
            )
            return cur.rowcount > 0
