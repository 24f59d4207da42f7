"""The scheduled backup: write an archive, verify it, prune old ones, alert admins on failure.

Before each backup the ``housekeeping`` steps run: pruning that other packages add through the
composition root (jobs must not know their tables), e.g. the access audit past its retention.
They run first so that what they remove is not written into the new archive; one that fails is
logged and named in the run's account, and the backup goes on. With scheduled backups off, the
daemon runs ``housekeep`` alone at the backup's time.

Also the health check of backup age. Blocking work (the snapshot, compression, verification)
runs in a worker thread; the event loop only waits for it.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from loguru import logger

from jobs.backup import (
    BackupResult,
    BackupSources,
    create_backup,
    list_archives,
)
from jobs.errors import VerifyError
from jobs.redact import SecretPaths
from jobs.retention import RetentionPolicy, prune
from jobs.settings import JobsSettings
from jobs.verify import VerifyReport, verify_archive
from memory.health import CheckResult, Status

NotifyAdmins = Callable[[str], Awaitable[None]]
# One pruning step; returns a short account ("3 access audit row(s) older than 90 days removed").
Housekeeping = Callable[[], Awaitable[str]]


def backup_dir(settings: JobsSettings, data_dir: Path) -> Path:
    return (
        Path(settings.backup_dir).expanduser()
        if settings.backup_dir
        else Path(data_dir) / "backups"
    )


FAILED_SUFFIX = ".failed"


def write_verified(
    sources: BackupSources, dest: Path, settings: JobsSettings, app_version: str
) -> tuple[BackupResult, VerifyReport]:
    """Write an archive and verify it. One that fails verification is renamed ``<name>.failed``:
    kept for inspection, but never counted as a backup (nor by the retention policy)."""
    result = create_backup(
        sources,
        dest,
        app_version=app_version,
        pages_per_step=settings.backup_pages_per_step,
        step_sleep_s=settings.backup_step_sleep_ms / 1000,
    )
    try:
        return result, verify_archive(result.path)
    except VerifyError as exc:
        kept = result.path.with_name(result.path.name + FAILED_SUFFIX)
        os.replace(result.path, kept)
        # The archive was just written from the live data: the fault is there, or on the disk.
        raise VerifyError(
            f"{exc} (the archive is kept as {kept.name}, not counted as a backup)",
            "the live database or the backup disk may be damaged: run `familiar health` and "
            "check the disk; older backups are untouched",
        ) from None


def policy_of(settings: JobsSettings) -> RetentionPolicy:
    return RetentionPolicy(
        settings.backup_keep_hourly,
        settings.backup_keep_daily,
        settings.backup_keep_weekly,
        settings.backup_keep_monthly,
    )


class BackupService:
    """Backups as the daemon runs them (the scheduled job and ``/backup``)."""

    def __init__(
        self,
        settings: JobsSettings,
        data_dir: Path,
        config_path: Path | None,
        app_version: str,
        notify_admins: NotifyAdmins,
        secret_fields: SecretPaths = frozenset(),
    ) -> None:
        self.settings = settings
        self.sources = BackupSources.of(Path(data_dir), config_path, secret_fields)
        self.dest = backup_dir(settings, data_dir)
        self.app_version = app_version
        self.notify_admins = notify_admins
        self._lock = asyncio.Lock()
        self.started_at = time.monotonic()
        self.housekeeping: list[Housekeeping] = []

    async def housekeep(self) -> str:
        """Run every housekeeping step; their accounts, one line ("nothing to do" when none)."""
        accounts = []
        for step in self.housekeeping:
            try:
                accounts.append(await step())
            except Exception as exc:  # pruning is no reason to skip the backup
                logger.opt(exception=True).warning("housekeeping step failed")
                accounts.append(f"housekeeping failed: {type(exc).__name__}: {exc}")
        return "; ".join(accounts) or "nothing to do"

    def run_sync(self) -> tuple[BackupResult, float, list[Path]]:
        result, report = write_verified(self.sources, self.dest, self.settings, self.app_version)
        removed = prune(
            list_archives(self.dest), policy_of(self.settings), ZoneInfo(self.settings.timezone)
        )
        return result, report.seconds, removed

    async def run(self) -> str:
        """One backup now; returns a one-line account (the job's recorded output)."""
        async with self._lock:  # /backup while the scheduled one runs waits for it
            kept = await self.housekeep() if self.housekeeping else ""
            try:
                result, verify_s, removed = await asyncio.to_thread(self.run_sync)
            except VerifyError as exc:
                await self.notify_admins(
                    f"⚠️ The backup just written failed verification: {exc.explain()}"
                )
                raise
        logger.info("backup verified in {:.1f} s; pruned {}", verify_s, len(removed))
        return (
            f"{result.path.name}: {result.size / 1e6:.1f} MB in {result.seconds:.1f} s, "
            f"verified in {verify_s:.1f} s, {len(removed)} old archive(s) removed"
            + (f"; {kept}" if kept else "")
        )

    def newest_age_hours(self, now: datetime | None = None) -> float | None:
        archives = list_archives(self.dest)
        if not archives:
            return None
        return ((now or datetime.now(UTC)) - archives[-1].created).total_seconds() / 3600

    def health_check(self) -> CheckResult:
        age = self.newest_age_hours()
        limit = self.settings.backup_max_age_hours
        if age is None:
            if not self.settings.backup_enabled:
                return CheckResult("backup", Status.HEALTHY, "scheduled backups are off")
            # A new installation has had no chance to back up yet: only an overdue first one is
            # degraded (counted from when this service started).
            if (time.monotonic() - self.started_at) / 3600 <= limit:
                return CheckResult(
                    "backup",
                    Status.HEALTHY,
                    f"no backup in {self.dest} yet; the first is due by the schedule",
                )
            return CheckResult("backup", Status.DEGRADED, f"no backup in {self.dest} yet")
        detail = f"newest backup {age:.1f} h old in {self.dest}"
        if age > limit:
            return CheckResult("backup", Status.DEGRADED, f"{detail} (older than {limit:g} h)")
        return CheckResult("backup", Status.HEALTHY, detail)
