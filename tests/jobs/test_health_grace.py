"""Health notices wait out the start-up grace period, then speak only on a change of state."""

from __future__ import annotations

import asyncio
from pathlib import Path

from jobs.health import HealthWatch, load_snapshot
from jobs.schema import migrations as jobs_migrations
from memory.db import Database
from memory.health import CheckResult, HealthRegistry, Status
from memory.schema import migrations as memory_migrations


class Clock:
    """Monotonic seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _watch(
    state: dict[str, Status], clock: Clock, db: Database | None = None
) -> tuple[HealthWatch, list[str]]:
    registry = HealthRegistry()
    registry.register("model", lambda: CheckResult("model", state["model"], "loading"))
    told: list[str] = []

    async def notify(text: str) -> None:
        told.append(text)

    watch = HealthWatch(registry, notify, db, grace_s=180, started_at=clock.now, clock=clock)
    return watch, told


def test_a_start_that_settles_within_the_grace_period_tells_no_one(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "f.db", [memory_migrations, jobs_migrations])
    clock = Clock()
    state = {"model": Status.DEGRADED}
    watch, told = _watch(state, clock, db)
    asyncio.run(watch.run())  # the run at start, before the model is up
    assert [(r.name, r.status) for r, _ in load_snapshot(db)] == [("model", Status.DEGRADED)]
    clock.now += 60
    state["model"] = Status.HEALTHY
    asyncio.run(watch.run())
    clock.now += 300
    asyncio.run(watch.run())
    db.close()
    assert told == []


def test_a_problem_that_outlasts_the_grace_period_is_told_once_then_changes_only() -> None:
    clock = Clock()
    state = {"model": Status.DEGRADED}
    watch, told = _watch(state, clock)
    for _ in range(3):
        asyncio.run(watch.run())
        clock.now += 59
    assert told == []  # 177 s in: still starting up
    clock.now += 4
    asyncio.run(watch.run())
    assert len(told) == 1 and told[0].startswith("⚠️ Familiar is degraded")
    clock.now += 300
    asyncio.run(watch.run())
    assert len(told) == 1  # the same state is not news
    state["model"] = Status.HEALTHY
    clock.now += 300
    asyncio.run(watch.run())
    assert told[1:] == ["✅ Familiar is healthy"]


def test_a_storage_failure_told_while_starting_up_leaves_out_the_start_up_noise() -> None:
    """Found restarting the daemon on a full disk: its alert listed "memory_index: still
    loading" and "telegram: connecting to Telegram" beside the full disk, start-up noise the
    grace period exists to keep from admins."""
    clock = Clock()
    state = {"model": Status.DEGRADED}
    watch, told = _watch(state, clock)
    watch.registry.register(
        "storage", lambda: CheckResult("storage", Status.FAILING, "the disk is full")
    )
    asyncio.run(watch.run())
    assert told == ["🛑 Familiar is failing\n🛑 storage: the disk is full"]
