"""Scheduled health: run the ``HealthRegistry`` and tell admins when the state changes, not every tick.

Nothing is said during a start-up grace period (``jobs.health_grace_s``): the embedding model
and the channel are still coming up, and a restart is not news. The first run after it tells
admins only if something is wrong; later runs speak when the overall status or the set of
unhealthy checks changes, and once on recovery. Snapshots are saved from the first run on.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from memory.db import Database
from memory.health import CheckResult, HealthRegistry, Status, overall

NotifyAdmins = Callable[[str], Awaitable[None]]
_ICON = {Status.HEALTHY: "✅", Status.DEGRADED: "⚠️", Status.FAILING: "🛑"}


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
        if self.db is not None:
            await self.db.run(save_snapshot, self.db, results)
        status = overall(results)
        if self.clock() < self.quiet_until:
            return f"{status.name.lower()} (starting up: admins not told)"
        bad = frozenset((r.name, r.status) for r in results if r.status != Status.HEALTHY)
        state = (status, bad)
        changed = state != self._last and not (self._last is None and status == Status.HEALTHY)
        self._last = state
        if changed:
            await self.notify_admins(self.describe(status, results))
        return f"{status.name.lower()}{' (admins told)' if changed else ''}"

    @staticmethod
    def describe(status: Status, results: list[CheckResult]) -> str:
        lines = [f"{_ICON[status]} Familiar is {status.name.lower()}"]
        lines += [
            f"{_ICON[r.status]} {r.name}: {r.detail}" for r in results if r.status != Status.HEALTHY
        ]
        return "\n".join(lines)


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
