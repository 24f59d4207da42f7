"""Retention keeps exactly the newest archive of each of the last N hours/days/weeks/months."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from jobs.backup import archive_name, list_archives
from jobs.retention import RetentionPolicy, archives_to_keep, prune


def t(s: str) -> datetime:
    return datetime.fromisoformat(s).replace(tzinfo=UTC)


def test_daily_backups_for_three_months() -> None:
    # One archive a day at 03:30 from 2026-01-01 to 2026-03-31 (a Tuesday).
    days = [t("2026-01-01T03:30") + timedelta(days=i) for i in range(90)]
    archives = [(d.date().isoformat(), d) for d in days]
    keep = archives_to_keep(archives, RetentionPolicy(hourly=0, daily=3, weekly=2, monthly=3))
    assert keep == {
        "2026-03-31",
        "2026-03-30",
        "2026-03-29",  # daily: the last three days
        # weekly: newest of ISO week 14 (Mon 03-30..) is 03-31, of week 13 is Sun 03-29
        # monthly: newest of March, February, January
        "2026-02-28",
        "2026-01-31",
    }


def test_hourly_keeps_newest_of_each_hour_and_the_newest_always() -> None:
    archives = [
        ("a", t("2026-05-01T10:05")),
        ("b", t("2026-05-01T10:50")),
        ("c", t("2026-05-01T11:10")),
        ("d", t("2026-05-01T12:00")),
        ("e", t("2026-05-01T12:59")),
    ]
    assert archives_to_keep(archives, RetentionPolicy(hourly=2, daily=0, weekly=0, monthly=0)) == {
        "e",
        "c",
    }
    assert archives_to_keep(archives, RetentionPolicy(0, 0, 0, 0)) == {"e"}
    assert archives_to_keep([], RetentionPolicy()) == set()


def test_periods_follow_the_configured_time_zone() -> None:
    # 23:30 UTC on 05-01 is already 05-02 in Tokyo: two UTC days, one Tokyo day.
    archives = [
        ("x", t("2026-05-01T23:30")),
        ("y", t("2026-05-02T01:00")),
        ("z", t("2026-05-01T14:00")),
    ]
    policy = RetentionPolicy(hourly=0, daily=2, weekly=0, monthly=0)
    assert archives_to_keep(archives, policy, ZoneInfo("UTC")) == {"y", "x"}
    assert archives_to_keep(archives, policy, ZoneInfo("Asia/Tokyo")) == {"y", "z"}


def test_prune_deletes_exactly_the_rest(tmp_path: Path) -> None:
    start = t("2026-01-01T03:30")
    for i in range(20):
        (tmp_path / archive_name(start + timedelta(days=i))).write_bytes(b"x")
    (tmp_path / ".partial-thing.partial").write_bytes(b"x")  # never touched by prune
    removed = prune(list_archives(tmp_path), RetentionPolicy(0, 5, 0, 0), ZoneInfo("UTC"))
    assert len(removed) == 15
    left = [a.created.date().isoformat() for a in list_archives(tmp_path)]
    assert left == ["2026-01-16", "2026-01-17", "2026-01-18", "2026-01-19", "2026-01-20"]
    assert (tmp_path / ".partial-thing.partial").exists()
