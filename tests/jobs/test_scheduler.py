"""The scheduler with a controlled clock: firing, catch-up once, failures recorded and alerted once."""

from __future__ import annotations

import asyncio
import gc
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from telegram.ext import ApplicationBuilder

from jobs.scheduler import JobQueueBackend, JobSpec, Scheduler, StandaloneBackend
from jobs.settings import JobsSettings
from memory.db import Database
from tests.jobs.conftest import all_test_migrations

SETTINGS = JobsSettings(catch_up_stagger_s=0.05, failure_alert_after=3)


@pytest.fixture
def db(tmp_path: Path):
    d = Database.open(tmp_path / "familiar.db", all_test_migrations())
    yield d
    d.close()


class Alerts:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def __call__(self, text: str) -> None:
        self.sent.append(text)


def counter() -> tuple[list[float], JobSpec.__init__]:  # type: ignore[valid-type]
    calls: list[float] = []

    async def fn() -> str:
        calls.append(time.time())
        return f"run {len(calls)}"

    return calls, fn


async def wait_for(predicate, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def add_run(db: Database, job: str, at: datetime, outcome: str = "ok") -> None:
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO job_runs (job, started_at, ended_at, outcome) VALUES (?,?,?,?)",
            (job, at.timestamp(), at.timestamp() + 1, outcome),
        )


def test_cron_schedule_fires_at_its_time_in_the_configured_zone(db: Database) -> None:
    calls, fn = counter()
    settings = JobsSettings(timezone="Europe/Berlin")
    # 07:59:59.7 UTC is 08:59:59.7 in Berlin (CET): the 09:00 Berlin job is 0.3 s away.
    with time_machine.travel(datetime(2026, 1, 15, 7, 59, 59, 700_000, tzinfo=UTC), tick=True):

        async def main() -> None:
            s = Scheduler(db, StandaloneBackend(ZoneInfo("Europe/Berlin")), settings, Alerts())
            s.register(JobSpec("digest", fn, cron="0 9 * * *"))
            assert await s.start() == []
            await asyncio.sleep(0.1)
            assert calls == []  # not before its time
            await wait_for(lambda: len(calls) == 1)
            await s.stop()

        asyncio.run(main())
    assert datetime.fromtimestamp(calls[0], ZoneInfo("Europe/Berlin")).strftime("%H:%M") == "09:00"
    (run,) = Scheduler(db, StandaloneBackend(ZoneInfo("UTC")), settings, Alerts()).runs("digest")
    assert (run.outcome, run.output, run.trigger) == ("ok", "run 1", "schedule")


def test_a_stop_while_a_finished_run_is_being_recorded_records_it(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduler stopping cancels runs in flight (APScheduler's executor does). A run that
    had finished, its record queued behind other work on the database thread, is still recorded
    ok: before, its write was dropped when the loop ended and the run stayed "running"."""
    import threading

    busy = threading.Event()
    insert = Scheduler._insert_run

    def insert_slowly(self: Scheduler, name: str, started: float, trigger: str) -> int:
        if name == "other":  # holds the database thread while "quick" finishes
            busy.set()
            time.sleep(0.5)
        return insert(self, name, started, trigger)

    monkeypatch.setattr(Scheduler, "_insert_run", insert_slowly)
    calls: list[float] = []

    begun = asyncio.Event()

    async def quick() -> str:
        begun.set()
        await asyncio.to_thread(busy.wait, 5)
        calls.append(time.time())
        return "done"

    async def other() -> None:
        await asyncio.sleep(60)

    async def main() -> None:
        s = Scheduler(db, StandaloneBackend(ZoneInfo("UTC")), SETTINGS, Alerts())
        s.register(JobSpec("quick", quick, every=timedelta(hours=1)))
        s.register(JobSpec("other", other, every=timedelta(hours=1)))
        await s.start()
        s.backend.once("quick:now", datetime.now(UTC), s._firer("quick", "manual"))
        await asyncio.wait_for(begun.wait(), 5)  # quick's run has started and is recorded
        s.backend.once("other:now", datetime.now(UTC), s._firer("other", "manual"))
        await wait_for(lambda: len(calls) == 1)
        await asyncio.sleep(0.05)  # quick's end is queued behind other's start
        await s.stop()

    asyncio.run(main())
    (run,) = Scheduler(db, StandaloneBackend(ZoneInfo("UTC")), SETTINGS, Alerts()).runs("quick")
    assert (run.outcome, run.output) == ("ok", "done")


def test_catch_up_after_downtime_runs_once(db: Database) -> None:
    now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    add_run(db, "hourly", now - timedelta(hours=5))  # missed 4 periods: runs once
    add_run(db, "nightly", now - timedelta(days=1, hours=2))  # 03:30 today was missed
    add_run(db, "fresh", now - timedelta(minutes=10))  # within its period: no catch-up
    add_run(db, "broken", now - timedelta(minutes=1), "failed")  # never succeeded: retried once
    calls = {n: counter() for n in ("hourly", "nightly", "fresh", "broken", "new")}
    with time_machine.travel(now, tick=True):
        planned: list[datetime] = []  # when each catch-up was set to run

        async def main() -> list[str]:
            backend = StandaloneBackend(ZoneInfo("UTC"))
            once = backend.once

            def planning(name: str, when: datetime, fire: Any) -> None:
                planned.append(when)
                once(name, when, fire)

            backend.once = planning  # type: ignore[method-assign]
            s = Scheduler(db, backend, SETTINGS, Alerts())
            s.register(JobSpec("hourly", calls["hourly"][1], every=timedelta(hours=1)))
            s.register(JobSpec("nightly", calls["nightly"][1], cron="30 3 * * *"))
            s.register(JobSpec("fresh", calls["fresh"][1], every=timedelta(hours=1)))
            s.register(JobSpec("broken", calls["broken"][1], every=timedelta(hours=1)))
            s.register(
                JobSpec("new", calls["new"][1], every=timedelta(hours=1))
            )  # never ran: waits
            due = await s.start()
            await wait_for(lambda: all(len(calls[n][0]) == 1 for n in due))
            await asyncio.sleep(0.3)  # a coalesced catch-up is one run, not one per missed period
            await s.stop()
            return due

        due = asyncio.run(main())
    assert due == ["broken", "hourly", "nightly"]
    assert {n: len(c[0]) for n, c in calls.items()} == {
        "hourly": 1,
        "nightly": 1,
        "fresh": 0,
        "broken": 1,
        "new": 0,
    }
    # Staggered: set 0.05 s apart, and none ran before its time (how late each one starts is
    # the machine's load: measured gaps made this test flaky on a busy CI runner).
    gaps = [(b - a).total_seconds() for a, b in zip(planned, planned[1:], strict=False)]
    assert len(planned) == 3 and all(abs(g - 0.05) < 1e-6 for g in gaps)
    starts = [calls[n][0][0] for n in due]
    assert all(
        start >= when.timestamp() - 0.01 for start, when in zip(starts, planned, strict=True)
    )
    triggers = {
        r.job: r.trigger
        for r in Scheduler(db, StandaloneBackend(ZoneInfo("UTC")), SETTINGS, Alerts()).runs()
        if r.outcome == "ok" and r.started_at > now
    }
    assert triggers == {"hourly": "catch-up", "nightly": "catch-up", "broken": "catch-up"}


def test_a_failing_job_is_recorded_and_reported_once(db: Database) -> None:
    alerts = Alerts()
    fail = {"on": True}

    async def flaky() -> str:
        if fail["on"]:
            raise RuntimeError("upstream is down")
        return "fine"

    ok_calls, ok_fn = counter()

    async def main() -> None:
        s = Scheduler(db, StandaloneBackend(ZoneInfo("UTC")), SETTINGS, alerts)
        s.register(JobSpec("flaky", flaky, every=timedelta(hours=1)))
        s.register(JobSpec("other", ok_fn, every=timedelta(hours=1)))
        for _ in range(5):
            record = await s.run_now("flaky")
            assert record is not None and record.outcome == "failed"
            assert record.error == "RuntimeError: upstream is down"
        assert (await s.run_now("other")).outcome == "ok"  # type: ignore[union-attr]
        assert len(alerts.sent) == 1 and "flaky failed 3 times in a row" in alerts.sent[0]
        # A restart does not repeat the alert for the same streak.
        s2 = Scheduler(db, StandaloneBackend(ZoneInfo("UTC")), SETTINGS, alerts)
        s2.register(JobSpec("flaky", flaky, every=timedelta(hours=1)))
        await s2.run_now("flaky")
        assert len(alerts.sent) == 1
        assert s2.health_check().status.name == "DEGRADED"
        fail["on"] = False
        await s2.run_now("flaky")
        assert alerts.sent[1] == "✅ Job flaky succeeded again."
        assert s2.health_check().status.name == "HEALTHY"

    asyncio.run(main())
    assert [
        r.outcome
        for r in Scheduler(db, StandaloneBackend(ZoneInfo("UTC")), SETTINGS, alerts).runs("flaky")
    ] == ["ok"] + ["failed"] * 6


def test_timeout_and_one_instance_at_a_time(db: Database) -> None:
    release = asyncio.Event

    async def main() -> None:
        gate = release()

        async def slow() -> str:
            await gate.wait()
            return "done"

        s = Scheduler(db, StandaloneBackend(ZoneInfo("UTC")), SETTINGS, Alerts())
        s.register(JobSpec("slow", slow, every=timedelta(hours=1), timeout_s=5))

        async def hang() -> str:
            await asyncio.sleep(10)
            return "never"

        s.register(JobSpec("hang", hang, every=timedelta(hours=1), timeout_s=0.1))
        first = asyncio.create_task(s.run_now("slow"))
        await asyncio.sleep(0.05)
        assert await s.run_now("slow") is None  # still running: skipped, not queued
        gate.set()
        assert (await first).output == "done"  # type: ignore[union-attr]
        timed_out = await s.run_now("hang")
        assert timed_out is not None and timed_out.outcome == "timeout"

    asyncio.run(main())


def test_fires_through_pythons_telegram_bot_job_queue(db: Database) -> None:
    calls, fn = counter()

    async def main() -> None:
        application = ApplicationBuilder().token("123:not-a-real-token").build()
        s = Scheduler(db, JobQueueBackend(application), SETTINGS, Alerts())
        s.register(JobSpec("tick", fn, every=timedelta(seconds=0.2)))
        await s.start()
        await wait_for(lambda: len(calls) >= 2)
        await s.stop()

    asyncio.run(main())
    assert all(
        r.outcome == "ok"
        for r in Scheduler(db, StandaloneBackend(ZoneInfo("UTC")), SETTINGS, Alerts()).runs("tick")
    )


def test_fires_when_only_the_backend_keeps_the_application(db: Database) -> None:
    """The daemon's way: an Application built only for its JobQueue, nothing else keeping it."""
    calls, fn = counter()

    async def main() -> None:
        app = ApplicationBuilder().token("123:not-a-real-token").updater(None).build()
        s = Scheduler(db, JobQueueBackend(app), SETTINGS, Alerts())
        del app
        gc.collect()  # PTB's JobQueue keeps the Application only by a weak reference
        s.register(JobSpec("tick", fn, every=timedelta(seconds=0.2)))
        await s.start()
        await wait_for(lambda: len(calls) >= 2)
        await s.stop()

    asyncio.run(main())
    assert len(calls) >= 2


def test_the_daemons_job_queue_keeps_firing_after_the_garbage_collector_ran(
    db: Database, data_dir: Path
) -> None:
    """The queue holds its Application weakly; only the backend keeps it alive (in the daemon
    nothing else refers to it, and every scheduled job failed once it was collected)."""
    from bot.config import load_settings
    from bot.daemon.services import build_job_queue

    calls, fn = counter()

    async def main() -> None:
        backend = build_job_queue(load_settings())
        gc.collect()
        s = Scheduler(db, backend, SETTINGS, Alerts())
        s.register(JobSpec("tick", fn, every=timedelta(seconds=0.2)))
        await s.start()
        await wait_for(lambda: len(calls) >= 2)
        await s.stop()

    asyncio.run(main())
    assert len(calls) >= 2


def test_bad_schedule_is_refused_at_registration(db: Database) -> None:
    s = Scheduler(db, StandaloneBackend(ZoneInfo("UTC")), SETTINGS, Alerts())
    _, fn = counter()
    with pytest.raises(ValueError):
        s.register(JobSpec("bad", fn, cron="61 * * * *"))
    with pytest.raises(ValueError):
        JobSpec("both", fn, cron="* * * * *", every=timedelta(hours=1))
