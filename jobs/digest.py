"""The daily admin digest: activity, feedback, failed jobs, model usage and backup age, in plain text,
followed by a chart of the messages per hour where a channel can show pictures.

Built from SQL counts alone, never by a model: it is deterministic, costs no tokens, and says the
same thing however often it is rendered. When nothing happened in the period (no messages, no
feedback, no failed job) it is skipped without a message. A digest covers the configured hours
before it runs, but never reaches back before the end of the last digest sent (``job_digests``),
so a catch-up run after downtime and the next scheduled one do not report the same hours twice.

It reads other packages' tables read-only, by SQL: memory's ``messages``, the bot's
``feedback``/``feedback_answers`` (jobs must not import bot), agents' ``llm_usage`` and ``todos``
(open to-dos by priority, the overdue ones; an overdue item is news even on a quiet day; each
admin's copy lists only the to-dos of that admin's own chat with the bot), our own
``job_runs``. A table that does not exist (a package not installed, an old database) reads as
empty, so the digest still goes out with what there is.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from loguru import logger

from agents.llm import LLM
from jobs import charts
from jobs.digest_todos import OpenTodo, collect_todos, overdue, render_todos
from jobs.lessons import LessonMemory, WeeklyLessons
from jobs.scheduler import JobSpec, Scheduler
from jobs.settings import JobsSettings
from memory.db import Database


class DigestAdmins(Protocol):
    """Who gets the digest: each admin, in their private chat with the bot (its id is theirs)."""

    @property
    def admins(self) -> Sequence[int]: ...

    async def to(self, chat_id: int, text: str) -> None:
        """Send one admin their copy; a failure is logged there, not raised."""


# Sends a picture to the admins: (PNG bytes, caption).
PhotoAdmins = Callable[[bytes, str], Awaitable[None]]
BackupAge = Callable[[], float | None]
FAILED_OUTCOMES = ("failed", "timeout", "interrupted")
MAX_CHARS = 3800  # one Telegram message holds 4096


@dataclass
class LowRated:
    answer_id: int
    chat_id: int
    prompt: str
    answer: str
    ups: int
    downs: int
    reasons: list[str]


@dataclass
class JobFailure:
    job: str
    count: int
    last_at: float
    outcome: str
    error: str | None


@dataclass
class UsageLine:
    purpose: str
    calls: int
    tokens: int
    cost_usd: float
    failed: int


@dataclass
class DigestData:
    """What the period held; ``render`` turns it into the message."""

    start: datetime
    end: datetime
    chats: list[tuple[int, int, int]] = field(default_factory=list)  # (chat, messages, users)
    messages: int = 0
    users: int = 0
    thumbs_up: int = 0
    thumbs_down: int = 0
    lowest: list[LowRated] = field(default_factory=list)
    failures: list[JobFailure] = field(default_factory=list)
    usage: list[UsageLine] = field(default_factory=list)
    backup_age_h: float | None = None
    backup_note: str | None = None  # set when the age could not be read
    # The open to-dos of each recipient's chat (only theirs are read); None: no todos table.
    todos: dict[int, list[OpenTodo]] | None = None
    hourly: list[int] = field(default_factory=list)  # messages in each hour of the period

    def hour_labels(self) -> list[str]:
        return [
            f"{(self.start + timedelta(hours=i)).astimezone(UTC):%H:00}"
            for i in range(len(self.hourly))
        ]

    def todos_of(self, chat_id: int) -> list[OpenTodo] | None:
        return None if self.todos is None else self.todos.get(chat_id, [])

    def empty_for(self, chat_id: int) -> bool:
        # An overdue to-do is news even on a quiet day, to the chat it belongs to.
        late = overdue(self.todos_of(chat_id) or [], self.end.timestamp())
        quiet = not self.messages and not (self.thumbs_up or self.thumbs_down)
        return quiet and not self.failures and not late


def clip(text: str | None, n: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def money(usd: float) -> str:
    return f"${usd:.2f}" if usd >= 0.01 or usd == 0 else f"${usd:.4f}"


def _has(conn: sqlite3.Connection, table: str) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
        is not None
    )


def collect(
    db: Database,
    start: datetime,
    end: datetime,
    settings: JobsSettings,
    todo_chats: Sequence[int] = (),
) -> DigestData:
    """Every count of the digest, and the open to-dos of ``todo_chats`` (the recipients' own
    chats), in one read transaction (run it on the database thread)."""
    d = DigestData(start, end)
    t0, t1 = start.timestamp(), end.timestamp()
    with db.read() as conn:
        if _has(conn, "messages"):
            d.chats = [
                tuple(r)
                for r in conn.execute(  # type: ignore[misc]
                    "SELECT chat_id, count(*), count(DISTINCT CASE WHEN role = 'user' THEN user_id END)"
                    " FROM messages WHERE ts >= ? AND ts < ? AND role IN ('user', 'assistant')"
                    " GROUP BY chat_id ORDER BY 2 DESC, chat_id",
                    (t0, t1),
                )
            ]
            d.messages = sum(c[1] for c in d.chats)
            d.hourly = [0] * max(1, math.ceil((t1 - t0) / 3600))
            for hour, n in conn.execute(
                "SELECT CAST((ts - ?) / 3600 AS INTEGER), count(*) FROM messages"
                " WHERE ts >= ? AND ts < ? AND role IN ('user', 'assistant') GROUP BY 1",
                (t0, t0, t1),
            ):
                d.hourly[min(int(hour), len(d.hourly) - 1)] += n
            d.users = conn.execute(
                "SELECT count(DISTINCT user_id) FROM messages WHERE ts >= ? AND ts < ? AND role = 'user'"
                " AND user_id IS NOT NULL",
                (t0, t1),
            ).fetchone()[0]
        if _has(conn, "feedback"):
            up, down = conn.execute(
                "SELECT coalesce(sum(rating = 1), 0), coalesce(sum(rating = -1), 0) FROM feedback"
                " WHERE updated_at >= ? AND updated_at < ?",
                (t0, t1),
            ).fetchone()
            d.thumbs_up, d.thumbs_down = int(up), int(down)
            if down and settings.digest_lowest_rated and _has(conn, "feedback_answers"):
                d.lowest = _lowest(conn, t0, t1, settings.digest_lowest_rated)
        if _has(conn, "job_runs"):
            d.failures = _failures(conn, t0, t1)
        if _has(conn, "llm_usage"):
            # llm_usage.ts is ISO text in UTC (agents.usage), which sorts as time does.
            lo, hi = start.astimezone(UTC).isoformat(), end.astimezone(UTC).isoformat()
            d.usage = [
                UsageLine(r[0], r[1], int(r[2] or 0), float(r[3] or 0), int(r[4] or 0))
                for r in conn.execute(
                    "SELECT purpose, count(*), sum(input_tokens + output_tokens + cache_read_tokens + cache_write_tokens),"
                    " sum(cost_usd), sum(1 - ok) FROM llm_usage WHERE ts >= ? AND ts < ?"
                    " GROUP BY purpose ORDER BY 4 DESC, 3 DESC, purpose",
                    (lo, hi),
                )
            ]
        if _has(conn, "todos"):
            d.todos = collect_todos(conn, todo_chats)
    return d


def _lowest(conn: sqlite3.Connection, t0: float, t1: float, limit: int) -> list[LowRated]:
    """Answers with a 👎 among the votes of the period, the lowest net score first."""
    rows = conn.execute(
        "SELECT a.id, a.chat_id, a.prompt, a.answer, sum(f.rating = 1), sum(f.rating = -1),"
        " group_concat(CASE WHEN f.rating = -1 AND trim(coalesce(f.reason, '')) != '' THEN f.reason END, char(31))"
        " FROM feedback f JOIN feedback_answers a ON a.id = f.answer_id"
        " WHERE f.updated_at >= ? AND f.updated_at < ?"
        " GROUP BY a.id HAVING sum(f.rating = -1) > 0"
        " ORDER BY sum(f.rating) ASC, sum(f.rating = -1) DESC, max(f.updated_at) DESC, a.id LIMIT ?",
        (t0, t1, limit),
    ).fetchall()
    return [
        LowRated(r[0], r[1], r[2], r[3], int(r[4]), int(r[5]), r[6].split("\x1f") if r[6] else [])
        for r in rows
    ]


def _failures(conn: sqlite3.Connection, t0: float, t1: float) -> list[JobFailure]:
    marks = ",".join("?" * len(FAILED_OUTCOMES))
    out = []
    for job, count, last_id in conn.execute(
        f"SELECT job, count(*), max(id) FROM job_runs WHERE started_at >= ? AND started_at < ?"
        f" AND outcome IN ({marks}) GROUP BY job ORDER BY job",
        (t0, t1, *FAILED_OUTCOMES),
    ).fetchall():
        at, outcome, error = conn.execute(
            "SELECT started_at, outcome, error FROM job_runs WHERE id = ?", (last_id,)
        ).fetchone()
        out.append(JobFailure(job, int(count), float(at), outcome, error))
    return out


def render(d: DigestData, settings: JobsSettings, chat_id: int) -> str:
    """The digest message for ``chat_id`` (plain text, deterministic: the same data gives the
    same text); its to-do part is that chat's own."""
    tz = ZoneInfo(settings.timezone)
    a, b = d.start.astimezone(tz), d.end.astimezone(tz)
    span = (
        f"{a:%Y-%m-%d %H:%M} – {b:%Y-%m-%d %H:%M}"
        if a.date() != b.date()
        else f"{a:%Y-%m-%d %H:%M} – {b:%H:%M}"
    )
    lines = [f"📊 Familiar digest, {span} ({tz.key})", ""]

    if d.messages:
        lines.append(
            f"Activity: {d.messages} message(s) in {len(d.chats)} chat(s), {d.users} active user(s)"
        )
        top = d.chats[: settings.digest_top_chats]
        lines += [f"  • chat {chat}: {n} message(s), {users} user(s)" for chat, n, users in top]
        if len(d.chats) > len(top):
            rest = d.chats[len(top) :]
            lines.append(f"  • {len(rest)} more chat(s): {sum(c[1] for c in rest)} message(s)")
    else:
        lines.append("Activity: no messages")

    if d.thumbs_up or d.thumbs_down:
        lines.append(f"Feedback: 👍 {d.thumbs_up} · 👎 {d.thumbs_down}")
        if d.lowest:
            lines.append("Lowest-rated answers:")
            for low in d.lowest:
                lines.append(
                    f"  • answer #{low.answer_id} in chat {low.chat_id} (👍 {low.ups} · 👎 {low.downs})"
                )
                lines.append(f"    asked: {clip(low.prompt, 80)}")
                lines.append(f"    answered: {clip(low.answer, 120)}")
                if low.reasons:
                    lines.append(
                        "    why: " + "; ".join(f"“{clip(r, 100)}”" for r in low.reasons[:3])
                    )
    else:
        lines.append("Feedback: none")

    if d.failures:
        lines.append(f"Job failures: {sum(f.count for f in d.failures)}")
        for f in d.failures:
            at = datetime.fromtimestamp(f.last_at, tz)
            lines.append(
                f"  • {f.job}: {f.count}×, last {f.outcome} at {at:%m-%d %H:%M}: {clip(f.error, 140)}"
            )
    else:
        lines.append("Job failures: none")

    if d.usage:
        calls = sum(u.calls for u in d.usage)
        failed = sum(u.failed for u in d.usage)
        lines.append(
            f"Model usage: {calls} call(s), {sum(u.tokens for u in d.usage):,} tokens, "
            f"{money(sum(u.cost_usd for u in d.usage))}" + (f", {failed} failed" if failed else "")
        )
        lines += [
            f"  • {u.purpose}: {u.calls} call(s), {u.tokens:,} tokens, {money(u.cost_usd)}"
            for u in d.usage[:5]
        ]
    else:
        lines.append("Model usage: none")

    todos = d.todos_of(chat_id)
    if todos is not None:
        lines += render_todos(todos, d.end.timestamp())

    if d.backup_note:
        lines.append(f"Backup: {d.backup_note}")
    elif d.backup_age_h is None:
        if settings.backup_enabled:
            lines.append("Backup: ⚠️ no backup yet")
    elif d.backup_age_h > settings.backup_max_age_hours:
        lines.append(
            f"Backup: ⚠️ newest is {d.backup_age_h:.1f} h old (limit {settings.backup_max_age_hours:g} h)"
        )
    else:
        lines.append(f"Backup: newest is {d.backup_age_h:.1f} h old")

    text = "\n".join(lines)
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 1] + "…"


class DailyDigest:
    """The scheduled job: collect, skip when idle, render, send, remember the period."""

    def __init__(
        self,
        db: Database,
        settings: JobsSettings,
        admins: DigestAdmins,
        backup_age: BackupAge | None = None,
        photo_admins: PhotoAdmins | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.admins = admins
        self.photo_admins = photo_admins  # None: the digest goes out as text only
        self.backup_age = backup_age  # BackupService.newest_age_hours; None: no backup line

    async def run(self, now: datetime | None = None) -> str:
        """Send the digest of the period ending ``now``; returns a one-line account for the run record."""
        end = now or datetime.now(UTC)
        start = end - timedelta(hours=self.settings.digest_period_hours)
        last_end = await self.db.run(self._last_end)
        if last_end is not None and last_end > start.timestamp():
            start = datetime.fromtimestamp(min(last_end, end.timestamp()), UTC)
        admins = list(dict.fromkeys(self.admins.admins))
        period = f"{start.astimezone(UTC):%Y-%m-%d %H:%M}–{end.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        if not admins:
            logger.info("digest skipped: no admins to send it to")
            return f"skipped: no admins to send the digest for {period} to"
        data = await self.db.run(collect, self.db, start, end, self.settings, admins)
        to = [admin for admin in admins if not data.empty_for(admin)]
        if not to:
            logger.info("digest skipped: nothing happened {}", period)
            return f"skipped: nothing to report for {period}"
        if self.backup_age is not None:
            try:
                data.backup_age_h = await asyncio.to_thread(
                    self.backup_age
                )  # lists the backup folder
            except Exception as exc:  # an unreadable backup folder must not cost the whole digest
                logger.warning("digest: could not read the backup age: {}", exc)
                data.backup_note = f"⚠️ age unknown ({clip(str(exc), 100)})"
        texts = [render(data, self.settings, admin) for admin in to]
        for admin, text in zip(to, texts, strict=True):
            await self.admins.to(admin, text)
        if self.photo_admins is not None and data.messages:
            await self._send_chart(data, period)
        account = (
            f"sent for {period}: {data.messages} message(s) in {len(data.chats)} chat(s), "
            f"👍 {data.thumbs_up} 👎 {data.thumbs_down}, {sum(f.count for f in data.failures)} job failure(s), "
            f"{max(len(text) for text in texts)} chars"
        )
        await self.db.run(self._record, start.timestamp(), end.timestamp(), account)
        return account

    async def _send_chart(self, data: DigestData, period: str) -> None:
        """The day's activity as a bar chart, after the text (which stands without it)."""
        try:
            image = await charts.render(
                charts.activity_figure,
                f"Messages per hour, {period}",
                data.hour_labels(),
                data.hourly,
            )
            assert self.photo_admins is not None
            await self.photo_admins(image, "Activity per hour")
        except Exception:
            logger.opt(exception=True).warning("digest: the activity chart could not be sent")

    def _last_end(self) -> float | None:
        with self.db.read() as conn:
            return conn.execute("SELECT max(period_end) FROM job_digests").fetchone()[0]

    def _record(self, start: float, end: float, account: str) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO job_digests (period_start, period_end, sent_at, account) VALUES (?,?,?,?)",
                (start, end, time.time(), account),
            )


def register_digest_jobs(
    scheduler: Scheduler,
    settings: JobsSettings,
    db: Database,
    *,
    memory: LessonMemory,
    llm: LLM,
    notify_admins: DigestAdmins,
    backup_age: BackupAge | None = None,
    photo_admins: PhotoAdmins | None = None,
) -> list[str]:
    """Register the enabled ones of the "digest" and "lessons" jobs; returns their names."""
    names = []
    if settings.digest_enabled:
        digest = DailyDigest(db, settings, notify_admins, backup_age, photo_admins)
        scheduler.register(JobSpec("digest", digest.run, cron=settings.digest_cron))
        names.append("digest")
    if settings.lessons_enabled:
        lessons = WeeklyLessons(db, memory, llm, settings)
        scheduler.register(JobSpec("lessons", lessons.run, cron=settings.lessons_cron))
        names.append("lessons")
    return names
