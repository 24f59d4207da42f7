"""Reading reminder times ("in 20m", "tomorrow 9:00", "2026-12-01 08:30") and /every schedules.

Hand-written rather than taken from ``dateparser``: that package guesses (it reads "9" as a day
and resolves dates in hundreds of languages), and a reminder that fires at a guessed time is
worse than a clear refusal with examples. The grammar here is small and every failure says what
is accepted.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from jobs.errors import ReminderError

WHEN_EXAMPLES = (
    '"in 20m", "in 1h30m", "in 3 days", "tomorrow 9:00", "today 18:30", "friday 8:00", '
    '"21:15", "2026-12-01 08:30"'
)
EVERY_EXAMPLES = (
    '/every "0 9 * * 1-5" stand-up (09:00 on weekdays), /every 30 18 * * * walk '
    "(18:30 daily), /every @daily water the plants"
)
# Phones turn straight quotes into typographic ones: each opening quote and its closing one.
_QUOTES = {'"': '"', "'": "'", "“": "”", "„": "“", "«": "»", "‘": "’", "`": "`"}
_UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hr": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
    "w": 604800,
    "week": 604800,
    "y": 31536000,
    "year": 31536000,
}
_AMOUNT = re.compile(r"(\d+)\s*([a-z]+?)s?(?=\d|\s|$)")
_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_SHORTCUTS = {
    "@hourly": "0 * * * *",
    "@daily": "0 9 * * *",
    "@weekly": "0 9 * * 1",
    "@monthly": "0 9 1 * *",
}
MIN_EVERY = timedelta(minutes=10)


class _NotATime(ReminderError):
    """The words do not read as a time at all (as opposed to a time that is wrong)."""


def _bad(text: str, why: str) -> ReminderError:
    return ReminderError(
        f"I cannot use {text!r} as a time: {why}", f"write it like {WHEN_EXAMPLES}"
    )


def _not_a_time(text: str) -> ReminderError:
    return _NotATime(f"I cannot read {text!r} as a time", f"write it like {WHEN_EXAMPLES}")


def _day_clock(rest: str | None, text: str) -> time:
    """The time of day after a date or day name: 09:00 when absent."""
    if not rest:
        return time(9, 0)
    clock = _clock(rest)
    if clock is not None:
        return clock
    words = rest.split()
    single = len(words) == 1 or (len(words) == 2 and words[0] == "at")
    if single and any(c.isdigit() for c in rest):
        raise _bad(text, "the time of day is not HH:MM (00:00 to 23:59)")
    raise _not_a_time(text)


def _clock(s: str) -> time | None:
    m = re.fullmatch(r"(?:at\s+)?(\d{1,2})(?::(\d{2}))?\s*(am|pm)?", s.strip())
    if not m:
        return None
    hour, minute = int(m.group(1)), int(m.group(2) or 0)
    if m.group(3):
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if m.group(3) == "pm" else 0)
    if hour > 23 or minute > 59:
        return None
    return time(hour, minute)


def _relative(s: str) -> int | None:
    """Seconds that "in 1h30m" names (an int: any size, no overflow); None when it is not that."""
    body = s[3:].strip() if s.startswith("in ") else None
    if not body:
        return None
    total, pos = 0, 0
    body = body.replace(" and ", " ").replace(",", " ")
    for m in _AMOUNT.finditer(body):
        if body[pos : m.start()].strip():
            return None
        unit = _UNITS.get(m.group(2)) or _UNITS.get(m.group(2).rstrip("s"))
        if unit is None:
            return None
        digits = m.group(1)
        # int() refuses over 4300 digits; anything past 20 is past every limit anyway.
        total += (int(digits) if len(digits) <= 20 else 10**20) * unit
        pos = m.end()
    if pos == 0 or body[pos:].strip():
        return None
    return total


def parse_when(text: str, now: datetime, tz: ZoneInfo, max_days: int = 1830) -> datetime:
    """The moment ``text`` names, as an aware datetime in ``tz``; ReminderError otherwise."""
    s = " ".join(text.lower().split())
    local_now = now.astimezone(tz)
    when: datetime | None = None
    if (seconds := _relative(s)) is not None:
        if seconds < 1:
            raise _bad(text, "that is now")
        if seconds > max_days * 86400:  # checked before any date arithmetic can overflow
            raise _bad(text, f"it is more than {max_days} days away")
        when = local_now + timedelta(seconds=seconds)
    elif m := re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})(?:[ t](.+))?", s):
        clock = _day_clock(m.group(4), text)
        try:
            day = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError:
            raise _bad(text, "there is no such date") from None
        when = datetime.combine(day, clock, tz)
    else:
        first, _, rest = s.partition(" ")
        base: date | None = None
        if first in ("today", "tomorrow"):
            base = local_now.date() + timedelta(days=first == "tomorrow")
        elif first in _WEEKDAYS:
            ahead = (_WEEKDAYS.index(first) - local_now.weekday()) % 7 or 7
            base = local_now.date() + timedelta(days=ahead)
        if base is not None:
            clock = _day_clock(rest, text)
            when = datetime.combine(base, clock, tz)
        elif (bare := _clock(s)) is not None and (
            ":" in s or "am" in s or "pm" in s or s.startswith("at ")
        ):
            when = datetime.combine(local_now.date(), bare, tz)
            if when <= local_now:
                when += timedelta(days=1)  # "21:15" said after 21:15 means tomorrow
    if when is None:
        raise _not_a_time(text)
    # datetime.combine with a ZoneInfo keeps a wall time that may not exist (DST gap): normalise.
    try:
        when = when.astimezone(UTC_).astimezone(tz)
    except OverflowError:  # 9999-12-31 23:59 west of UTC is past the end of the calendar
        raise _bad(text, f"it is more than {max_days} days away") from None
    if when <= local_now:
        raise _bad(text, f"it is in the past (now is {local_now:%Y-%m-%d %H:%M} {tz.key})")
    if when - local_now > timedelta(days=max_days):
        raise _bad(text, f"it is more than {max_days} days away")
    return when


UTC_ = ZoneInfo("UTC")


def parse_when_or_iso(text: str, now: datetime, tz: ZoneInfo, max_days: int = 1830) -> datetime:
    """``parse_when``, or a full ISO-8601 timestamp ("2026-12-02T09:00:00+01:00"; without an
    offset it is read in ``tz``), held to the same rules (in the future, within ``max_days``)."""
    try:
        return parse_when(text, now, tz, max_days)
    except ReminderError as exc:
        try:
            when = datetime.fromisoformat(text.strip())
        except ValueError:
            raise exc from None
    when = (when if when.tzinfo else when.replace(tzinfo=tz)).astimezone(tz)
    local_now = now.astimezone(tz)
    if when <= local_now:
        raise _bad(text, f"it is in the past (now is {local_now:%Y-%m-%d %H:%M} {tz.key})")
    if when - local_now > timedelta(days=max_days):
        raise _bad(text, f"it is more than {max_days} days away")
    return when


def split_remind(
    args: str, now: datetime, tz: ZoneInfo, max_days: int = 1830
) -> tuple[datetime, str]:
    """``/remind WHEN TEXT``: the longest leading words that read as a time, and the rest."""
    words = args.split()
    if not words:
        raise ReminderError("what and when?", f"write /remind WHEN TEXT, WHEN like {WHEN_EXAMPLES}")
    for n in range(min(len(words) - 1, 8), 0, -1):
        try:
            when = parse_when(" ".join(words[:n]), now, tz, max_days)
        except _NotATime:
            continue  # try fewer words
        # A time that is wrong (past, too far, 25:00) is reported, not read as a shorter one.
        return when, " ".join(words[n:])
    try:
        parse_when(args, now, tz, max_days)
    except _NotATime:
        pass
    else:
        raise ReminderError(
            f"nothing to remind about after {args!r}",
            "write /remind WHEN TEXT, e.g. /remind in 20m tea",
        )
    raise ReminderError(
        f"I cannot find a time at the start of {args!r}",
        f"write /remind WHEN TEXT, WHEN like {WHEN_EXAMPLES}",
    )


def every_with(cron: str, text: str, tz: ZoneInfo) -> tuple[str, str]:
    """``split_every`` for a schedule and a text given apart (the agent's tools): a schedule that
    is not five fields (or a shortcut) is refused rather than eating words of the text."""
    cron = " ".join(cron.split())
    if cron.lower() not in _SHORTCUTS and len(cron.split()) != 5:
        raise ReminderError(
            f"{cron!r} is not a crontab schedule",
            f"five fields: minute hour day month weekday; for example {EVERY_EXAMPLES}",
        )
    return split_every(f"{cron} {' '.join(text.split())}", tz)


def _cron_and_text(args: str) -> tuple[str, str]:
    """The schedule (quoted, a shortcut, or five bare fields) and the text after it."""
    args = args.strip()
    if args[:1] in _QUOTES:
        end = args.find(_QUOTES[args[0]], 1)
        if end < 0:
            raise ReminderError(
                "the schedule's closing quote is missing", f"for example {EVERY_EXAMPLES}"
            )
        cron, text = " ".join(args[1:end].split()), " ".join(args[end + 1 :].split())
        return _SHORTCUTS.get(cron.lower(), cron), text
    words = args.split()
    if words and words[0].lower() in _SHORTCUTS:
        return _SHORTCUTS[words[0].lower()], " ".join(words[1:])
    return " ".join(words[:5]), " ".join(words[5:])


def split_every(args: str, tz: ZoneInfo) -> tuple[str, str]:
    """``/every CRON TEXT``: a five-field crontab (or @daily...), quoted or not, and the text;
    validated. Can take a fraction of a second (a schedule that never fires is searched to the
    end of the calendar): call it off the event loop."""
    cron, text = _cron_and_text(args)
    if not text:
        raise ReminderError("give a schedule and a text", f"for example {EVERY_EXAMPLES}")
    try:
        trigger = CronTrigger.from_crontab(cron, timezone=tz)
    except ValueError as exc:
        raise ReminderError(
            f"{cron!r} is not a crontab schedule ({exc})",
            f"five fields: minute hour day month weekday; for example {EVERY_EXAMPLES}",
        ) from None
    now = datetime.now(tz)
    try:
        first = trigger.get_next_fire_time(None, now)
    except (ValueError, OverflowError):  # the search ran off the end of the calendar
        first = None
    if first is None:
        raise ReminderError(
            f"{cron!r} never fires: no date matches it (a 31st in a 30-day month, say)",
            f"for example {EVERY_EXAMPLES}",
        )
    second = trigger.get_next_fire_time(first, first + timedelta(seconds=1))
    if second is not None and second - first < MIN_EVERY:
        raise ReminderError(
            f"{cron!r} fires more often than every {MIN_EVERY.seconds // 60} minutes",
            f"pick a calmer schedule, for example {EVERY_EXAMPLES}",
        )
    return cron, text
