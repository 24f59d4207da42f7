"""The daily admin digest on real SQLite with a controlled clock: content, idle skip, no overlap."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine

from agents.providers.base import Usage
from agents.schema import migrations as agents_migrations
from agents.settings import LLMSettings
from agents.usage import CallContext, UsageRecord, UsageStore
from bot.core.feedback import FeedbackStore
from bot.core.schema import migrations as bot_migrations
from jobs.digest import DailyDigest
from jobs.settings import JobsSettings
from memory.db import Database
from tests.jobs.conftest import all_test_migrations, fill

NOW = datetime(2026, 4, 2, 8, 0, tzinfo=UTC)  # 10:00 in Berlin (summer time)
SETTINGS = JobsSettings(timezone="Europe/Berlin", digest_lowest_rated=2, digest_top_chats=2)


class Admins:
    """The digest's recipients: admins whose private chat ids are their user ids (chat 1 alone by
    default); ``sent`` holds every copy, ``to_chat`` who got which."""

    def __init__(self, *admins: int) -> None:
        self.admins = list(admins or (1,))
        self.sent: list[str] = []
        self.to_chat: list[tuple[int, str]] = []
        self.notices: list[str] = []  # the scheduler's notices to all admins

    async def to(self, chat_id: int, text: str) -> None:
        self.sent.append(text)
        self.to_chat.append((chat_id, text))

    async def __call__(self, text: str) -> None:
        self.notices.append(text)


@pytest.fixture
def db(tmp_path: Path):
    d = Database.open(
        tmp_path / "familiar.db", [*all_test_migrations(), agents_migrations, bot_migrations]
    )
    yield d
    d.close()


def at(hours_before: float) -> datetime:
    return NOW - timedelta(hours=hours_before)


def answer_with_votes(
    db: Database,
    when: datetime,
    chat: int,
    prompt: str,
    text: str,
    votes: list[tuple[int, int, str | None]],
) -> int:
    """An answer and its votes as the bot stores them (``FeedbackStore``), at ``when``."""
    store = FeedbackStore(db)
    with time_machine.travel(when, tick=False):
        answer_id = store.add_answer("telegram", chat, votes[0][0] if votes else 1, prompt, text)
        for i, (user, rating, reason) in enumerate(votes):
            store.vote(answer_id, user, chat, rating)
            if reason is not None:  # the user replied to "what was wrong?"
                store.add_reason_prompt(chat, 1000 + answer_id * 10 + i, answer_id, user)
                assert store.take_reason(chat, 1000 + answer_id * 10 + i, user, reason)
    return answer_id


def job_run(db: Database, job: str, when: datetime, outcome: str, error: str | None = None) -> None:
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO job_runs (job, started_at, ended_at, outcome, error) VALUES (?,?,?,?,?)",
            (job, when.timestamp(), when.timestamp() + 5, outcome, error),
        )


def usage(
    db: Database, when: datetime, purpose: str, model: str, tokens: Usage, ok: bool = True
) -> None:
    store = UsageStore(db, LLMSettings(), clock=lambda: when)
    store.record(
        UsageRecord(
            CallContext(purpose=purpose),
            "anthropic",
            model,
            tokens,
            1.0,
            ok=ok,
            error=None if ok else "ProviderUnavailable: overloaded",
        )
    )


def populate(db: Database) -> dict[str, int]:
    # Activity: chat 1 busy (6 turns), chat 2 (4), chat 3 (2); chat 4 only two days ago.
    fill(db, 1, [f"turn {i} about the garden" for i in range(6)], ts=at(5).timestamp(), user_id=7)
    fill(db, 2, [f"question {i} on taxes" for i in range(4)], ts=at(20).timestamp(), user_id=8)
    fill(db, 3, ["hello there", "hi"], ts=at(1).timestamp(), user_id=9)
    fill(db, 4, ["old news", "indeed"], ts=at(50).timestamp(), user_id=10)
    ids = {
        "long": answer_with_votes(
            db,
            at(4),
            1,
            "List three herbs for shade",
            "Well, herbs are a big topic. " * 30,
            [(7, -1, "Too long, I asked for a short list"), (9, -1, None)],
        ),
        "date": answer_with_votes(
            db,
            at(10),
            2,
            "When is the tax deadline?",
            "It is on 31 June.",
            [(8, -1, "Wrong date: June has 30 days"), (11, 1, None)],
        ),
        "good": answer_with_votes(db, at(3), 1, "Thanks!", "You're welcome.", [(7, 1, None)]),
        "old": answer_with_votes(
            db, at(60), 1, "Old question", "Old bad answer", [(7, -1, "old complaint")]
        ),
    }
    job_run(db, "summarize", at(7), "ok")
    job_run(db, "backup", at(6.5), "failed", "OSError: [Errno 28] No space left on device")
    job_run(db, "backup", at(30), "failed", "an error before the period")
    usage(db, at(5), "chat", "claude-sonnet-4-5", Usage(input_tokens=10_000, output_tokens=2_000))
    usage(db, at(4), "chat", "claude-sonnet-4-5", Usage(), ok=False)
    usage(db, at(2), "summary", "claude-haiku-4-5", Usage(input_tokens=4_000, output_tokens=400))
    usage(db, at(40), "chat", "claude-sonnet-4-5", Usage(input_tokens=99_000, output_tokens=9_000))
    return ids


def test_digest_of_a_populated_day(db: Database) -> None:
    ids = populate(db)
    admins = Admins()
    digest = DailyDigest(db, SETTINGS, admins, backup_age=lambda: 5.5)
    with time_machine.travel(NOW, tick=False):
        account = asyncio.run(digest.run())
    (text,) = admins.sent
    lines = text.splitlines()
    assert lines[0] == "📊 Familiar digest, 2026-04-01 10:00 – 2026-04-02 10:00 (Europe/Berlin)"
    assert "Activity: 12 message(s) in 3 chat(s), 3 active user(s)" in lines
    i = lines.index("Activity: 12 message(s) in 3 chat(s), 3 active user(s)")
    assert lines[i + 1 : i + 4] == [
        "  • chat 1: 6 message(s), 1 user(s)",
        "  • chat 2: 4 message(s), 1 user(s)",
        "  • 1 more chat(s): 2 message(s)",
    ]
    # Votes of the period: 👎 from users 7 and 9 on "long", 👎 8 and 👍 11 on "date", 👍 7 on "good".
    assert "Feedback: 👍 2 · 👎 3" in lines
    j = lines.index("Lowest-rated answers:")
    assert lines[j + 1] == f"  • answer #{ids['long']} in chat 1 (👍 0 · 👎 2)"
    assert lines[j + 2] == "    asked: List three herbs for shade"
    assert lines[j + 3].startswith("    answered: Well, herbs are a big topic.") and lines[
        j + 3
    ].endswith("…")
    assert len(lines[j + 3]) == len("    answered: ") + 120
    assert lines[j + 4] == "    why: “Too long, I asked for a short list”"
    assert lines[j + 5] == f"  • answer #{ids['date']} in chat 2 (👍 1 · 👎 1)"
    assert lines[j + 7] == "    answered: It is on 31 June."
    assert lines[j + 8] == "    why: “Wrong date: June has 30 days”"
    assert "old complaint" not in text and f"#{ids['good']}" not in text
    # 6.5 h before 10:00 Berlin is 03:30 Berlin.
    assert "Job failures: 1" in lines
    assert (
        "  • backup: 1×, last failed at 04-02 03:30: OSError: [Errno 28] No space left on device"
        in lines
    )
    # chat: 10k in + 2k out on Sonnet ($0.03 + $0.03) and a failed call; summary: 4k + 400 on Haiku.
    assert "Model usage: 3 call(s), 16,400 tokens, $0.07, 1 failed" in lines
    assert "  • chat: 2 call(s), 12,000 tokens, $0.06" in lines
    assert "  • summary: 1 call(s), 4,400 tokens, $0.0060" in lines
    assert lines[-1] == "Backup: newest is 5.5 h old"
    assert account.startswith(
        "sent for 2026-04-01 08:00–2026-04-02 08:00 UTC: 12 message(s) in 3 chat(s), "
        "👍 2 👎 3, 1 job failure(s)"
    )
    assert "\n" not in account

    # The same digest again at once: its period starts where the last one ended, so it is empty.
    with time_machine.travel(NOW + timedelta(minutes=1), tick=False):
        again = asyncio.run(digest.run())
    assert again.startswith("skipped: nothing to report") and len(admins.sent) == 1


def test_nothing_to_report_sends_nothing(db: Database) -> None:
    # Only old activity, a successful job, model usage from before the period and a backup.
    fill(db, 1, ["an old chat", "long ago"], ts=at(30).timestamp())
    answer_with_votes(db, at(40), 1, "q", "a", [(7, -1, "meh")])
    job_run(db, "backup", at(3), "ok")
    usage(db, at(30), "chat", "claude-sonnet-4-5", Usage(input_tokens=100, output_tokens=10))
    admins = Admins()
    ages: list[int] = []
    digest = DailyDigest(db, SETTINGS, admins, backup_age=lambda: ages.append(1) or 3.0)
    with time_machine.travel(NOW, tick=False):
        account = asyncio.run(digest.run())
    assert admins.sent == []
    assert ages == []  # not even the backup folder was looked at
    assert account == "skipped: nothing to report for 2026-04-01 08:00–2026-04-02 08:00 UTC"
    with db.read() as conn:
        assert conn.execute("SELECT count(*) FROM job_digests").fetchone()[0] == 0


def test_a_second_digest_starts_where_the_last_ended(db: Database) -> None:
    """A manual or catch-up digest between two scheduled ones never reports the same hours twice."""
    admins = Admins()
    digest = DailyDigest(db, SETTINGS, admins, backup_age=lambda: None)
    fill(db, 1, ["monday talk", "reply"], ts=at(2).timestamp())
    with time_machine.travel(NOW, tick=False):
        asyncio.run(digest.run())
    assert len(admins.sent) == 1 and "Backup: ⚠️ no backup yet" in admins.sent[0]
    fill(db, 2, ["tuesday talk", "reply", "more"], ts=(NOW + timedelta(hours=3)).timestamp())
    with time_machine.travel(NOW + timedelta(hours=5), tick=False):
        account = asyncio.run(digest.run())
    assert account.startswith(
        "sent for 2026-04-02 08:00–2026-04-02 13:00 UTC: 3 message(s) in 1 chat(s)"
    )
    assert (
        "  • chat 2: 3 message(s), 1 user(s)" in admins.sent[1] and "chat 1" not in admins.sent[1]
    )
    # The next scheduled one: from the manual one's end; chat 1 spoke again, chat 2 did not.
    fill(db, 1, ["wednesday", "ok"], ts=(NOW + timedelta(hours=20)).timestamp())
    with time_machine.travel(NOW + timedelta(hours=24), tick=False):
        account = asyncio.run(digest.run())
    assert account.startswith(
        "sent for 2026-04-02 13:00–2026-04-03 08:00 UTC: 2 message(s) in 1 chat(s)"
    )
    assert (
        admins.sent[2].splitlines()[0]
        == "📊 Familiar digest, 2026-04-02 15:00 – 2026-04-03 10:00 (Europe/Berlin)"
    )


def test_missing_tables_of_other_packages_read_as_empty(tmp_path: Path) -> None:
    """Without the bot's and the agents' tables (jobs cannot rely on them) the digest still goes out."""
    db = Database.open(tmp_path / "bare.db", all_test_migrations())
    try:
        fill(db, 5, ["hi", "hello", "how are you"], ts=at(1).timestamp())
        admins = Admins()

        def broken() -> float:
            raise PermissionError("backup folder unreadable")

        with time_machine.travel(NOW, tick=False):
            asyncio.run(DailyDigest(db, SETTINGS, admins, backup_age=broken).run())
        (text,) = admins.sent
        assert "Activity: 3 message(s) in 1 chat(s), 1 active user(s)" in text
        assert (
            "Feedback: none" in text
            and "Model usage: none" in text
            and "Job failures: none" in text
        )
        assert text.endswith("Backup: ⚠️ age unknown (backup folder unreadable)")
    finally:
        db.close()


def test_registered_jobs_run_through_the_scheduler(db: Database, tmp_path: Path) -> None:
    """The wiring helper: both jobs on their crons; a run's account lands in job_runs."""
    from zoneinfo import ZoneInfo

    from agents.llm import LLM
    from agents.providers.fake import FakeProvider
    from jobs.digest import register_digest_jobs
    from jobs.scheduler import Scheduler, StandaloneBackend
    from memory.embedder import HashingEmbedder
    from memory.service import Memory
    from memory.settings import MemorySettings

    admins = Admins()
    memory = Memory(db, HashingEmbedder(), MemorySettings(), tmp_path / "index")
    llm = LLM(FakeProvider())
    scheduler = Scheduler(db, StandaloneBackend(ZoneInfo("UTC")), SETTINGS, admins)
    names = register_digest_jobs(
        scheduler,
        SETTINGS,
        db,
        memory=memory,
        llm=llm,
        notify_admins=admins,
        backup_age=lambda: 1.0,
    )
    assert names == ["digest", "lessons"]
    assert (scheduler.jobs["digest"].cron, scheduler.jobs["lessons"].cron) == (
        "0 8 * * *",
        "0 9 * * 1",
    )
    fill(db, 1, ["hello", "hi"], ts=at(1).timestamp())
    with time_machine.travel(NOW, tick=False):
        record = asyncio.run(scheduler.run_now("digest"))
    assert record is not None and record.outcome == "ok" and len(admins.sent) == 1
    (run,) = scheduler.runs("digest")
    assert run.output == record.output and run.output.startswith(
        "sent for 2026-04-01 08:00–2026-04-02 08:00 UTC"
    )

    off = JobsSettings(digest_enabled=False, lessons_enabled=False)
    other = Scheduler(db, StandaloneBackend(ZoneInfo("UTC")), off, admins)
    assert register_digest_jobs(other, off, db, memory=memory, llm=llm, notify_admins=admins) == []
    assert other.jobs == {}


def add_todos(db: Database) -> None:
    from zoneinfo import ZoneInfo

    from agents.tools.todos import TodoStore

    store, tz = TodoStore(db), ZoneInfo("Europe/Berlin")

    async def add() -> None:
        await store.add(1, 7, "call the bank", "high", "2026-04-01", tz)  # due yesterday
        await store.add(1, 7, "buy milk", "normal", None, tz)
        await store.add(1, 7, "renew passport", "low", "2026-05-01 09:00", tz)
        await store.add(2, 8, "fix the roof", "high", None, tz)
        done = await store.add(2, 8, "already done", "high", "2026-03-01", tz)
        await store.complete(2, done.id)

    asyncio.run(add())


def test_each_admin_sees_only_the_todos_of_their_own_chat(db: Database) -> None:
    add_todos(db)  # chat 1: admin 1's; chat 2: a chat no admin owns
    fill(db, 1, ["hello", "hi"], ts=at(2).timestamp())
    admins = Admins(1, 3)
    digest = DailyDigest(db, SETTINGS, admins, backup_age=lambda: 1.0)
    with time_machine.travel(NOW, tick=False):
        asyncio.run(digest.run())
    (one, first), (three, other) = admins.to_chat
    assert (one, three) == (1, 3)
    lines = first.splitlines()
    i = lines.index("To-dos: 3 open (🔴 1 high · ⚪ 1 normal · 🔵 1 low), 1 overdue")
    assert lines[i + 1 : i + 6] == [
        "Overdue:",
        "  🔴 #1 call the bank (due 2026-04-01)",
        "Open:",
        "  ⚪ #2 buy milk",
        "  🔵 #3 renew passport (due 2026-05-01 09:00)",
    ]
    # another chat's list is nobody else's business: not its items, not its count
    assert "fix the roof" not in first and "already done" not in first
    assert "To-dos: none open" in other.splitlines()
    assert not any(t in other for t in ("call the bank", "buy milk", "fix the roof"))
    # the rest of the digest is the same for every admin
    assert first.split("To-dos:")[0] == other.split("To-dos:")[0]


def test_no_admins_means_no_digest_and_no_record(db: Database) -> None:
    fill(db, 1, ["hello", "hi"], ts=at(2).timestamp())
    admins = Admins()
    admins.admins = []
    with time_machine.travel(NOW, tick=False):
        account = asyncio.run(DailyDigest(db, SETTINGS, admins, backup_age=lambda: 1.0).run())
    assert account.startswith("skipped: no admins") and admins.sent == []
    with db.read() as conn:
        assert conn.execute("SELECT count(*) FROM job_digests").fetchone()[0] == 0


def test_an_overdue_todo_is_reported_on_a_quiet_day_and_open_ones_alone_are_not(
    db: Database,
) -> None:
    from agents.tools.todos import TodoStore

    asyncio.run(TodoStore(db).add(1, 7, "someday", "low", None))
    admins = Admins(1, 2, 3)
    digest = DailyDigest(db, SETTINGS, admins, backup_age=lambda: 1.0)
    with time_machine.travel(NOW, tick=False):
        assert asyncio.run(digest.run()).startswith("skipped")
    add_todos(db)  # overdue items in chat 1 only; chat 2's open one is not late
    with time_machine.travel(NOW + timedelta(hours=24), tick=False):
        assert asyncio.run(digest.run()).startswith("sent")
    # only the admin whose own chat has an overdue item hears of it on a quiet day
    ((chat, text),) = admins.to_chat
    assert chat == 1 and "Activity: no messages" in text and "1 overdue" in text
