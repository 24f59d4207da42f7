"""What the hourly summariser is given to summarise: the chat's own user and assistant turns of
that hour (start included, end excluded), oldest first, read through ``memory.store``."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from jobs.settings import JobsSettings
from jobs.summarize import HourlySummarizer
from memory.context import Summariser
from memory.db import Database
from memory.store import conversation_between
from memory.types import Message, Scope
from tests.jobs.conftest import all_test_migrations

HOUR = datetime(2026, 4, 2, 14, 0, tzinfo=UTC)


class RecordingSummariser(Summariser):
    def __init__(self) -> None:
        self.turns: list[list[tuple[str, str]]] = []

    async def summarise(self, turns: list[Message]) -> str:
        self.turns.append([(t.role, t.text) for t in turns])
        return "summary"


class NoMemory:
    """Accepts the summary and forgets nothing: this test looks only at what was summarised."""

    async def add_memory(
        self, text: str, scope: Scope, kind: str = "note", *, ref=None, ts=None
    ) -> int:
        return 1

    async def forget(self, memory_id: int, scope: Scope, *, erase: bool = True) -> bool:
        return True


def add(db: Database, chat_id: int, role: str, text: str, at: datetime) -> None:
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO messages (chat_id, user_id, role, text, ts) VALUES (?,?,?,?,?)",
            (chat_id, 7, role, text, at.timestamp()),
        )


def test_the_summariser_gets_the_hours_turns_of_its_chat_only(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "familiar.db", all_test_migrations())
    try:
        add(db, 1, "user", "before the hour", HOUR - timedelta(seconds=1))
        add(db, 1, "user", "on the hour", HOUR)
        add(db, 1, "system", "a system note", HOUR + timedelta(minutes=1))
        add(db, 2, "user", "another chat", HOUR + timedelta(minutes=2))
        add(db, 1, "assistant", "an answer", HOUR + timedelta(minutes=3))
        add(db, 1, "user", "a question", HOUR + timedelta(minutes=59))
        add(db, 1, "user", "the next hour", HOUR + timedelta(hours=1))
        expected = [("user", "on the hour"), ("assistant", "an answer"), ("user", "a question")]

        turns = conversation_between(db, 1, HOUR, HOUR + timedelta(hours=1))
        assert [(t.role, t.text) for t in turns] == expected
        assert all(t.chat_id == 1 for t in turns) and [t.id for t in turns] == sorted(
            t.id for t in turns
        )

        llm = RecordingSummariser()
        job = HourlySummarizer(db, NoMemory(), llm, JobsSettings(summarize_min_messages=1))
        asyncio.run(job.summarise_hour(HOUR, HOUR + timedelta(hours=1)))
        assert llm.turns == [expected, [("user", "another chat")]]  # chat 1, then chat 2
    finally:
        db.close()
