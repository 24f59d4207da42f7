"""Reminders: parsing with clear refusals, storage, delivery on time, and surviving a restart."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine

from jobs.errors import ReminderError
from jobs.reminders import Reminder, Reminders
from jobs.remindparse import split_every, split_remind
from jobs.scheduler import StandaloneBackend
from jobs.settings import JobsSettings
from memory.db import Database
from tests.jobs.conftest import all_test_migrations

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 3, 10, 20, 0, tzinfo=BERLIN)  # a Tuesday


@pytest.mark.parametrize(
    ("args", "when", "text"),
    [
        ("in 20m tea", "2026-03-10 20:20", "tea"),
        ("in 1h30m stretch", "2026-03-10 21:30", "stretch"),
        ("in 2 days and 3 hours pay rent", "2026-03-12 23:00", "pay rent"),
        ("tomorrow 9:00 dentist", "2026-03-11 09:00", "dentist"),
        ("tomorrow call mom", "2026-03-11 09:00", "call mom"),
        ("friday at 7pm dinner", "2026-03-13 19:00", "dinner"),
        ("21:15 news", "2026-03-10 21:15", "news"),
        ("19:00 gym", "2026-03-11 19:00", "gym"),  # already past today: tomorrow
        ("2026-12-01 08:30 renew passport", "2026-12-01 08:30", "renew passport"),
        ("2026-03-29 02:30 in the DST gap", "2026-03-29 03:30", "in the DST gap"),
    ],
)
def test_reminder_times(args: str, when: str, text: str) -> None:
    got, rest = split_remind(args, NOW, BERLIN)
    assert (got.strftime("%Y-%m-%d %H:%M"), rest) == (when, text)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("2020-01-01 08:00 old", "in the past"),
        ("in 99 years retire", "more than 1830 days away"),
        ("tomorrow 25:00 x", "not HH:MM"),
        ("2026-02-30 10:00 x", "no such date"),
        ("someday maybe", "cannot find a time"),
        ("in 20m", "nothing to remind about"),
        ("", "what and when"),
    ],
)
def test_bad_reminder_times_get_a_clear_answer_with_examples(args: str, message: str) -> None:
    with pytest.raises(ReminderError, match=message) as info:
        split_remind(args, NOW, BERLIN)
    assert "tomorrow 9:00" in info.value.fix or "/remind" in info.value.fix


def test_every_schedules() -> None:
    assert split_every("0 9 * * 1-5 stand-up", BERLIN) == ("0 9 * * 1-5", "stand-up")
    assert split_every("@daily water the plants", BERLIN) == ("0 9 * * *", "water the plants")
    for bad, msg in (
        ("* * * * * spam", "more often"),
        ("61 * * * * x", "not a crontab"),
        ("0 9 * * *", "give a schedule"),
    ):
        with pytest.raises(ReminderError, match=msg):
            split_every(bad, BERLIN)


class Inbox:
    def __init__(self, fail: bool = False) -> None:
        self.got: list[tuple[str, str | None, float]] = []
        self.fail = fail

    async def __call__(self, reminder: Reminder, note: str | None) -> None:
        if self.fail:
            raise ConnectionError("telegram unreachable")
        self.got.append((reminder.text, note, time.time()))


def test_reminders_fire_on_time_and_survive_a_restart(tmp_path: Path) -> None:
    settings = JobsSettings(timezone="Europe/Berlin")
    db = Database.open(tmp_path / "familiar.db", all_test_migrations())
    start = datetime(2026, 3, 10, 19, 59, 59, 500_000, tzinfo=BERLIN)
    inbox = Inbox()

    # First run: three reminders; the "in 1s" one fires while the daemon runs.
    with time_machine.travel(start, tick=True):

        async def first() -> None:
            backend = StandaloneBackend(BERLIN)
            r = Reminders(db, backend, settings, inbox)
            await backend.start()
            await r.start()
            await r.add_once(1, 7, "in 1s quick one")
            await r.add_once(1, 7, "in 20m tea")
            await r.add_every(1, 7, "0 9 * * * morning pages")
            doomed = await r.add_once(2, 8, "tomorrow 10:00 deleted")
            assert await r.delete(1, doomed.id) is False  # another chat's reminder
            assert await r.delete(2, doomed.id) is True
            deadline = time.monotonic() + 5

            def delivered() -> bool:  # sent, and its delivery recorded (not a crash in between)
                with db.read() as conn:
                    return (
                        conn.execute(
                            "SELECT count(*) FROM reminders WHERE delivered_at IS NOT NULL"
                        ).fetchone()[0]
                        == 1
                    )

            while not (inbox.got and delivered()) and time.monotonic() < deadline:  # noqa: ASYNC110 -- polls the test inbox
                await asyncio.sleep(0.02)
            await backend.stop()

        asyncio.run(first())
    assert [(t, n) for t, n, _ in inbox.got] == [("quick one", None)]

    # The daemon was down from 20:00 to 21:00: "tea" (due 20:19:59.5) is delivered late at start, once.
    with time_machine.travel(datetime(2026, 3, 10, 21, 0, tzinfo=BERLIN), tick=True):

        async def second() -> None:
            backend = StandaloneBackend(BERLIN)
            r = Reminders(db, backend, settings, inbox)
            assert await r.start() == 1
            assert [x.describe() for x in await r.active(1)] == ["every `0 9 * * *`: morning pages"]
            assert (
                r.next_time((await r.active(1))[0]).strftime("%Y-%m-%d %H:%M") == "2026-03-11 09:00"
            )  # type: ignore[union-attr]

        asyncio.run(second())
    assert inbox.got[1][0] == "tea" and "late: this was due 2026-03-10 20:19" in (
        inbox.got[1][1] or ""
    )

    # A third start delivers nothing again.
    async def third() -> int:
        return await Reminders(db, StandaloneBackend(BERLIN), settings, inbox).start()

    assert asyncio.run(third()) == 0
    assert len(inbox.got) == 2
    db.close()


def test_a_failed_delivery_is_not_lost(tmp_path: Path) -> None:
    settings = JobsSettings(timezone="UTC")
    db = Database.open(tmp_path / "familiar.db", all_test_migrations())
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    with time_machine.travel(now, tick=False):

        async def add() -> None:
            await Reminders(db, StandaloneBackend(ZoneInfo("UTC")), settings, Inbox()).add_once(
                1, None, "in 5m x"
            )

        asyncio.run(add())
    with time_machine.travel(now + timedelta(hours=1), tick=False):

        async def restart(inbox: Inbox) -> int:
            return await Reminders(db, StandaloneBackend(ZoneInfo("UTC")), settings, inbox).start()

        assert asyncio.run(restart(Inbox(fail=True))) == 1  # tried, failed, kept
        ok = Inbox()
        assert asyncio.run(restart(ok)) == 1 and ok.got[0][0] == "x"
        assert asyncio.run(restart(Inbox())) == 0
    db.close()


class HangsAfterSending:
    """A chat that receives the reminder, then never returns: the process dies (here: its loop
    is torn down) between the send and the record of the delivery."""

    def __init__(self) -> None:
        self.got: list[tuple[str, str | None]] = []
        self.sent = asyncio.Event()

    async def __call__(self, reminder: Reminder, note: str | None) -> None:
        self.got.append((reminder.text, note))
        self.sent.set()
        await asyncio.Event().wait()


def test_a_kill_between_sending_and_recording_resends_it_marked_as_a_repeat(
    tmp_path: Path,
) -> None:
    settings = JobsSettings(timezone="UTC")
    db = Database.open(tmp_path / "familiar.db", all_test_migrations())
    chat = HangsAfterSending()

    async def killed_while_sending() -> None:
        backend = StandaloneBackend(ZoneInfo("UTC"))
        r = Reminders(db, backend, settings, chat)
        await backend.start()
        await r.add_once(1, 7, "in 1s stretch")
        await asyncio.wait_for(chat.sent.wait(), 10)
        # asyncio.run now cancels the hung send: nothing after the send runs, as with SIGKILL

    asyncio.run(killed_while_sending())
    assert chat.got == [("stretch", None)]

    after = Inbox()

    async def restart() -> int:
        return await Reminders(db, StandaloneBackend(ZoneInfo("UTC")), settings, after).start()

    assert asyncio.run(restart()) == 1
    [(text, note, _)] = after.got
    assert text == "stretch" and "again" in (note or "") and "twice" in (note or "")
    assert asyncio.run(restart()) == 0  # marked delivered now: never a third time
    assert len(after.got) == 1
    db.close()


def test_a_reminder_killed_before_its_send_is_late_not_a_repeat(tmp_path: Path) -> None:
    settings = JobsSettings(timezone="UTC")
    db = Database.open(tmp_path / "familiar.db", all_test_migrations())
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    with time_machine.travel(now, tick=False):

        async def add() -> None:
            await Reminders(db, StandaloneBackend(ZoneInfo("UTC")), settings, Inbox()).add_once(
                1, None, "in 5m x"
            )

        asyncio.run(add())
    inbox = Inbox()
    with time_machine.travel(now + timedelta(hours=1), tick=False):

        async def restart() -> int:
            return await Reminders(db, StandaloneBackend(ZoneInfo("UTC")), settings, inbox).start()

        assert asyncio.run(restart()) == 1
    [(_, note, _)] = inbox.got
    assert "late" in (note or "") and "again" not in (note or "")
    db.close()
