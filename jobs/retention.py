"""Which backup archives to keep: the newest of each of the last N hours, days, weeks and months.

A pure function (names and times in, names to keep out) so the rule is tested exactly; the
caller deletes the rest. The rule is the one of borg/restic ``prune``: walking archives newest
first, an archive is kept for a period kind when it is the newest of a period (hour, day, ISO
week, month, in the configured time zone) not yet represented, until N periods are kept. The
newest archive is always kept, whatever the settings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

from jobs.backup import ArchiveInfo


@dataclass(frozen=True)
class RetentionPolicy:
    hourly: int = 0
    daily: int = 7
    weekly: int = 4
    monthly: int = 6


_PERIODS: list[tuple[str, Callable[[datetime], tuple[int, ...]]]] = [
    ("hourly", lambda t: (t.year, t.month, t.day, t.hour)),
    ("daily", lambda t: (t.year, t.month, t.day)),
    ("weekly", lambda t: tuple(t.isocalendar()[:2])),
    ("monthly", lambda t: (t.year, t.month)),
]


def archives_to_keep(
    archives: Iterable[tuple[str, datetime]], policy: RetentionPolicy, tz: tzinfo = ZoneInfo("UTC")
) -> set[str]:
    """Names of the archives that ``policy`` keeps; every other name may be deleted."""
    ordered = sorted(archives, key=lambda a: a[1], reverse=True)
    keep: set[str] = set()
    if ordered:
        keep.add(ordered[0][0])
    for kind, period_of in _PERIODS:
        wanted = getattr(policy, kind)
        seen: set[tuple[int, ...]] = set()
        for name, when in ordered:
            if len(seen) >= wanted:
                break
            period = period_of(when.astimezone(tz))
            if period not in seen:
                seen.add(period)
                keep.add(name)
    return keep


def prune(archives: list[ArchiveInfo], policy: RetentionPolicy, tz: tzinfo) -> list[Path]:
    """Delete the archives the policy does not keep; returns the deleted paths."""
    keep = archives_to_keep(((a.path.name, a.created) for a in archives), policy, tz)
    removed = []
    for a in archives:
        if a.path.name not in keep:
            a.path.unlink(missing_ok=True)
            removed.append(a.path)
    return removed
