"""Reminders: /remind (one-shot) and /every (cron), stored in SQLite and re-scheduled at start.

The bot calls ``add_once``/``add_every``/``active``/``delete`` and hands in ``deliver``, an async
callable that sends the text to the chat. A one-shot is delivered at least once: its attempt is
recorded before ``deliver`` and it is marked delivered only once ``deliver`` returned. One that
fell due while the daemon was down is delivered at start with a note saying it is late; one whose
attempt was recorded but not its delivery (killed in between) is sent again with a note saying
it may be a repeat. Recurring reminders missed while down are not replayed (nobody wants seven "drink
water" at once); they go on at their next time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from loguru import logger

from jobs.errors import ReminderError
from jobs.remindparse import parse_when_or_iso, split_every, split_remind
from jobs.scheduler import Backend, ended_write
from jobs.settings import JobsSettings
from memory.db import Database

RETRY_AFTER = timedelta(minutes=5)


@dataclass
class Reminder:
    id: int
    chat_id: int
    user_id: int | None
    text: str
    due_at: datetime | None  # one-shot
    cron: str | None  # recurring
    timezone: str
    sending_at: datetime | None = None  # one-shot: a send began and was not marked delivered
    topic: int | None = None  # the place in the chat it was set in (a forum topic), if any

    def describe(self) -> str:
        if self.due_at is not None:
            return f"{self.due_at.astimezone(ZoneInfo(self.timezone)):%Y-%m-%d %H:%M}: {self.text}"
        return f"every `{self.cron}`: {self.text}"


Deliver = Callable[[Reminder, str | None], Awaitable[None]]
# Where in a chat what is set now was set (a forum topic); None: the chat itself.
Place = Callable[[int], int | None]
_COLUMNS = "id, chat_id, user_id, text, due_at, cron, timezone, sending_at, topic"


def _row(r: tuple) -> Reminder:
    due = datetime.fromtimestamp(r[4], UTC) if r[4] is not None else None
    sending = datetime.fromtimestamp(r[7], UTC) if r[7] is not None else None
    return Reminder(r[0], r[1], r[2], r[3], due, r[5], r[6], sending, r[8])


class Reminders:
    def __init__(
        self,
        db: Database,
        backend: Backend,
        settings: JobsSettings,
        deliver: Deliver,
        place: Place | None = None,
    ) -> None:
        self.db = db
        self.backend = backend
        self.settings = settings
        self.tz = ZoneInfo(settings.timezone)
        self.deliver = deliver  # gets the reminder (its ``topic`` too) and the note, if any
        self.place = place or (lambda chat_id: None)

    # -- what the bot calls -------------------------------------------------------------------
    async def add_once(
        self, chat_id: int, user_id: int | None, args: str, key: str | None = None
    ) -> Reminder:
        """``/remind WHEN TEXT``; ReminderError (with examples) when WHEN cannot be used.
        ``key`` names the message that asked: asked again (a replayed update), the reminder it
        made is returned and no second one is added."""
        known = await self.db.run(self._by_key, key) if key else None
        if known is not None:
            return known
        when, text = split_remind(args, datetime.now(UTC), self.tz, self.settings.reminder_max_days)
        reminder = await self.db.run(
            self._insert, chat_id, user_id, text, when.timestamp(), None, key, self.place(chat_id)
        )
        self._schedule(reminder)
        return reminder

    async def add_at(self, chat_id: int, user_id: int | None, when: str, text: str) -> Reminder:
        """A one-shot from separate parts (the agent's ``create_reminder``): ``when`` as /remind
        takes it, or a full ISO-8601 timestamp; ReminderError when it cannot be used."""
        if not text.strip():
            raise ReminderError("there is nothing to remind about", "give the reminder a text")
        due = parse_when_or_iso(when, datetime.now(UTC), self.tz, self.settings.reminder_max_days)
        reminder = await self.db.run(
            self._insert,
            chat_id,
            user_id,
            text.strip(),
            due.timestamp(),
            None,
            None,
            self.place(chat_id),
        )
        self._schedule(reminder)
        return reminder

    async def add_every(
        self, chat_id: int, user_id: int | None, args: str, key: str | None = None
    ) -> Reminder:
        """``/every CRON TEXT``; ReminderError (with examples) when CRON cannot be used.
        ``key`` as for ``add_once``."""
        known = await self.db.run(self._by_key, key) if key else None
        if known is not None:
            return known
        cron, text = await asyncio.to_thread(split_every, args, self.tz)
        reminder = await self.db.run(
            self._insert, chat_id, user_id, text, None, cron, key, self.place(chat_id)
        )
        self._schedule(reminder)
        return reminder

    async def get(self, chat_id: int, reminder_id: int) -> Reminder | None:
        """The chat's active reminder of that id."""
        return next((r for r in await self.active(chat_id) if r.id == reminder_id), None)

    async def active(self, chat_id: int) -> list[Reminder]:
        """The chat's active reminders, soonest one-shots first (for /reminders)."""
        return await self.db.run(self._query_active, chat_id)

    async def delete(self, chat_id: int, reminder_id: int) -> bool:
        """False when there is no such active reminder in this chat."""
        removed = await self.db.run(self._deactivate, chat_id, reminder_id)
        if removed:
            self.backend.remove(self._job(reminder_id))
        return removed

    async def forget_user(self, user_id: int) -> int:
        """/forgetme: the person's reminders, unscheduled and deleted; how many."""

        def delete() -> tuple[list[int], int]:
            with self.db.transaction() as conn:
                active = [
                    r[0]
                    for r in conn.execute(
                        "SELECT id FROM reminders WHERE user_id = ? AND active = 1", (user_id,)
                    )
                ]
                cur = conn.execute("DELETE FROM reminders WHERE user_id = ?", (user_id,))
                return active, int(cur.rowcount)

        active, deleted = await self.db.run(delete)
        for reminder_id in active:
            self.backend.remove(self._job(reminder_id))
        return deleted

    def next_time(self, reminder: Reminder) -> datetime | None:
        if reminder.due_at is not None:
            return reminder.due_at
        return CronTrigger.from_crontab(
            reminder.cron, timezone=ZoneInfo(reminder.timezone)
        ).get_next_fire_time(None, datetime.now(ZoneInfo(reminder.timezone)))

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> int:
        """Re-schedule every active reminder; deliver one-shots that fell due while down (late).
        Returns how many were delivered late."""
        late = 0
        now = datetime.now(UTC)
        for reminder in await self.db.run(self._query_active, None):
            if reminder.due_at is not None and reminder.due_at <= now:
                local = reminder.due_at.astimezone(ZoneInfo(reminder.timezone))
                note = f"(late: this was due {local:%Y-%m-%d %H:%M}, while I was offline)"
                if reminder.sending_at is not None:
                    note = (
                        "(sent again: I was restarted while sending this reminder, "
                        "so you may have it twice)"
                    )
                await self._fire(reminder, note)
                late += 1
            else:
                self._schedule(reminder)
        return late

    @staticmethod
    def _job(reminder_id: int) -> str:
        return f"reminder:{reminder_id}"

    def _schedule(self, reminder: Reminder) -> None:
        async def fire() -> None:
            await self._fire(reminder, None)

        if reminder.due_at is not None:
            self.backend.once(self._job(reminder.id), reminder.due_at, fire)
        else:
            trigger = CronTrigger.from_crontab(reminder.cron, timezone=ZoneInfo(reminder.timezone))
            self.backend.add(self._job(reminder.id), trigger, fire)

    async def _fire(self, reminder: Reminder, note: str | None) -> None:
        recorded = False
        try:
            if reminder.due_at is not None:  # the disk full: not sent, retried below
                await self.db.run(self._sending, reminder.id, time.time())
                recorded = True
            await self.deliver(reminder, note)
        except Exception as exc:  # Telegram away: try again later, never lose a one-shot
            logger.warning("reminder {} could not be delivered ({}); retrying", reminder.id, exc)
            if recorded:  # it did not go out: a retry is no repeat
                try:
                    await self.db.run(self._sending, reminder.id, None)
                except Exception as clear:
                    logger.warning("reminder {}: attempt not cleared ({})", reminder.id, clear)
            if reminder.due_at is not None:

                async def retry() -> None:
                    await self._fire(reminder, note or "(late: delivery was retried)")

                self.backend.once(self._job(reminder.id), datetime.now(UTC) + RETRY_AFTER, retry)
            return
        # Sent: recorded even if a stop cancels the run now (else a restart would send it again).
        await ended_write(self.db.submit(self._delivered, reminder))

    # -- queries (database thread) ------------------------------------------------------------
    def _insert(
        self,
        chat_id: int,
        user_id: int | None,
        text: str,
        due: float | None,
        cron: str | None,
        key: str | None = None,
        topic: int | None = None,
    ) -> Reminder:
        with self.db.transaction() as conn:
            # The unique key is the guarantee; the look-up in add_* only spares the parse.
            conn.execute(
                "INSERT INTO reminders (chat_id, user_id, text, due_at, cron, timezone, created_at,"
                " source_key, topic) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                (chat_id, user_id, text, due, cron, self.tz.key, time.time(), key, topic),
            )
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM reminders WHERE id = last_insert_rowid()"
                if key is None
                else f"SELECT {_COLUMNS} FROM reminders WHERE source_key = ?",
                () if key is None else (key,),
            ).fetchone()
        return _row(row)

    def _by_key(self, key: str) -> Reminder | None:
        with self.db.read() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM reminders WHERE source_key = ?", (key,)
            ).fetchone()
        return _row(row) if row else None

    def _query_active(self, chat_id: int | None) -> list[Reminder]:
        sql = f"SELECT {_COLUMNS} FROM reminders WHERE active = 1"
        params: tuple = ()
        if chat_id is not None:
            sql, params = sql + " AND chat_id = ?", (chat_id,)
        with self.db.read() as conn:
            return [
                _row(r) for r in conn.execute(sql + " ORDER BY coalesce(due_at, 1e18), id", params)
            ]

    def _deactivate(self, chat_id: int, reminder_id: int) -> bool:
        with self.db.transaction() as conn:
            cur = conn.execute(
                "UPDATE reminders SET active = 0 WHERE id = ? AND chat_id = ? AND active = 1",
                (reminder_id, chat_id),
            )
            return cur.rowcount > 0

    def _sending(self, reminder_id: int, at: float | None) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE reminders SET sending_at = ? WHERE id = ?", (at, reminder_id))

    def _delivered(self, reminder: Reminder) -> None:
        with self.db.transaction() as conn:
            if reminder.due_at is not None:
                conn.execute(
                    "UPDATE reminders SET delivered_at = ?, last_fired_at = ?, active = 0 WHERE id = ?",
                    (time.time(), time.time(), reminder.id),
                )
            else:
                conn.execute(
                    "UPDATE reminders SET last_fired_at = ? WHERE id = ?",
                    (time.time(), reminder.id),
                )
