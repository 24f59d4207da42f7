"""The hourly summariser (no call for idle chats, no duplicate on re-run) and the health watch."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jobs.health import HealthWatch
from jobs.settings import JobsSettings
from jobs.summarize import HourlySummarizer
from memory.context import Summariser
from memory.db import Database
from memory.health import CheckResult, HealthRegistry, Status
from memory.types import Message, Scope
from tests.jobs.conftest import all_test_migrations, fill


class CountingSummariser(Summariser):
    """An 'LLM' that counts its calls; ``down`` makes it raise like an open breaker."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.down = False

    async def summarise(self, turns: list[Message]) -> str:
        if self.down:
            raise RuntimeError("breaker open")
        self.calls.append([t.text for t in turns])
        return f"{len(turns)} turns about " + turns[0].text.split()[0]


class StoreMemory:
    """Writes summaries straight into the memories table, as the facade does (minus embedding)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def add_memory(
        self, text: str, scope: Scope, kind: str = "note", *, ref=None, ts=None
    ) -> int:
        with self.db.transaction() as conn:
            return int(
                conn.execute(
                    "INSERT INTO memories (chat_id, kind, text, ts, created_at, content_hash, ref) VALUES (?,?,?,?,?,?,?)",
                    (scope.chat_id, kind, text, ts.timestamp(), 0, text, ref),
                ).lastrowid
            )

    async def forget(self, memory_id: int, scope: Scope, *, erase: bool = True) -> bool:
        with self.db.transaction() as conn:
            return (
                conn.execute(
                    "DELETE FROM memories WHERE id = ? AND chat_id = ?", (memory_id, scope.chat_id)
                ).rowcount
                > 0
            )


def summaries(db: Database) -> list[tuple]:
    with db.read() as conn:
        return conn.execute(
            "SELECT chat_id, text, ref FROM memories WHERE kind = 'summary' ORDER BY chat_id"
        ).fetchall()


@pytest.fixture
def db(tmp_path: Path):
    d = Database.open(tmp_path / "familiar.db", all_test_migrations())
    yield d
    d.close()


HOUR = datetime(2026, 4, 2, 14, 0, tzinfo=UTC)


def test_idle_chats_cost_nothing_and_reruns_do_not_duplicate(db: Database) -> None:
    llm = CountingSummariser()
    job = HourlySummarizer(db, StoreMemory(db), llm, JobsSettings(summarize_min_messages=3))
    fill(db, 1, ["gardening talk about tomatoes and basil"] * 6, ts=HOUR.timestamp() + 60)
    fill(db, 2, ["cooking talk"] * 4, ts=HOUR.timestamp() - 7200)  # two hours earlier: idle now
    fill(db, 3, ["hi", "hello"], ts=HOUR.timestamp() + 120)  # too short for a summary
    now = datetime(2026, 4, 2, 15, 5, tzinfo=UTC)

    out = asyncio.run(job.run(now))
    assert len(llm.calls) == 1 and len(llm.calls[0]) == 6
    assert out.startswith("2026-04-02 14:00: 1 summarised, 0 unchanged, 1 too short, 2 active")
    assert summaries(db) == [
        (
            1,
            "Conversation summary for 2026-04-02 14:00–15:00 UTC:\n6 turns about gardening",
            "hour:2026-04-02T14",
        )
    ]

    asyncio.run(job.run(now))  # the same hour again: nothing changed, no model call
    assert len(llm.calls) == 1 and len(summaries(db)) == 1

    # A late message in that hour: the summary is replaced, not duplicated.
    fill(db, 1, ["one more about tomatoes"], ts=HOUR.timestamp() + 3000)
    asyncio.run(job.run(now))
    assert len(llm.calls) == 2 and len(llm.calls[1]) == 7
    assert [s[1].endswith("7 turns about gardening") for s in summaries(db)] == [True]

    # A quiet hour: no query result, no call at all.
    asyncio.run(job.run(datetime(2026, 4, 2, 18, 5, tzinfo=UTC)))
    assert len(llm.calls) == 2


def test_extractive_fallback_when_the_model_is_unavailable(db: Database) -> None:
    llm = CountingSummariser()
    llm.down = True
    job = HourlySummarizer(db, StoreMemory(db), llm, JobsSettings())
    fill(
        db,
        5,
        [
            "The invoice for the roof repair is due on Friday.",
            "I will pay the roof repair invoice tomorrow morning.",
            "Remember the roof repair warranty papers too.",
        ],
        ts=HOUR.timestamp() + 10,
    )
    asyncio.run(job.run(datetime(2026, 4, 2, 15, 0, 1, tzinfo=UTC)))
    ((chat, text, _),) = summaries(db)
    assert chat == 5 and "Keywords:" in text and "roof" in text


def test_health_watch_speaks_on_changes_only() -> None:
    state = {"disk": Status.HEALTHY}
    registry = HealthRegistry()
    registry.register("disk", lambda: CheckResult("disk", state["disk"], f"{state['disk'].name}"))
    registry.register("db", lambda: CheckResult("db", Status.HEALTHY, "ok"))
    told: list[str] = []

    async def notify(text: str) -> None:
        told.append(text)

    watch = HealthWatch(registry, notify)

    async def ticks(n: int) -> None:
        for _ in range(n):
            await watch.run()

    asyncio.run(ticks(3))
    assert told == []  # healthy from the start: nothing to say
    state["disk"] = Status.DEGRADED
    asyncio.run(ticks(3))
    assert (
        len(told) == 1
        and told[0].startswith("⚠️ Familiar is degraded")
        and "disk: DEGRADED" in told[0]
    )
    state["disk"] = Status.HEALTHY
    asyncio.run(ticks(2))
    assert len(told) == 2 and told[1] == "✅ Familiar is healthy"
