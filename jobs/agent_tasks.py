"""Scheduled agent tasks: "every weekday at 8, tell me which reminders are due today".

A task is a cron schedule and a prompt, kept in ``agent_tasks`` and scheduled on the one
scheduler backend, like reminders. At each run ``run`` (supplied by the composition root: the
chat agent answers the prompt in that chat, with tools, under the user's budget, and sends the
result) is called. Nothing is scheduled, and no model is called, while there are no tasks. At
start, a task whose last run (or creation) is older than a cron time that passed while the
daemon was down runs once, late, with a note; further missed times are not replayed.

A run is delivered at least once: ``running_at`` is set (with ``last_run_at``) before it starts
and cleared when it ends, so a run the process died in (killed, power cut) runs again at the
next start, under a note saying it may repeat part of what was sent. The model is asked again
only then; a run that ended is never replayed.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from loguru import logger

from jobs.errors import ReminderError
from jobs.remindparse import every_with
from jobs.scheduler import Backend, ended_write
from jobs.settings import JobsSettings
from memory.db import Database

MAX_PROMPT = 2000


@dataclass
class AgentTask:
    id: int
    chat_id: int
    user_id: int | None
    cron: str
    prompt: str
    timezone: str
    created_at: float
    last_run_at: float | None
    running_at: float | None = None  # a run began and did not end (the process died in it)

    def describe(self) -> str:
        return f"every `{self.cron}`: {self.prompt}"

    @property
    def run_id(self) -> int | None:
        """The run in progress, named for good: the same for a run the process died in and its
        rerun, so the answer's draft and the stored turn are keyed on it like a Telegram message
        (negative: never a Telegram message id). None while no run is in progress."""
        if self.running_at is None:
            return None
        return -(self.id * 10_000_000_000 + int(self.running_at))

    def trigger(self) -> CronTrigger:
        return CronTrigger.from_crontab(self.cron, timezone=ZoneInfo(self.timezone))


RunTask = Callable[[AgentTask, str | None], Awaitable[None]]
_COLUMNS = "id, chat_id, user_id, cron, prompt, timezone, created_at, last_run_at, running_at"


class AgentTasks:
    def __init__(
        self, db: Database, backend: Backend, settings: JobsSettings, run: RunTask
    ) -> None:
        self.db = db
        self.backend = backend
        self.settings = settings
        self.tz = ZoneInfo(settings.timezone)
        self.run = run

    async def add(self, chat_id: int, user_id: int | None, cron: str, prompt: str) -> AgentTask:
        """Validate (as /every does) and schedule; ReminderError when the schedule is unusable."""
        prompt = " ".join(prompt.split())
        if not prompt:
            raise ReminderError("the task has no prompt", "say what to do at each run")
        if len(prompt) > MAX_PROMPT:
            raise ReminderError("the prompt is too long", f"keep it under {MAX_PROMPT} characters")
        parsed, _ = every_with(cron, prompt, self.tz)
        task = await self.db.run(self._insert, chat_id, user_id, parsed, prompt)
        self._schedule(task)
        return task

    async def active(self, chat_id: int | None) -> list[AgentTask]:
        return await self.db.run(self._query_active, chat_id)

    async def delete(self, chat_id: int, task_id: int) -> bool:
        removed = await self.db.run(self._deactivate, chat_id, task_id)
        if removed:
            self.backend.remove(self._job(task_id))
        return removed

    async def forget_user(self, user_id: int) -> int:
        """Delete the person's tasks (for /forgetme); how many."""
        ids = await self.db.run(self._delete_user, user_id)
        for task_id in ids:
            self.backend.remove(self._job(task_id))
        return len(ids)

    async def start(self) -> int:
        """Schedule every active task; run once, late, those that missed a time while the daemon
        was down, and again those whose run it died in (staggered). Returns how many run now."""
        late = 0
        now = datetime.now(UTC)
        for task in await self.active(None):
            self._schedule(task)
            since = datetime.fromtimestamp(task.last_run_at or task.created_at, UTC)
            missed = task.trigger().get_next_fire_time(None, since + timedelta(seconds=1))
            if task.running_at is not None:
                note = (
                    "(sent again: I was restarted during this run, so part of it may be a repeat)"
                )
            elif missed is not None and missed <= now:
                local = missed.astimezone(ZoneInfo(task.timezone))
                note = f"(late: this was due {local:%Y-%m-%d %H:%M}, while I was offline)"
            else:
                continue
            late += 1
            when = now + timedelta(seconds=late * self.settings.catch_up_stagger_s)
            self.backend.once(f"{self._job(task.id)}:late", when, self._firer(task, note))
        return late

    @staticmethod
    def _job(task_id: int) -> str:
        return f"agent-task:{task_id}"

    def _firer(self, task: AgentTask, note: str | None) -> Callable[[], Awaitable[None]]:
        async def fire() -> None:
            await self._fire(task.id, note)

        return fire

    def _schedule(self, task: AgentTask) -> None:
        self.backend.add(self._job(task.id), task.trigger(), self._firer(task, None))

    async def _fire(self, task_id: int, note: str | None) -> None:
        task = next((t for t in await self.active(None) if t.id == task_id), None)
        if task is None:  # deleted meanwhile
            return
        # Marked first (last_run_at: a restart does not run it late as well; running_at: one
        # that dies in the run runs it again), unmarked once the run ended, whatever its end.
        # The rerun of a run the process died in keeps its start: the run's id (``run_id``).
        started = task.running_at if task.running_at is not None else time.time()
        await self.db.run(self._mark_run, task_id, started)
        try:
            await self.run(replace(task, running_at=started), note)
        except Exception:  # one failing run must not stop the schedule
            logger.opt(exception=True).warning("scheduled task {} failed", task_id)
        # The run ended: unmarked even if a stop cancels it now (else the next start would send
        # it again, "I was restarted during this run").
        await ended_write(self.db.submit(self._mark_run, task_id, None))

    # -- queries (database thread) ------------------------------------------------------------
    def _insert(self, chat_id: int, user_id: int | None, cron: str, prompt: str) -> AgentTask:
        with self.db.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO agent_tasks (chat_id, user_id, cron, prompt, timezone, created_at)"
                " VALUES (?,?,?,?,?,?)",
                (chat_id, user_id, cron, prompt, self.tz.key, time.time()),
            )
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM agent_tasks WHERE id = ?", (cur.lastrowid,)
            ).fetchone()
        return AgentTask(*row)

    def _query_active(self, chat_id: int | None) -> list[AgentTask]:
        sql = f"SELECT {_COLUMNS} FROM agent_tasks WHERE active = 1"
        params: tuple = ()
        if chat_id is not None:
            sql, params = sql + " AND chat_id = ?", (chat_id,)
        with self.db.read() as conn:
            return [AgentTask(*r) for r in conn.execute(sql + " ORDER BY id", params)]

    def _deactivate(self, chat_id: int, task_id: int) -> bool:
        with self.db.transaction() as conn:
            cur = conn.execute(
                "UPDATE agent_tasks SET active = 0 WHERE id = ? AND chat_id = ? AND active = 1",
                (task_id, chat_id),
            )
            return cur.rowcount > 0

    def _delete_user(self, user_id: int) -> list[int]:
        with self.db.transaction() as conn:
            ids = [
                r[0]
                for r in conn.execute("SELECT id FROM agent_tasks WHERE user_id = ?", (user_id,))
            ]
            conn.execute("DELETE FROM agent_tasks WHERE user_id = ?", (user_id,))
        return ids

    def _mark_run(self, task_id: int, started: float | None) -> None:
        """``started``: the run began (``last_run_at`` and ``running_at``); None: it ended."""
        with self.db.transaction() as conn:
            if started is None:
                conn.execute("UPDATE agent_tasks SET running_at = NULL WHERE id = ?", (task_id,))
            else:
                conn.execute(
                    "UPDATE agent_tasks SET last_run_at = ?, running_at = ? WHERE id = ?",
                    (started, started, task_id),
                )
