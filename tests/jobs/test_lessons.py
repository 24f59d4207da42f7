"""The weekly lessons on real SQLite, the real Memory facade and a scripted model behind ``LLM``."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine

from agents.errors import ProviderUnavailable
from agents.llm import LLM
from agents.providers.base import Capabilities
from agents.providers.fake import FakeProvider
from agents.schema import migrations as agents_migrations
from agents.settings import LLMSettings
from agents.usage import UsageStore
from bot.core.feedback import FeedbackStore
from bot.core.schema import migrations as bot_migrations
from jobs.lessons import (
    JSON_NOTE,
    LESSONS_SCHEMA,
    WeeklyLessons,
    last_completed_week,
    parse_lessons,
)
from jobs.settings import JobsSettings
from memory.db import Database
from memory.embedder import HashingEmbedder
from memory.service import Memory
from memory.settings import MemorySettings
from tests.jobs.conftest import all_test_migrations, fill

BERLIN = "Europe/Berlin"
# Monday 30 March 2026, 09:00 in Berlin. The last completed week, 2026-W13, runs from Monday
# 23 March 00:00 CET to Monday 30 March 00:00 CEST: summer time began on the Sunday in between.
NOW = datetime(2026, 3, 30, 7, 0, tzinfo=UTC)
IN_WEEK = datetime(2026, 3, 25, 12, 0, tzinfo=UTC)
SHORT = "Keep answers short when the user asks for a list."
DATES = "Check dates against the calendar before giving them."


@pytest.fixture
def env(tmp_path: Path):
    db = Database.open(
        tmp_path / "familiar.db", [*all_test_migrations(), agents_migrations, bot_migrations]
    )
    memory = Memory(db, HashingEmbedder(), MemorySettings(), tmp_path / "index")
    yield db, memory
    asyncio.run(memory.stop())
    db.close()


def llm_with(
    db: Database, *replies, capabilities: Capabilities | None = None
) -> tuple[LLM, FakeProvider]:
    provider = FakeProvider(replies, capabilities=capabilities)
    return LLM(provider, UsageStore(db, LLMSettings())), provider


def reply(*lessons: str) -> str:
    return json.dumps({"lessons": list(lessons)})


def vote(
    db: Database,
    when: datetime,
    chat: int,
    user: int,
    prompt: str,
    answer: str,
    rating: int,
    reason: str | None = None,
) -> int:
    """An answer and one vote on it, stored by the bot's own ``FeedbackStore`` at ``when``."""
    store = FeedbackStore(db)
    with time_machine.travel(when, tick=False):
        answer_id = store.add_answer("telegram", chat, user, prompt, answer)
        store.vote(answer_id, user, chat, rating)
        if reason is not None:
            store.add_reason_prompt(chat, 500 + answer_id, answer_id, user)
            assert store.take_reason(chat, 500 + answer_id, user, reason)
    return answer_id


def week_of_feedback(db: Database) -> None:
    fill(
        db, 1, ["I garden a lot", "Nice!"], ts=(IN_WEEK - timedelta(days=20)).timestamp(), user_id=7
    )
    fill(
        db, 2, ["Taxes are due", "Indeed"], ts=(IN_WEEK - timedelta(days=20)).timestamp(), user_id=8
    )
    vote(
        db,
        IN_WEEK,
        1,
        7,
        "List three shade herbs",
        "Herbs are a vast topic... " * 20,
        -1,
        "Too long, I wanted a short list",
    )
    vote(
        db,
        IN_WEEK + timedelta(days=1),
        2,
        8,
        "When is the deadline?",
        "On 31 June.",
        -1,
        "June has 30 days",
    )
    vote(db, IN_WEEK + timedelta(days=2), 2, 8, "And the fee?", "About 40 euros, I think.", -1)
    vote(db, IN_WEEK, 1, 7, "Thanks", "You're welcome.", 1)  # a 👍: not a lesson
    vote(
        db, IN_WEEK - timedelta(days=8), 1, 7, "Old", "Old answer", -1, "an older week's complaint"
    )


def lessons_in(db: Database) -> dict[int, list[str]]:
    with db.read() as conn:
        rows = conn.execute(
            "SELECT chat_id, text FROM memories WHERE kind = 'lesson' ORDER BY chat_id, text"
        ).fetchall()
    out: dict[int, list[str]] = {}
    for chat, text in rows:
        out.setdefault(chat, []).append(text)
    return out


def test_the_week_is_last_monday_to_monday_in_the_zone() -> None:
    from zoneinfo import ZoneInfo

    start, end, label = last_completed_week(NOW, ZoneInfo(BERLIN))
    assert (start.isoformat(), end.isoformat(), label) == (
        "2026-03-23T00:00:00+01:00",
        "2026-03-30T00:00:00+02:00",
        "2026-W13",
    )
    # Sunday 23:30 in Berlin is still in the week after W12.
    start, _, label = last_completed_week(
        datetime(2026, 3, 29, 21, 30, tzinfo=UTC), ZoneInfo(BERLIN)
    )
    assert (start.date().isoformat(), label) == ("2026-03-16", "2026-W12")


def test_downvotes_become_lessons_that_every_chat_sees(env) -> None:
    db, memory = env
    week_of_feedback(db)
    llm, provider = llm_with(db, reply(SHORT, "- " + DATES))
    job = WeeklyLessons(db, memory, llm, JobsSettings(timezone=BERLIN))

    async def scenario():
        await memory.start()
        await memory.wait_ready()
        with time_machine.travel(NOW, tick=False):
            first = await job.run()
        after_first = lessons_in(db)
        context = await memory.assemble_context(2, 8, "what else should I know?", 4000)
        fill(db, 3, ["a new chat appears", "welcome"], ts=NOW.timestamp())  # after the synthesis
        with time_machine.travel(NOW + timedelta(hours=2), tick=False):
            second = await job.run()
        context3 = await memory.assemble_context(3, 9, "hello again", 4000)
        return first, second, after_first, context, context3

    first, second, after_first, context, context3 = asyncio.run(scenario())
    assert first == "2026-W13: 2 lesson(s) from 3 👎; cards +4 -0 in 2 chat(s)"
    # One batched call with the schema, holding this week's three 👎 (those with a reason first).
    (request,) = provider.requests
    assert request.json_schema == LESSONS_SCHEMA and JSON_NOTE not in request.messages[0]["content"]
    prompt = request.messages[0]["content"]
    assert (
        prompt.count("### ") == 3
        and "an older week's complaint" not in prompt
        and "You're welcome" not in prompt
    )
    assert (
        prompt.index("June has 30 days") < prompt.index("Too long") < prompt.index("(none given)")
    )
    assert after_first == {1: sorted([SHORT, DATES]), 2: sorted([SHORT, DATES])}
    # The chat agent's context of any chat carries them.
    assert "## Lessons" in context.system and SHORT in context.system and DATES in context.system
    assert "2 lessons" in context.included
    # Re-run: the week is done (no call), the new chat gets its cards, nothing is duplicated.
    assert second == "2026-W13: its 3 👎 were already synthesised; cards +2 -0 in 3 chat(s)"
    assert len(provider.requests) == 1
    assert lessons_in(db) == {c: sorted([SHORT, DATES]) for c in (1, 2, 3)}
    assert SHORT in context3.system
    with db.read() as conn:
        assert conn.execute("SELECT purpose, ok FROM llm_usage").fetchall() == [("lessons", 1)]
        (week, feedback, lessons) = conn.execute(
            "SELECT week, feedback, lessons FROM job_lesson_weeks"
        ).fetchone()
    assert (
        week == "2026-W13"
        and len(json.loads(feedback)) == 3
        and json.loads(lessons) == [SHORT, DATES]
    )


def test_no_downvote_means_no_model_call(env) -> None:
    db, memory = env
    fill(db, 1, ["hello", "hi"], ts=IN_WEEK.timestamp())
    vote(db, IN_WEEK, 1, 7, "Thanks", "You're welcome.", 1)
    vote(db, IN_WEEK - timedelta(days=8), 1, 7, "Old", "Old answer", -1, "last week's")
    llm, provider = llm_with(db, reply(SHORT))
    with time_machine.travel(NOW, tick=False):
        account = asyncio.run(WeeklyLessons(db, memory, llm, JobsSettings(timezone=BERLIN)).run())
    assert account == "2026-W13: no 👎 feedback, nothing to learn; cards +0 -0 in 1 chat(s)"
    assert provider.requests == [] and lessons_in(db) == {}


def test_a_new_downvote_in_the_week_replaces_its_lessons_without_copies(env) -> None:
    db, memory = env
    week_of_feedback(db)
    llm, provider = llm_with(
        db,
        reply(SHORT, DATES),
        reply(
            "keep answers SHORT when the user asks for a list",
            "Say when you are unsure of a price.",
        ),
    )
    job = WeeklyLessons(db, memory, llm, JobsSettings(timezone=BERLIN))
    with time_machine.travel(NOW, tick=False):
        asyncio.run(job.run())
    with db.read() as conn:
        short_ids = {r[0] for r in conn.execute("SELECT id FROM memories WHERE text = ?", (SHORT,))}
    # A late 👎 cast on Sunday evening, noticed by a manual re-run on Monday.
    vote(
        db,
        datetime(2026, 3, 29, 20, 0, tzinfo=UTC),
        1,
        9,
        "Price of a spade?",
        "Exactly 12.99.",
        -1,
        "made up",
    )
    with time_machine.travel(NOW + timedelta(hours=3), tick=False):
        account = asyncio.run(job.run())
    assert len(provider.requests) == 2 and "made up" in provider.requests[1].messages[0]["content"]
    assert account == "2026-W13: 2 lesson(s) from 4 👎; cards +2 -2 in 2 chat(s)"
    # The date lesson is retired, the short-list one kept as it was (same lesson, other case), one new.
    expected = sorted([SHORT, "Say when you are unsure of a price."])
    assert lessons_in(db) == {1: expected, 2: expected}
    with db.read() as conn:
        assert {
            r[0] for r in conn.execute("SELECT id FROM memories WHERE text = ?", (SHORT,))
        } == short_ids
        assert conn.execute("SELECT count(*) FROM job_lesson_cards").fetchone()[0] == 4


def test_model_unavailable_or_unusable_gives_no_lessons_and_retries_later(env) -> None:
    db, memory = env
    week_of_feedback(db)
    settings = JobsSettings(timezone=BERLIN)

    def run(llm: LLM) -> str:
        with time_machine.travel(NOW, tick=False):
            return asyncio.run(WeeklyLessons(db, memory, llm, settings).run())

    no_model, p0 = llm_with(db, capabilities=Capabilities(generates=False))
    assert (
        run(no_model)
        == "2026-W13: 3 👎 but no model answer, no lessons this time; cards +0 -0 in 2 chat(s)"
    )
    assert p0.requests == []
    breaker_open, p1 = llm_with(db, ProviderUnavailable("the circuit breaker is open"))
    assert (
        run(breaker_open).startswith("2026-W13: 3 👎 but no model answer") and len(p1.requests) == 1
    )
    babbling, p2 = llm_with(db, "I think the user wanted shorter answers, honestly.")
    assert run(babbling).startswith("2026-W13: 3 👎 but no model answer") and len(p2.requests) == 1
    assert lessons_in(db) == {}
    # Nothing was recorded for the week, so a run with a working model still synthesises it.
    # This one has no structured output: the prompt asks for JSON and a fenced reply is accepted.
    plain, p3 = llm_with(
        db, "```json\n" + reply(SHORT) + "\n```", capabilities=Capabilities(json_schema=False)
    )
    assert run(plain) == "2026-W13: 1 lesson(s) from 3 👎; cards +2 -0 in 2 chat(s)"
    assert p3.requests[0].json_schema is None and JSON_NOTE in p3.requests[0].messages[0]["content"]


def test_lessons_retire_after_the_kept_weeks(env) -> None:
    db, memory = env
    week_of_feedback(db)
    llm, _ = llm_with(db, reply(SHORT), reply(DATES))
    job = WeeklyLessons(db, memory, llm, JobsSettings(timezone=BERLIN, lessons_keep_weeks=1))
    with time_machine.travel(NOW, tick=False):
        asyncio.run(job.run())
    vote(db, NOW + timedelta(days=2), 2, 8, "Deadline again?", "31 June.", -1, "still wrong")
    with time_machine.travel(NOW + timedelta(days=7), tick=False):
        account = asyncio.run(job.run())
    assert account == "2026-W14: 1 lesson(s) from 1 👎; cards +2 -2 in 2 chat(s)"
    assert lessons_in(db) == {1: [DATES], 2: [DATES]}


def test_model_output_is_validated() -> None:
    text = json.dumps(
        {
            "lessons": [
                "1. Answer in the user's language.",
                "ok",
                "answer in the user's language",
                {"lesson": "Give sources for numbers."},
                42,
                "x" * 400,
                "Be brief.  Really brief.",
            ]
        }
    )
    assert parse_lessons(text, 5) == [
        "Answer in the user's language.",
        "Give sources for numbers.",
        "Be brief. Really brief.",
    ]
    assert parse_lessons(text, 1) == ["Answer in the user's language."]
    assert parse_lessons('{"lessons": []}', 5) == []
    for bad in ("no json here", '{"advice": ["x"]}', '{"lessons": "Be brief."}'):
        with pytest.raises(Exception, match="lessons reply"):
            parse_lessons(bad, 5)
