"""The rows of the archetype pipeline: ``train_pipelines`` and its stages in ``train_stages``.

Plain reads and writes, each in its own transaction; the pipeline's logic is in
``agents.training.pipeline`` (which re-exports ``PipelineStore``).
"""

from __future__ import annotations

import builtins
import json
from typing import Any

from agents.training.errors import JobError
from agents.training.jobs import JobQueue, now
from agents.training.registry import check_slug
from memory.db import Database


class PipelineStore:
    """The rows of ``train_pipelines`` and ``train_stages``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, archetype: str, description: str, chat_id: int | None = None) -> int:
        check_slug(archetype)
        with self.db.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO train_pipelines (archetype, description, chat_id, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (archetype, description, chat_id, now(), now()),
            )
            return int(cur.lastrowid or 0)

    def _rows(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            cur = conn.execute(sql, args)
            names = [c[0] for c in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def get(self, pipeline_id: int) -> dict[str, Any]:
        rows = self._rows("SELECT * FROM train_pipelines WHERE id = ?", (pipeline_id,))
        if not rows:
            raise JobError(
                f"there is no pipeline {pipeline_id}", "`familiar train status` lists them"
            )
        row = rows[0]
        row["stages"] = {
            s["stage"]: s
            for s in self._rows("SELECT * FROM train_stages WHERE pipeline_id = ?", (pipeline_id,))
        }
        for s in row["stages"].values():
            for key in ("inputs", "outputs"):
                s[key] = json.loads(s[key]) if s[key] else None
        job_id = ((row["stages"].get("train") or {}).get("outputs") or {}).get("job_id")
        row["job_progress"] = JobQueue(self.db).get(job_id).progress if job_id is not None else None
        return row

    def list(self, limit: int = 20) -> builtins.list[dict[str, Any]]:
        return self._rows("SELECT * FROM train_pipelines ORDER BY id DESC LIMIT ?", (limit,))

    def unfinished(self) -> builtins.list[int]:
        return [
            r["id"]
            for r in self._rows(
                "SELECT id FROM train_pipelines WHERE state IN ('running', 'waiting')"
            )
        ]

    def set(self, pipeline_id: int, **values: Any) -> None:
        values["updated_at"] = now()
        with self.db.transaction() as conn:
            conn.execute(
                f"UPDATE train_pipelines SET {', '.join(f'{k} = ?' for k in values)} WHERE id = ?",
                (*values.values(), pipeline_id),
            )

    def stage(
        self,
        pipeline_id: int,
        stage: str,
        state: str,
        *,
        inputs: Any = None,
        outputs: Any = None,
        error: str | None = None,
    ) -> None:
        finished = now() if state in ("done", "failed") else None
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO train_stages (pipeline_id, stage, state, inputs, outputs, error, started_at, finished_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (pipeline_id, stage) DO UPDATE SET state = excluded.state,"
                " inputs = coalesce(excluded.inputs, inputs), outputs = coalesce(excluded.outputs, outputs),"
                " error = excluded.error, finished_at = excluded.finished_at",
                (
                    pipeline_id,
                    stage,
                    state,
                    json.dumps(inputs) if inputs is not None else None,
                    json.dumps(outputs) if outputs is not None else None,
                    error,
                    now(),
                    finished,
                ),
            )

    def reset_stage(self, pipeline_id: int, stage: str) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "DELETE FROM train_stages WHERE pipeline_id = ? AND stage = ?", (pipeline_id, stage)
            )

    def record_attempt(
        self, pipeline_id: int, stage: str, attempts: int, retry_at: float | None
    ) -> None:
        """A failed attempt of a stage that will be tried again at ``retry_at`` (epoch seconds)."""
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE train_stages SET attempts = ?, retry_at = ? WHERE pipeline_id = ? AND stage = ?",
                (attempts, retry_at, pipeline_id, stage),
            )

    def reset_attempts(self, pipeline_id: int) -> None:
        """Forget the failed attempts of the stages not done (an admin's retry starts afresh)."""
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE train_stages SET attempts = 0, retry_at = NULL"
                " WHERE pipeline_id = ? AND state != 'done'",
                (pipeline_id,),
            )
