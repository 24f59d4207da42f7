"""The scheduled backup: written, verified, pruned by the retention policy; admins told of failure.

Real SQLite data directories in ``tmp_path``; admins are reached through a hand-written notifier
that records what it was asked to send (the daemon's is the Telegram one).
"""

from __future__ import annotations

import asyncio
import gzip
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.config import load_settings, secret_field_paths
from bot.core.assistant import Assistant
from bot.core.job_commands import JobCommands
from bot.core.signing import ButtonSigner
from bot.core.transport import RecordingTransport
from bot.core.types import Incoming, Sender
from bot.daemon.lifecycle import Lifecycle
from bot.daemon.run import all_migrations, build_health
from bot.daemon.services import build_services
from bot.errors import ConfigError
from jobs.backup import BackupSources, create_backup, list_archives
from jobs.backup_job import BackupService
from jobs.errors import VerifyError
from jobs.health import HealthWatch, load_snapshot
from jobs.reminders import Reminders
from jobs.scheduler import JobSpec, Scheduler, StandaloneBackend
from jobs.settings import JobsSettings
from memory.db import Database
from memory.health import HealthRegistry, Status
from tests.jobs.conftest import all_test_migrations


class Admins:
    """The notifier double: what admins would have been sent, in order."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def __call__(self, text: str) -> None:
        self.sent.append(text)


def service(data_dir: Path, admins: Admins, **settings: object) -> BackupService:
    js = JobsSettings(backup_step_sleep_ms=0, **settings)  # type: ignore[arg-type]
    return BackupService(
        js, data_dir, data_dir / "familiar.toml", "test", admins, secret_field_paths()
    )


def old_archive(data_dir: Path, dest: Path, when: datetime) -> Path:
    sources = BackupSources.of(data_dir)
    return create_backup(sources, dest, app_version="old", now=when, step_sleep_s=0).path


def corrupt_messages_table(db_file: Path) -> None:
    """Garbage over the cells of the messages table's root page: SQLite's online backup copies
    it faithfully, integrity_check of the copy fails."""
    conn = sqlite3.connect(db_file)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'messages'").fetchone()[0]
    conn.close()
    with open(db_file, "r+b") as f:
        f.seek(root * page_size - 300)
        f.write(b"\x07" * 300)


def test_a_scheduled_backup_is_verified_then_old_archives_are_pruned(data_dir: Path) -> None:
    admins = Admins()
    svc = service(
        data_dir,
        admins,
        backup_keep_hourly=0,
        backup_keep_daily=3,
        backup_keep_weekly=0,
        backup_keep_monthly=0,
    )
    dest = data_dir / "backups"
    now = datetime.now(UTC)
    day = timedelta(days=1)
    # Two archives on each of the last four days (morning and evening, UTC).
    made = {}
    for back in (1, 2, 3, 4):
        for hour in (6, 18):
            when = (now - back * day).replace(hour=hour, minute=0, second=0, microsecond=0)
            made[(back, hour)] = old_archive(data_dir, dest, when)

    summary = asyncio.run(svc.run())

    archives = list_archives(dest)
    new = archives[-1].path
    assert new not in made.values()
    # Three days kept: today (the new one), then the newest of yesterday and the day before.
    assert [a.path for a in archives] == [made[(2, 18)], made[(1, 18)], new]
    assert summary.startswith(f"{new.name}: ")
    assert "verified in" in summary and "6 old archive(s) removed" in summary
    assert admins.sent == []
    assert svc.health_check().status is Status.HEALTHY


def test_a_backup_that_fails_verification_alerts_admins_and_is_not_counted(
    data_dir: Path,
) -> None:
    admins = Admins()
    svc = service(data_dir, admins)
    good = asyncio.run(svc.run())
    (kept,) = list_archives(data_dir / "backups")
    assert good.startswith(kept.path.name)
    corrupt_messages_table(data_dir / "familiar.db")

    with pytest.raises(VerifyError, match="integrity_check"):
        asyncio.run(svc.run())

    assert len(admins.sent) == 1
    assert admins.sent[0].startswith("⚠️ The backup just written failed verification: ")
    assert "familiar.db" in admins.sent[0] and "integrity_check" in admins.sent[0]
    assert "the live database or the backup disk may be damaged" in admins.sent[0]
    # The bad archive is kept for inspection but is not a backup: the good one still counts.
    assert [a.path for a in list_archives(data_dir / "backups")] == [kept.path]
    (failed,) = (data_dir / "backups").glob("*.failed")
    assert failed.name in admins.sent[0]


def test_repeated_failures_reach_the_admins_through_the_scheduler(
    data_dir: Path, tmp_path: Path
) -> None:
    admins = Admins()
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the backup directory should be")
    svc = service(data_dir, admins, backup_dir=blocked / "backups", failure_alert_after=2)
    db = Database.open(tmp_path / "jobs.db", all_test_migrations())

    async def main() -> list[str]:
        scheduler = Scheduler(db, StandaloneBackend(ZoneInfo("UTC")), svc.settings, admins)
        scheduler.register(JobSpec("backup", svc.run, cron="0 3 * * *"))
        outcomes = []
        for _ in range(3):
            record = await scheduler.run_now("backup")
            assert record is not None
            outcomes.append(f"{record.outcome}: {record.error}")
        return outcomes

    try:
        outcomes = asyncio.run(main())
    finally:
        db.close()
    assert all(
        o.startswith("failed: BackupError: cannot create the backup directory") for o in outcomes
    )
    # Told once, when the streak reached failure_alert_after, not on every failure.
    assert len(admins.sent) == 1
    assert admins.sent[0].startswith("⚠️ Job backup failed 2 times in a row.")
    assert "cannot create the backup directory" in admins.sent[0]


def test_the_daemons_backup_service_archives_the_settings_without_secrets(
    data_dir: Path,
) -> None:
    # The composition root hands the settings model's secret fields to the backup service.
    token = "123456:AAwired-through-the-composition-root"
    (data_dir / "familiar.toml").write_text(
        f'telegram.token = "{token}"\ntelegram.admins = [42]\n', encoding="utf-8"
    )
    settings = load_settings()
    db = Database.open(data_dir / "familiar.db", all_migrations())
    try:
        services = build_services(
            settings, db, build_health(settings, db), Lifecycle(), started_at=0.0
        )
        result, _, _ = services.backups.run_sync()
    finally:
        db.close()
    assert token.encode() not in gzip.decompress(result.path.read_bytes())
    assert result.manifest["redacted_settings"] == ["telegram.token"]


class CommandRig:
    """/backup as the daemon wires it: the assistant, the scheduler, the backup service."""

    def __init__(self, db: Database, svc: BackupService | None, admins: Admins) -> None:
        backend = StandaloneBackend(ZoneInfo("UTC"))
        settings = svc.settings if svc else JobsSettings(backup_enabled=False)
        self.scheduler = Scheduler(db, backend, settings, admins)
        if svc is not None:
            self.scheduler.register(JobSpec("backup", svc.run, cron="0 3 * * *"))
        self.assistant = Assistant(HealthRegistry())
        reminders = Reminders(db, backend, settings, RecordingTransport().send)
        JobCommands(self.scheduler, reminders, ButtonSigner(b"k" * 32)).register(self.assistant)
        self.transport = RecordingTransport()

    def say(self, text: str, sender: Sender) -> list[str]:
        before = len(self.transport.sent)
        msg = Incoming(sender.id, sender, text, channel="test")
        asyncio.run(self.assistant.handle(msg, self.transport))
        return self.transport.texts[before:]


ADMIN, STRANGER = Sender(1, "Ann", is_admin=True), Sender(2, "Bob")


def test_backup_command_makes_a_verified_backup_for_admins_only(
    data_dir: Path, tmp_path: Path
) -> None:
    admins = Admins()
    db = Database.open(tmp_path / "jobs.db", all_test_migrations())
    try:
        rig = CommandRig(db, service(data_dir, admins), admins)
        assert rig.say("/backup", STRANGER) == ["/backup is for admins only."]
        assert list_archives(data_dir / "backups") == []

        said = rig.say("/backup", ADMIN)
        (archive,) = list_archives(data_dir / "backups")
        assert said[0] == "Backing up…"
        assert said[1].startswith(f"✅ {archive.path.name}: ")
        assert "verified in" in said[1]

        corrupt_messages_table(data_dir / "familiar.db")
        failed = rig.say("/backup", ADMIN)
        assert failed[1].startswith("The backup failed: VerifyError: familiar.db in ")
        assert len(admins.sent) == 1  # and admins were told, with where the bad archive is
    finally:
        db.close()


def test_backup_command_with_scheduled_backups_off_says_how_to_make_one(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "jobs.db", all_test_migrations())
    try:
        rig = CommandRig(db, None, Admins())
        said = rig.say("/backup", ADMIN)
    finally:
        db.close()
    assert len(said) == 1
    assert "jobs.backup_enabled" in said[0] and "familiar backup" in said[0]


def test_backup_health_follows_the_newest_archive(data_dir: Path) -> None:
    fresh = service(data_dir, Admins(), backup_max_age_hours=36)
    check = fresh.health_check()
    assert check.status is Status.HEALTHY and "the first is due by the schedule" in check.detail
    # The same, long after the service started, with still no backup: overdue.
    fresh.started_at -= 40 * 3600
    assert fresh.health_check().status is Status.DEGRADED
    assert "no backup in" in fresh.health_check().detail
    assert service(data_dir, Admins(), backup_enabled=False).health_check().detail == (
        "scheduled backups are off"
    )

    old_archive(data_dir, data_dir / "backups", datetime.now(UTC) - timedelta(hours=48))
    stale = fresh.health_check()
    assert stale.status is Status.DEGRADED and "(older than 36 h)" in stale.detail
    assert 47.9 < (fresh.newest_age_hours() or 0) < 48.1
    old_archive(data_dir, data_dir / "backups", datetime.now(UTC) - timedelta(hours=2))
    assert fresh.health_check().status is Status.HEALTHY
    assert fresh.health_check().detail.startswith("newest backup 2.0 h old")


def test_an_overdue_backup_reaches_the_admins_through_the_health_watch(
    data_dir: Path, tmp_path: Path
) -> None:
    admins = Admins()
    svc = service(data_dir, admins, backup_max_age_hours=36)
    old_archive(data_dir, data_dir / "backups", datetime.now(UTC) - timedelta(hours=50))
    registry = HealthRegistry()
    registry.register("backup", svc.health_check)
    db = Database.open(tmp_path / "jobs.db", all_test_migrations())
    try:
        watch = HealthWatch(registry, admins, db)
        assert asyncio.run(watch.run()) == "degraded (admins told)"
        assert asyncio.run(watch.run()) == "degraded"  # told once, not on every tick
        ((result, _),) = load_snapshot(db)  # what `familiar health` shows of the daemon
    finally:
        db.close()
    assert len(admins.sent) == 1
    assert admins.sent[0].startswith("⚠️ Familiar is degraded\n⚠️ backup: newest backup 50.0 h old")
    assert result.status is Status.DEGRADED and "(older than 36 h)" in result.detail


def audit_rows(db: Database, *ages_days: float) -> None:
    now = datetime.now(UTC).timestamp()
    with db.transaction() as conn:
        for age in ages_days:
            conn.execute(
                "INSERT INTO access_audit (at, user_id, chat_id, event) VALUES (?, 666, 666, ?)",
                (now - age * 86400, f"refused, {age} days ago"),
            )


def daemon_graph(db: Database, **jobs: object):  # type: ignore[no-untyped-def]
    settings = load_settings(jobs={"backup_step_sleep_ms": 0, **jobs})
    return build_services(settings, db, build_health(settings, db), Lifecycle(), started_at=0.0)


@pytest.mark.parametrize("backups", [True, False])
def test_the_daily_backup_job_prunes_the_access_audit_past_its_retention(
    data_dir: Path, backups: bool
) -> None:
    db = Database.open(data_dir / "familiar.db", all_migrations())
    try:
        audit_rows(db, 400, 91, 89, 1)
        services = daemon_graph(db, backup_enabled=backups)
        # With backups off the same daily slot still keeps the house: only the pruning runs.
        job = "backup" if backups else "housekeeping"
        assert services.scheduler.jobs[job].cron == services.scheduler.settings.backup_cron
        record = asyncio.run(services.scheduler.run_now(job))
        assert record is not None and record.outcome == "ok", record
        assert "2 access audit row(s) older than 90 days removed" in (record.output or "")
        with db.read() as conn:
            events = [r[0] for r in conn.execute("SELECT event FROM access_audit ORDER BY at")]
        assert events == ["refused, 89 days ago", "refused, 1 days ago"]
        assert bool(list_archives(data_dir / "backups")) is backups
    finally:
        db.close()


def test_the_audit_retention_is_a_setting(data_dir: Path) -> None:
    db = Database.open(data_dir / "familiar.db", all_migrations())
    try:
        audit_rows(db, 10, 5, 1)
        settings = load_settings(telegram={"audit_keep_days": 3}, jobs={"backup_enabled": False})
        services = build_services(
            settings, db, build_health(settings, db), Lifecycle(), started_at=0.0
        )
        record = asyncio.run(services.scheduler.run_now("housekeeping"))
        assert record is not None and record.output is not None
        assert record.output.split("; ")[0] == "2 access audit row(s) older than 3 days removed"
    finally:
        db.close()
    with pytest.raises(ConfigError, match="telegram.audit_keep_days"):
        load_settings(telegram={"audit_keep_days": 0})


def test_the_daily_housekeeping_prunes_old_job_runs_and_tool_steps(data_dir: Path) -> None:
    """A daemon up for months: job runs and answers' tool steps past their retention go, but each
    job's newest run and newest success stay (the catch-up reads them), and so does an answer
    still waiting for the user's OK."""
    db = Database.open(data_dir / "familiar.db", all_migrations())
    now = datetime.now(UTC).timestamp()
    day = 86400.0
    try:
        with db.transaction() as conn:
            for job, age, outcome in [
                ("digest", 200, "ok"),  # digest's newest success: kept
                ("digest", 150, "failed"),  # its newest run: kept
                ("digest", 300, "ok"),
                ("summarize", 120, "ok"),
                ("summarize", 5, "ok"),
                ("summarize", 1, "failed"),
            ]:
                conn.execute(
                    "INSERT INTO job_runs (job, started_at, ended_at, outcome, trigger)"
                    " VALUES (?, ?, ?, ?, 'schedule')",
                    (job, now - age * day, now - age * day + 1, outcome),
                )
            for run_id, age, status in [(1, 100, "done"), (2, 100, "waiting"), (3, 10, "done")]:
                conn.execute(
                    "INSERT INTO agent_runs (id, chat_id, user_id, created_at, updated_at,"
                    " status) VALUES (?, 7, 7, ?, ?, ?)",
                    (run_id, now - age * day, now - age * day, status),
                )
                conn.execute(
                    "INSERT INTO agent_tool_calls (run_id, step, tool, arguments, outcome,"
                    " created_at) VALUES (?, 1, 'current_time', '{}', 'ok', ?)",
                    (run_id, now - age * day),
                )
        settings = load_settings(jobs={"backup_enabled": False})
        services = build_services(
            settings, db, build_health(settings, db), Lifecycle(), started_at=0.0
        )
        record = asyncio.run(services.scheduler.run_now("housekeeping"))
        assert record is not None and record.outcome == "ok", record
        assert "2 job run(s) older than 90 days removed" in (record.output or "")
        assert "1 answer(s) with their tool steps older than 90 days removed" in (
            record.output or ""
        )
        with db.read() as conn:
            runs = conn.execute(
                "SELECT job, outcome, round((? - started_at) / 86400) FROM job_runs"
                " WHERE job != 'housekeeping' ORDER BY job, started_at",
                (now,),
            ).fetchall()
            answers = conn.execute("SELECT id FROM agent_runs ORDER BY id").fetchall()
            calls = conn.execute("SELECT run_id FROM agent_tool_calls ORDER BY run_id").fetchall()
        assert runs == [
            ("digest", "ok", 200.0),
            ("digest", "failed", 150.0),
            ("summarize", "ok", 5.0),
            ("summarize", "failed", 1.0),
        ]
        assert answers == [(2,), (3,)] and calls == [(2,), (3,)]
    finally:
        db.close()


def test_housekeeping_runs_before_the_snapshot_and_its_failure_does_not_stop_the_backup(
    data_dir: Path,
) -> None:
    svc = service(data_dir, Admins())
    seen: list[int] = []

    async def count_archives() -> str:
        seen.append(len(list_archives(data_dir / "backups")))
        return "looked"

    async def broken() -> str:
        raise OSError("disk hiccup")

    svc.housekeeping += [broken, count_archives]
    summary = asyncio.run(svc.run())
    assert seen == [0]  # before this run's archive was written: pruned rows are not archived
    assert len(list_archives(data_dir / "backups")) == 1
    assert "looked" in summary and "housekeeping failed: OSError: disk hiccup" in summary
