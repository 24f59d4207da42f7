"""Settings owned by the jobs package (``[jobs]``, ``FAMILIAR_JOBS__*``)."""

from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, field_validator


class JobsSettings(BaseModel):
    timezone: str = Field("UTC", description="Time zone of schedules and reminders (IANA name).")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        """Checked here, so `config check` says so, not a traceback when the daemon starts."""
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{value!r} is not a known IANA time zone (e.g. UTC, Europe/Berlin)"
            ) from None
        return value

    @field_validator("backup_cron", "digest_cron", "lessons_cron")
    @classmethod
    def _crontab(cls, value: str) -> str:
        """A schedule APScheduler would refuse when the job is registered, refused here."""
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value, timezone=ZoneInfo("UTC"))
        except ValueError as exc:
            raise ValueError(
                f"{value!r} is not a crontab schedule (minute hour day month weekday): {exc}"
            ) from None
        return value

    health_interval_s: int = Field(
        300, ge=10, description="Seconds between scheduled health checks."
    )
    health_grace_s: float = Field(
        180.0,
        ge=0,
        description="Seconds after start during which health problems are not sent to admins "
        "(the model and the channel are still coming up).",
    )
    storage_probe_s: float = Field(
        30.0,
        gt=0,
        description="Seconds between checks that the data directory can still be written "
        "(a change runs the health check at once, so admins hear without waiting for it).",
    )
    min_free_disk_mb: int = Field(
        500, ge=0, description="Free space in the data directory below which health is degraded."
    )
    # -- scheduler ------------------------------------------------------------------------------
    job_timeout_s: int = Field(
        1800, ge=1, description="Default longest run of a scheduled job before it is cancelled."
    )
    catch_up_stagger_s: float = Field(
        20.0,
        ge=0,
        description="Seconds between the catch-up runs started at launch (so they do not all start together).",
    )
    failure_alert_after: int = Field(
        3,
        ge=1,
        description="Consecutive failures of a job after which admins are told (once per streak).",
    )
    job_runs_keep_days: int = Field(
        90, ge=1, description="Days of job run history kept in the database."
    )
    # -- backups --------------------------------------------------------------------------------
    backup_enabled: bool = Field(True, description="Run scheduled backups.")
    backup_cron: str = Field(
        "30 3 * * *",
        description="When scheduled backups run (crontab: minute hour day month weekday).",
    )
    backup_dir: Path | None = Field(
        None, description="Where backup archives go (default: <data dir>/backups)."
    )
    backup_keep_hourly: int = Field(
        0, ge=0, description="Hourly backups kept (newest of each hour)."
    )
    backup_keep_daily: int = Field(7, ge=0, description="Daily backups kept (newest of each day).")
    backup_keep_weekly: int = Field(
        4, ge=0, description="Weekly backups kept (newest of each ISO week)."
    )
    backup_keep_monthly: int = Field(
        6, ge=0, description="Monthly backups kept (newest of each month)."
    )
    backup_pages_per_step: int = Field(
        1024,
        ge=1,
        description="Database pages copied per step of SQLite's online backup (a step holds a read lock).",
    )
    backup_step_sleep_ms: float = Field(
        2.0, ge=0, description="Pause between backup steps, so the daemon's writers get their turn."
    )
    backup_max_age_hours: float = Field(
        36.0, gt=0, description="Health is degraded when the newest backup is older than this."
    )
    # -- summaries and reminders ----------------------------------------------------------------
    summarize_enabled: bool = Field(True, description="Summarise each chat's last completed hour.")
    summarize_minute: int = Field(
        5, ge=0, le=59, description="Minute past each hour at which the hourly summaries run."
    )
    summarize_min_messages: int = Field(
        3, ge=1, description="Hours with fewer new messages in a chat are not summarised."
    )
    reminder_max_days: int = Field(
        1830,
        ge=1,
        description="Reminders further ahead than this many days are refused as a likely typo.",
    )
    # -- digests and lessons --------------------------------------------------------------------
    digest_enabled: bool = Field(
        True, description="Send admins a daily digest (skipped when nothing happened)."
    )
    digest_cron: str = Field(
        "0 8 * * *", description="When the admin digest is sent (crontab, in the jobs time zone)."
    )
    digest_period_hours: int = Field(
        24,
        ge=1,
        le=24 * 14,
        description="Hours a digest looks back (never before the end of the previous digest's period).",
    )
    digest_top_chats: int = Field(
        5, ge=1, description="Busiest chats listed by name in the digest."
    )
    digest_lowest_rated: int = Field(
        3, ge=0, description="Lowest-rated answers quoted in the digest."
    )
    lessons_enabled: bool = Field(
        True, description="Turn each week's 👎 feedback into 'lesson' memories the chat agent sees."
    )
    lessons_cron: str = Field(
        "0 9 * * 1",
        description="When the weekly lessons synthesis runs; it covers the last completed week (Monday-Sunday).",
    )
    lessons_max_per_week: int = Field(
        5, ge=1, le=20, description="Most lessons kept from one week's synthesis."
    )
    lessons_max_feedback: int = Field(
        40,
        ge=1,
        description="Most 👎 answers put into the one model call of a week (those with a reason first).",
    )
    lessons_keep_weeks: int = Field(
        12, ge=1, description="Weeks a lesson stays in the chats' memory before it is retired."
    )
