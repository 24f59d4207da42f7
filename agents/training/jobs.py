"""The training queue in SQLite: ``train_jobs`` rows with state, config, progress, result, error.

States: queued → running → succeeded | failed | cancelled; ``retry`` puts a failed or cancelled
job back in the queue (it resumes from its last checkpoint). The worker process and the daemon
each open the database and talk only through these rows.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agents.training.errors import JobError
from agents.training.schema import migrations
from memory.db import Database

__all__ = ["Job", "JobQueue", "migrations"]

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = (
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
)
FINISHED = (SUCCEEDED, FAILED, CANCELLED)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Job:
    id: int
    state: str
    config: dict[str, Any]
    pipeline_id: int | None
    progress: dict[str, Any] | None
    result: dict[str, Any] | None
    error: str | None
    cancel_requested: bool
    pid: int | None
    attempts: int
    created_at: str
    started_at: str | None
    finished_at: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row | tuple, names: list[str]) -> Job:
        d = dict(zip(names, row, strict=True))
        d.pop("updated_at")
        for key in ("config", "progress", "result"):
            d[key] = json.loads(d[key]) if d[key] else ({} if key == "config" else None)
        d["cancel_requested"] = bool(d["cancel_requested"])
        return cls(**d)


class JobQueue:
    """Reads and writes ``train_jobs``; every state change is one transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def _select(self, where: str, args: tuple = ()) -> list[Job]:
        with self.db.read() as conn:
            cur = conn.execute(f"SELECT * FROM train_jobs {where}", args)
            names = [c[0] for c in cur.description]
            return [Job.from_row(r, names) for r in cur.fetchall()]

    def enqueue(self, config: dict[str, Any], pipeline_id: int | None = None) -> int:
        with self.db.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO train_jobs (config, pipeline_id, created_at, updated_at) VALUES (?, ?, ?, ?)",
                (json.dumps(config), pipeline_id, now(), now()),
            )
            return int(cur.lastrowid or 0)

    def get(self, job_id: int) -> Job:
        found = self._select("WHERE id = ?", (job_id,))
        if not found:
            raise JobError(
                f"there is no training job {job_id}", "`familiar train status` lists the jobs"
            )
        return found[0]

    def list(self, limit: int = 20) -> builtins.list[Job]:
        return self._select("ORDER BY id DESC LIMIT ?", (limit,))

    def next_queued(self) -> Job | None:
        found = self._select("WHERE state = 'queued' ORDER BY id LIMIT 1")
        return found[0] if found else None

    def running(self) -> builtins.list[Job]:
        return self._select("WHERE state = 'running' ORDER BY id")

    def _update(
        self, job_id: int, where_states: tuple[str, ...] | None = None, **values: Any
    ) -> bool:
        values["updated_at"] = now()
        sets = ", ".join(f"{k} = ?" for k in values)
        args: list[Any] = [json.dumps(v) if isinstance(v, dict) else v for v in values.values()]
        sql = f"UPDATE train_jobs SET {sets} WHERE id = ?"
        args.append(job_id)
        if where_states:
            sql += f" AND state IN ({', '.join('?' * len(where_states))})"
            args += where_states
        with self.db.transaction() as conn:
            return conn.execute(sql, args).rowcount == 1

    def claim(self, job_id: int) -> bool:
        """queued → running, once: two runners (daemon and `train fit`) never run one job twice."""
        with self.db.transaction():
            job = self.get(job_id)
            if job.state != QUEUED or job.cancel_requested:
                return False
            return self._update(
                job_id,
                (QUEUED,),
                state=RUNNING,
                started_at=now(),
                attempts=job.attempts + 1,
                error=None,
            )

    def start(self, job_id: int, pid: int) -> bool:
        """The worker takes a claimed job (or claims a queued one itself); False if cancelled."""
        with self.db.transaction():
            job = self.get(job_id)
            if job.state == QUEUED and not self.claim(job_id):
                return False
            if job.state not in (QUEUED, RUNNING) or job.cancel_requested:
                return False
            return self._update(job_id, (RUNNING,), pid=pid)

    def requeue(self, job_id: int) -> None:
        """A running job whose worker is gone (daemon restart): back to the queue, to resume."""
        self._update(job_id, (RUNNING,), state=QUEUED, pid=None)

    def set_progress(self, job_id: int, progress: dict[str, Any]) -> None:
        self._update(job_id, (RUNNING,), progress=progress)

    def succeed(self, job_id: int, result: dict[str, Any]) -> None:
        self._update(
            job_id, (RUNNING,), state=SUCCEEDED, result=result, finished_at=now(), pid=None
        )

    def fail(self, job_id: int, error: str) -> bool:
        return self._update(
            job_id, (QUEUED, RUNNING), state=FAILED, error=error, finished_at=now(), pid=None
        )

    def mark_cancelled(self, job_id: int, detail: str = "cancelled") -> None:
        self._update(
            job_id, (QUEUED, RUNNING), state=CANCELLED, error=detail, finished_at=now(), pid=None
        )

    def request_cancel(self, job_id: int) -> Job:
        """A queued job is cancelled at once; a running one is flagged for its worker to stop."""
        with self.db.transaction():
            job = self.get(job_id)
            if job.state in FINISHED:
                raise JobError(
                    f"training job {job_id} has already {job.state}", "nothing to cancel"
                )
            self._update(job_id, None, cancel_requested=1)
            if job.state == QUEUED:
                self.mark_cancelled(job_id)
            return self.get(job_id)

    def cancel_requested(self, job_id: int) -> bool:
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT cancel_requested FROM train_jobs WHERE id = ?", (job_id,)
            ).fetchone()
        return bool(row and row[0])

    def retry(self, job_id: int) -> Job:
        with self.db.transaction():
            job = self.get(job_id)
            if job.state not in (FAILED, CANCELLED):
                raise JobError(
                    f"training job {job_id} is {job.state}; only failed or cancelled jobs can be retried",
                    "wait for it to finish, or cancel it first",
                )
            self._update(
                job_id, None, state=QUEUED, error=None, cancel_requested=0, finished_at=None
            )
            return self.get(job_id)
