"""Scheduled health: run the ``HealthRegistry`` and tell admins when the state changes, not every tick.

Nothing is said during a start-up grace period (``jobs.health_grace_s``): the embedding model
and the channel are still coming up, and a restart is not news. The exception is a failing
check of the storage (``URGENT``): a full or read-only data directory is no start-up noise. The
first run after the grace tells admins only if something is wrong; later runs speak when the
overall status or the set of unhealthy checks changes (while failing: of failing checks), and
once on recovery. Snapshots are saved
from the first run on, after the admins were told: with the disk full the snapshot cannot be
written, and that is exactly when they must hear.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from loguru import logger

from memory.db import Database
from memory.health import CheckFn, CheckResult, HealthRegistry, Status, overall

NotifyAdmins = Callable[[str], Awaitable[None]]
_ICON = {Status.HEALTHY: "✅", Status.DEGRADED: "⚠️", Status.FAILING: "🛑"}
URGENT = frozenset({"storage", "disk", "database"})  # failing: told even while starting up


class HealthWatch:
    def __init__(
        self,
        registry: HealthRegistry,
        notify_admins: NotifyAdmins,
        db: Database | None = None,
        *,
        grace_s: float = 0.0,
        started_at: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``started_at`` is on ``clock``'s scale (default: now)."""
        self.registry = registry
        self.notify_admins = notify_admins
        self.db = db
        self.clock = clock
        self.quiet_until = (clock() if started_at is None else started_at) + grace_s
        self._last: tuple[Status, frozenset[tuple[str, Status]]] | None = None

    async def run(self) -> str:
        results = await self.registry.run()
        status = overall(results)
        urgent_now = any(r.status is Status.FAILING and r.name in URGENT for r in results)
        urgent_told = self._last is not None and any(
            name in URGENT and st is Status.FAILING for name, st in self._last[1]
        )  # its recovery is news too
        quiet = self.clock() < self.quiet_until and not (urgent_now or urgent_told)
        changed = False
        if not quiet:
            # While failing, only the failing checks make news: a degraded one flapping beside
            # a full disk (the index, say, failing to load for the same reason) is not.
            worst = Status.FAILING if status is Status.FAILING else Status.DEGRADED
            bad = frozenset((r.name, r.status) for r in results if r.status >= worst)
            state = (status, bad)
            changed = state != self._last and not (self._last is None and status == Status.HEALTHY)
            self._last = state
            if changed:
                if self.clock() < self.quiet_until:  # told early for the storage alone: the
                    # model loading and Telegram connecting are start-up, not part of the news
                    results = [r for r in results if r.name in URGENT or r.status is Status.FAILING]
                await self.notify_admins(self.describe(status, results))
        if self.db is not None:
            try:
                await self.db.run(save_snapshot, self.db, results)
            except Exception:  # e.g. the disk is full: the admins were told above
                logger.opt(exception=True).warning("the health snapshot could not be stored")
        if quiet:
            return f"{status.name.lower()} (starting up: admins not told)"
        return f"{status.name.lower()}{' (admins told)' if changed else ''}"

    @staticmethod
    def describe(status: Status, results: list[CheckResult]) -> str:
        lines = [f"{_ICON[status]} Familiar is {status.name.lower()}"]
        lines += [
            f"{_ICON[r.status]} {r.name}: {r.detail}" for r in results if r.status != Status.HEALTHY
        ]
        return "\n".join(lines)


class StorageWatch:
    """Runs a cheap storage check every ``interval_s`` and calls ``on_change`` when it turns
    bad or good again. A data directory turned read-only fails no write of the open database
    (its files stay open), so without this nobody would hear until the next health run."""

    def __init__(
        self, check: CheckFn, interval_s: float, on_change: Callable[[CheckResult], None]
    ) -> None:
        self.check = check
        self.interval_s = interval_s
        self.on_change = on_change

    async def run(self) -> None:
        last: bool | None = None
        while True:
            try:
                result = await asyncio.to_thread(self.check)
            except Exception:  # a broken probe must not end the watch
                logger.opt(exception=True).warning("the storage check raised")
                await asyncio.sleep(self.interval_s)
                continue
            assert isinstance(result, CheckResult)
            healthy = result.status is Status.HEALTHY
            if last is not None and healthy != last:
                logger.warning("storage: {}", result.detail)
                self.on_change(result)
            last = healthy
            await asyncio.sleep(self.interval_s)


def save_snapshot(db: Database, results: list[CheckResult], at: float | None = None) -> None:
    """Replace the stored snapshot with these results (read by ``familiar health``)."""
    stamp = time.time() if at is None else at
    with db.transaction() as conn:
        conn.execute("DELETE FROM health_snapshot")
        conn.executemany(
            "INSERT INTO health_snapshot (name, status, detail, checked_at) VALUES (?, ?, ?, ?)",
            [(r.name, r.status.name, r.detail, stamp) for r in results],
        )


def load_snapshot(db: Database) -> list[tuple[CheckResult, float]]:
    """The daemon's latest results with the time they were taken; empty when there are none."""
    with db.read() as conn:
        rows = conn.execute(
            "SELECT name, status, detail, checked_at FROM health_snapshot ORDER BY name"
        ).fetchall()
    return [(CheckResult(name, Status[status], detail), at) for name, status, detail, at in rows]
