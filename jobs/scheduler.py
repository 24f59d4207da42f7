"""Scheduled jobs: registration, one APScheduler in the process, run records, catch-up, alerts.

Schedules fire through APScheduler 3.x. In the Telegram daemon that is python-telegram-bot's own
``JobQueue`` (``JobQueueBackend``): PTB already runs one APScheduler and a second would double the
threads and clocks; the daemon builds it on an ``Application`` that never polls, in the console
channel too. Tests mostly use ``StandaloneBackend``, a plain ``AsyncIOScheduler`` on the running loop. The ``Scheduler`` only
talks to the ``Backend`` interface, so both behave the same.

Every run is a ``job_runs`` row (start, end, outcome, error, output). At start, a job whose last
successful run is older than its period (interval) or which missed a cron time since that run
is run once (coalesced: once, however many periods were missed), the catch-ups staggered by
``catch_up_stagger_s``. A job that raises or times out is recorded and the scheduler goes on;
when failures reach ``failure_alert_after`` in a row, admins are told once for that streak (the
count comes from the table, so a restart does not repeat the alert), and once more on recovery.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from loguru import logger

from jobs.settings import JobsSettings
from memory.db import Database
from memory.health import CheckResult, Status
from memory.storage_faults import storage_fault

JobFn = Callable[[], Awaitable[str | None]]
Fire = Callable[[], Awaitable[None]]
NotifyAdmins = Callable[[str], Awaitable[None]]
_JOB_KWARGS = {"max_instances": 1, "coalesce": True, "misfire_grace_time": 300}


@dataclass
class JobSpec:
    """A job: ``fn`` returns a short account of what it did (stored as the run's output)."""

    name: str
    fn: JobFn
    every: timedelta | None = None
    cron: str | None = None
    timeout_s: float | None = None
    catch_up: bool = True

    def __post_init__(self) -> None:
        if (self.every is None) == (self.cron is None):
            raise ValueError(f"job {self.name}: give exactly one of every= or cron=")

    def trigger(self, tz: ZoneInfo) -> BaseTrigger:
        if self.every is not None:
            return IntervalTrigger(seconds=self.every.total_seconds(), timezone=tz)
        return CronTrigger.from_crontab(self.cron, timezone=tz)  # type: ignore[arg-type]

    def missed_since(self, last_success: datetime, now: datetime, tz: ZoneInfo) -> bool:
        """Whether a scheduled time fell between the last success and now."""
        if self.every is not None:
            return now - last_success >= self.every
        nxt = CronTrigger.from_crontab(self.cron, timezone=tz).get_next_fire_time(  # type: ignore[arg-type]
            None, last_success.astimezone(tz) + timedelta(seconds=1)
        )
        return nxt is not None and nxt <= now


# -- backends ---------------------------------------------------------------------------------
class Backend(ABC):
    """Where schedules live: fires ``fire()`` at the trigger's times (one instance at a time)."""

    @abstractmethod
    def add(self, name: str, trigger: BaseTrigger, fire: Fire) -> None: ...

    def once(self, name: str, when: datetime, fire: Fire) -> None:
        self.add(name, DateTrigger(run_date=when), fire)

    @abstractmethod
    def remove(self, name: str) -> None: ...

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...


class JobQueueBackend(Backend):
    """Schedules on PTB's ``telegram.ext.JobQueue`` (the daemon's one APScheduler).

    The queue holds its ``Application`` only through a weak reference and every job callback
    goes through it, so the backend keeps the application alive: once the garbage collector
    took it, each scheduled run failed with "The application instance is no longer alive"."""

    def __init__(self, application: Any) -> None:
        # Given the Application, not its queue: PTB's JobQueue holds the Application by a weak
        # reference and refuses every job once it is gone, so an Application built only for its
        # queue (the daemon's) must be kept alive here, or no job would ever run.
        self.application = application
        self.job_queue = application.job_queue

    def add(self, name: str, trigger: BaseTrigger, fire: Fire) -> None:
        self.remove(name)

        async def callback(_context: Any) -> None:
            await fire()

        self.job_queue.run_custom(
            callback, job_kwargs={"trigger": trigger, **_JOB_KWARGS}, name=name
        )

    def remove(self, name: str) -> None:
        for job in self.job_queue.get_jobs_by_name(name):
            job.schedule_removal()

    async def start(self) -> None:
        # Application.start() starts the queue in Telegram mode; console mode starts it here.
        if not self.job_queue.scheduler.running:
            await self.job_queue.start()

    async def stop(self) -> None:
        if self.job_queue.scheduler.running:
            await self.job_queue.stop(wait=False)


class StandaloneBackend(Backend):
    """A plain APScheduler ``AsyncIOScheduler`` on the running loop (console mode, tests)."""

    def __init__(self, tz: ZoneInfo) -> None:
        self.scheduler = AsyncIOScheduler(timezone=tz)

    def add(self, name: str, trigger: BaseTrigger, fire: Fire) -> None:
        self.scheduler.add_job(
            fire, trigger=trigger, id=name, name=name, replace_existing=True, **_JOB_KWARGS
        )

    def remove(self, name: str) -> None:
        if self.scheduler.get_job(name) is not None:
            self.scheduler.remove_job(name)

    async def start(self) -> None:
        if not self.scheduler.running:
            self.scheduler.start()

    async def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)


# -- the scheduler ----------------------------------------------------------------------------
@dataclass
class RunRecord:
    job: str
    started_at: datetime
    ended_at: datetime | None
    outcome: str
    error: str | None
    output: str | None
    trigger: str


def _record(r: tuple) -> RunRecord:
    ts = lambda v: datetime.fromtimestamp(v, UTC) if v is not None else None  # noqa: E731
    return RunRecord(r[0], ts(r[1]), ts(r[2]), r[3], r[4], r[5], r[6])  # type: ignore[arg-type]


T = TypeVar("T")


async def ended_write(write: asyncio.Future[T], grace_s: float = 5.0) -> T:
    """Await the write of a run's end (``Database.submit``), which must not be lost: cancelled
    meanwhile (a stop cancels the runs in flight, and the loop's end cancels them again), the
    write is still waited for, up to ``grace_s``, before the cancellation goes on. Else a run
    that had finished stays marked as running: shown "running", or sent again at the next
    start."""
    try:
        return await asyncio.shield(write)
    except asyncio.CancelledError:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        while not write.done() and (left := deadline - loop.time()) > 0:
            try:
                await asyncio.wait([write], timeout=left)
            except asyncio.CancelledError:
                continue
        raise


STOP_GRACE_S = 1.0  # how long a stop waits for runs in flight to finish and be recorded


class Scheduler:
    def __init__(
        self, db: Database, backend: Backend, settings: JobsSettings, notify_admins: NotifyAdmins
    ) -> None:
        self.db = db
        self.backend = backend
        self.settings = settings
        self.tz = ZoneInfo(settings.timezone)
        self.notify_admins = notify_admins
        self.jobs: dict[str, JobSpec] = {}
        self._running: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.started = False

    def register(self, spec: JobSpec) -> None:
        if spec.name in self.jobs:
            raise ValueError(f"job {spec.name} is registered twice")
        spec.trigger(self.tz)  # a bad cron expression fails here, at registration
        self.jobs[spec.name] = spec
        if self.started:
            self.backend.add(spec.name, spec.trigger(self.tz), self._firer(spec.name, "schedule"))

    def _firer(self, name: str, trigger: str) -> Fire:
        async def fire() -> None:
            await self.run_now(name, trigger)

        return fire

    async def start(self) -> list[str]:
        """Schedule every job and the catch-ups; returns the names of jobs caught up."""
        try:
            await self.db.run(self._mark_interrupted)
        except Exception as exc:  # a full disk must not keep the daemon (and its alerts) down
            fault = storage_fault(exc)
            if fault is None:
                raise
            logger.warning(
                "runs cut short by the last stop could not be marked interrupted ({}): "
                "the next start marks them",
                fault,
            )
        for spec in self.jobs.values():
            self.backend.add(spec.name, spec.trigger(self.tz), self._firer(spec.name, "schedule"))
        due = await self.catch_up_due(datetime.now(UTC))
        now = datetime.now(UTC)
        for i, name in enumerate(due):
            when = now + timedelta(seconds=(i + 1) * self.settings.catch_up_stagger_s)
            self.backend.once(f"{name}:catch-up", when, self._firer(name, "catch-up"))
        await self.backend.start()
        self.started = True
        if due:
            logger.info("catching up {} job(s): {}", len(due), ", ".join(due))
        return due

    async def stop(self) -> None:
        """Stop scheduling; runs in flight are cancelled (APScheduler's executor does it) and
        recorded, as finished when they had finished, else as interrupted: waited for here up to
        ``STOP_GRACE_S``, so no record is left "running" for the next start to mark."""
        await self.backend.stop()
        running = [t for t in self._tasks if not t.done()]
        if running:
            await asyncio.wait(running, timeout=STOP_GRACE_S)
        self.started = False

    async def catch_up_due(self, now: datetime) -> list[str]:
        last = await self.db.run(self._last_runs)
        due = []
        for name, spec in sorted(self.jobs.items()):
            if not spec.catch_up or name not in last:
                continue  # never ran: nothing was missed yet
            success = last[name]["success"]
            if success is None or spec.missed_since(success, now, self.tz):
                due.append(name)
        return due

    async def run_now(self, name: str, trigger: str = "manual") -> RunRecord | None:
        """Run a job now and record it; None when it is already running (one instance at a time)."""
        spec = self.jobs[name]
        if name in self._running:
            logger.info("job {} is still running; this {} run is skipped", name, trigger)
            return None
        self._running.add(name)
        started = time.time()
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            run_id = await self._record(self._insert_run, name, started, trigger)
            outcome, error, output = "ok", None, None
            try:
                result = await asyncio.wait_for(
                    spec.fn(), spec.timeout_s or self.settings.job_timeout_s
                )
                output = None if result is None else str(result)[:4000]
            except TimeoutError:
                outcome, error = (
                    "timeout",
                    f"did not finish in {spec.timeout_s or self.settings.job_timeout_s:g} s",
                )
            except asyncio.CancelledError:
                await self._record(self._finish_run, run_id, "interrupted", "cancelled", None)
                raise
            except Exception as exc:  # a failing job is recorded; the scheduler goes on
                logger.opt(exception=exc).warning("job {} failed", name)
                outcome, error = "failed", f"{type(exc).__name__}: {exc}"[:2000]
            # A job that finished is recorded as finished, even when the scheduler is stopping.
            await self._record(self._finish_run, run_id, outcome, error, output)
        finally:
            self._running.discard(name)
            if task is not None:
                self._tasks.discard(task)
        await self._maybe_alert(name, outcome, error)
        return RunRecord(
            name,
            datetime.fromtimestamp(started, UTC),
            datetime.now(UTC),
            outcome,
            error,
            output,
            trigger,
        )

    async def _record(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Write a run record, even if the run is cancelled meanwhile (``ended_write``); a job
        still runs when its record cannot be written (the disk full, the data directory
        read-only: the health job must run exactly then)."""
        try:
            return await ended_write(self.db.submit(fn, *args))
        except sqlite3.Error as exc:
            logger.warning("the run record of a job could not be written: {}", exc)
            return None

    async def _maybe_alert(self, name: str, outcome: str, error: str | None) -> None:
        threshold = self.settings.failure_alert_after
        try:
            outcomes = await self.db.run(self._recent_outcomes, name, threshold + 1)
            if outcome != "ok":
                streak = next((i for i, o in enumerate(outcomes) if o == "ok"), len(outcomes))
                if streak == threshold:
                    await self.notify_admins(
                        f"⚠️ Job {name} failed {threshold} times in a row. Last error: {error}"
                    )
            elif len(outcomes) > threshold and all(o != "ok" for o in outcomes[1 : threshold + 1]):
                await self.notify_admins(f"✅ Job {name} succeeded again.")
        except Exception as exc:  # telling admins must never break the job loop
            logger.warning("could not tell admins about job {}: {}", name, exc)

    # -- queries (run on the database thread) --------------------------------------------------
    async def finished_run(self, name: str, trigger: str) -> RunRecord | None:
        """The run of ``name`` with this trigger that finished ok, if any (a replayed manual
        request finds the run it made)."""
        return await self.db.run(self._finished_run, name, trigger)

    def _finished_run(self, name: str, trigger: str) -> RunRecord | None:
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT job, started_at, ended_at, outcome, error, output, trigger FROM job_runs"
                " WHERE job = ? AND trigger = ? AND outcome = 'ok' ORDER BY id DESC LIMIT 1",
                (name, trigger),
            ).fetchone()
        return _record(row) if row else None

    def _insert_run(self, name: str, started: float, trigger: str) -> int:
        with self.db.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO job_runs (job, started_at, outcome, trigger) VALUES (?,?,?,?)",
                (name, started, "running", trigger),
            )
            return int(cur.lastrowid or 0)

    def _finish_run(self, run_id: int, outcome: str, error: str | None, output: str | None) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE job_runs SET ended_at = ?, outcome = ?, error = ?, output = ? WHERE id = ?",
                (time.time(), outcome, error, output, run_id),
            )

    def _mark_interrupted(self) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE job_runs SET outcome = 'interrupted', error = 'the daemon stopped during the run'"
                " WHERE outcome = 'running'"
            )
        self._prune_runs()

    def _prune_runs(self) -> int:
        """Drop runs older than ``jobs.job_runs_keep_days``, keeping each job's newest run and
        newest success (what the catch-up and health read), however old."""
        cutoff = time.time() - self.settings.job_runs_keep_days * 86400
        with self.db.transaction() as conn:
            cur = conn.execute(
                "DELETE FROM job_runs AS r WHERE started_at < ?"
                " AND started_at < (SELECT max(started_at) FROM job_runs WHERE job = r.job)"
                " AND (outcome != 'ok' OR started_at < (SELECT max(started_at) FROM job_runs"
                " WHERE job = r.job AND outcome = 'ok'))",
                (cutoff,),
            )
            return cur.rowcount

    async def prune_runs(self) -> str:
        """The daily housekeeping step: a daemon that runs for months keeps only recent runs."""
        removed = await self.db.run(self._prune_runs)
        days = self.settings.job_runs_keep_days
        return f"{removed} job run(s) older than {days} days removed"

    def _recent_outcomes(self, name: str, n: int) -> list[str]:
        with self.db.read() as conn:
            return [
                r[0]
                for r in conn.execute(
                    "SELECT outcome FROM job_runs WHERE job = ? AND outcome != 'running' ORDER BY id DESC LIMIT ?",
                    (name, n),
                )
            ]

    def _last_runs(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        with self.db.read() as conn:
            for job, last_any, last_ok in conn.execute(
                "SELECT job, max(started_at), max(CASE WHEN outcome = 'ok' THEN started_at END)"
                " FROM job_runs GROUP BY job"
            ):
                out[job] = {
                    "any": datetime.fromtimestamp(last_any, UTC),
                    "success": datetime.fromtimestamp(last_ok, UTC) if last_ok else None,
                }
        return out

    def runs(self, name: str | None = None, limit: int = 20) -> list[RunRecord]:
        sql = "SELECT job, started_at, ended_at, outcome, error, output, trigger FROM job_runs"
        params: tuple = ()
        if name is not None:
            sql, params = sql + " WHERE job = ?", (name,)
        with self.db.read() as conn:
            return [
                _record(r)
                for r in conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
            ]

    def health_check(self) -> CheckResult:
        """Degraded while any job's latest finished run did not succeed."""
        bad = []
        for name in self.jobs:
            outcomes = self._recent_outcomes(name, 1)
            if outcomes and outcomes[0] != "ok":
                bad.append(f"{name} ({outcomes[0]})")
        if bad:
            return CheckResult(
                "jobs", Status.DEGRADED, "last run did not succeed: " + ", ".join(bad)
            )
        return CheckResult("jobs", Status.HEALTHY, f"{len(self.jobs)} job(s) scheduled")
