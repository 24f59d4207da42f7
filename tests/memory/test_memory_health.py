"""The health registry behind ``familiar health``, ``/status`` and the health job: a check that
raises or hangs is reported as failing and never hides the others; the disk and database checks
grade what they find.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from memory.db import Database
from memory.health import (
    CheckResult,
    HealthRegistry,
    Status,
    database_check,
    disk_space_check,
    overall,
)
from memory.schema import migrations

MB = 1024 * 1024


def test_a_raising_and_a_hanging_check_fail_while_the_others_still_report() -> None:
    async def hangs() -> CheckResult:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    def raises() -> CheckResult:
        raise OSError("no such device")

    async def fine() -> CheckResult:
        return CheckResult("async", Status.HEALTHY, "ok")

    registry = HealthRegistry(timeout_s=0.2)
    registry.register("sync", lambda: CheckResult("sync", Status.DEGRADED, "slow"))
    registry.register("async", fine)
    registry.register("hangs", hangs)
    registry.register("raises", raises)
    assert registry.names == ["sync", "async", "hangs", "raises"]

    results = asyncio.run(registry.run())

    assert [(r.name, r.status) for r in results] == [
        ("sync", Status.DEGRADED),
        ("async", Status.HEALTHY),
        ("hangs", Status.FAILING),
        ("raises", Status.FAILING),
    ]
    assert results[2].detail == "the check did not finish in 0.2 s"
    assert results[3].detail == "the check raised OSError: no such device"
    assert overall(results) is Status.FAILING


def test_a_sync_check_that_hands_back_a_coroutine_is_awaited() -> None:
    async def later() -> CheckResult:
        return CheckResult("wrapped", Status.HEALTHY, "awaited")

    registry = HealthRegistry()
    registry.register("wrapped", lambda: later())
    (result,) = asyncio.run(registry.run())
    assert result == CheckResult("wrapped", Status.HEALTHY, "awaited")


def test_overall_is_the_worst_status_and_nothing_is_healthy() -> None:
    assert overall([]) is Status.HEALTHY
    graded = [CheckResult(str(s), s, "") for s in (Status.HEALTHY, Status.DEGRADED)]
    assert overall(graded) is Status.DEGRADED
    assert CheckResult("disk", Status.FAILING, "full").as_dict() == {
        "name": "disk",
        "status": "failing",
        "detail": "full",
    }


def test_disk_check_grades_free_space_against_the_minimum(tmp_path: Path) -> None:
    free_mb = shutil.disk_usage(tmp_path).free // MB
    assert free_mb > 10  # the margins below leave room for other writers meanwhile

    healthy = disk_space_check(tmp_path, min_free_mb=1)()
    assert healthy.status is Status.HEALTHY and str(tmp_path) in healthy.detail
    # Below the minimum: degraded; below a tenth of it: failing.
    degraded = disk_space_check(tmp_path, min_free_mb=free_mb * 2)()
    assert degraded.status is Status.DEGRADED
    assert f"(below {free_mb * 2} MB)" in degraded.detail
    assert disk_space_check(tmp_path, min_free_mb=free_mb * 100)().status is Status.FAILING


def test_database_check_reports_schema_versions_and_a_failed_quick_check(
    tmp_path: Path,
) -> None:
    db = Database.open(tmp_path / "familiar.db", [migrations])
    try:
        result = database_check(db)()
        assert result.status is Status.HEALTHY
        assert f"schema memory {len(migrations.steps)}" in result.detail
    finally:
        db.close()

    class CorruptDatabase:
        """What quick_check says of a damaged file (the real Database refuses to open one)."""

        def quick_check(self) -> str:
            return "*** in database main ***\nOn tree page 342 cell 10: invalid page number -1"

        def schema_versions(self) -> dict[str, int]:
            raise AssertionError("not asked once the check failed")

    failed = database_check(CorruptDatabase())()
    assert failed.status is Status.FAILING
    assert failed.detail.startswith("quick_check: *** in database main ***")
