"""The hourly summariser: one "summary" memory per chat and completed hour, idempotent, free when idle.

For the last completed hour (in the configured zone), every chat with new messages gets a summary
written by the injected ``Summariser`` (an LLM), falling back to memory's ``ExtractiveSummariser``
when it raises (no model, breaker open). ``job_summaries`` records which chat-hour has which
memory and the last message it covered: re-running an hour whose messages did not change makes
no model call; one whose messages changed replaces the old summary (forget, then add), never
duplicates it. Chats with no messages in the hour are not even looked at: the query only returns
chats that had some. Which chats were active is read from memory's ``messages`` table directly
(read-only; memory has no "chats active between" query), their turns through
``memory.store.conversation_between``; summaries are written through the ``Memory`` facade so
they are embedded and indexed like every other memory.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from loguru import logger

from jobs.settings import JobsSettings
from memory.context import ExtractiveSummariser, Summariser
from memory.db import Database
from memory.store import conversation_between
from memory.types import Message, Scope


class SummaryMemory(Protocol):
    """The part of ``memory.service.Memory`` the summariser writes through."""

    async def add_memory(
        self,
        text: str,
        scope: Scope,
        kind: str = "note",
        *,
        ref: str | None = None,
        ts: datetime | None = None,
    ) -> int: ...

    async def forget(self, memory_id: int, scope: Scope, *, erase: bool = True) -> bool: ...


def last_completed_hour(now: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    end = now.astimezone(tz).replace(minute=0, second=0, microsecond=0)
    return end - timedelta(hours=1), end


class HourlySummarizer:
    def __init__(
        self,
        db: Database,
        memory: SummaryMemory,
        summariser: Summariser,
        settings: JobsSettings,
        fallback: Summariser | None = None,
    ) -> None:
        self.db = db
        self.memory = memory
        self.summariser = summariser
        self.fallback = fallback or ExtractiveSummariser()
        self.settings = settings
        self.tz = ZoneInfo(settings.timezone)

    async def run(self, now: datetime | None = None) -> str:
        """Summarise the last completed hour; returns an account for the job record."""
        start, end = last_completed_hour(now or datetime.now(UTC), self.tz)
        return await self.summarise_hour(start, end)

    async def summarise_hour(self, start: datetime, end: datetime) -> str:
        active = await self.db.run(self._active_chats, start.timestamp(), end.timestamp())
        written = unchanged = small = 0
        for chat_id, count, last_id in active:
            done = await self.db.run(self._done, chat_id, start.timestamp())
            if done is not None and done[1] == last_id:
                unchanged += 1
                continue
            if count < self.settings.summarize_min_messages:
                small += 1
                continue
            turns = await self.db.run(conversation_between, self.db, chat_id, start, end)
            text = await self._summarise(turns)
            scope = Scope(chat_id)
            if done is not None and done[0] is not None:
                await self.memory.forget(done[0], scope, erase=False)  # replaced, not asked
            label = f"{start:%Y-%m-%d %H:%M}–{end:%H:%M} {self.tz.key}"
            memory_id = await self.memory.add_memory(
                f"Conversation summary for {label}:\n{text}",
                scope,
                "summary",
                ref=f"hour:{start.astimezone(UTC):%Y-%m-%dT%H}",
                ts=start,
            )
            await self.db.run(self._record, chat_id, start.timestamp(), memory_id, last_id, count)
            written += 1
        return (
            f"{start:%Y-%m-%d %H:%M}: {written} summarised, {unchanged} unchanged, "
            f"{small} too short, {len(active)} active chat(s)"
        )

    async def _summarise(self, turns: list[Message]) -> str:
        try:
            return await self.summariser.summarise(turns)
        except Exception as exc:  # no model, breaker open, provider down: never skip the hour
            logger.info("summariser unavailable ({}); using the extractive fallback", exc)
            return await self.fallback.summarise(turns)

    # -- queries (database thread) ------------------------------------------------------------
    def _active_chats(self, start: float, end: float) -> list[tuple[int, int, int]]:
        with self.db.read() as conn:
            return [
                tuple(r)
                for r in conn.execute(  # type: ignore[misc]
                    "SELECT chat_id, count(*), max(id) FROM messages WHERE ts >= ? AND ts < ?"
                    " AND role IN ('user', 'assistant') GROUP BY chat_id ORDER BY chat_id",
                    (start, end),
                )
            ]

    def _done(self, chat_id: int, hour: float) -> tuple[int | None, int] | None:
        with self.db.read() as conn:
            r = conn.execute(
                "SELECT memory_id, last_message_id FROM job_summaries WHERE chat_id = ? AND hour_start = ?",
                (chat_id, hour),
            ).fetchone()
        return (r[0], r[1]) if r else None

    def _record(self, chat_id: int, hour: float, memory_id: int, last_id: int, count: int) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO job_summaries (chat_id, hour_start, memory_id, last_message_id, message_count, created_at)"
                " VALUES (?,?,?,?,?,?) ON CONFLICT (chat_id, hour_start) DO UPDATE SET memory_id = excluded.memory_id,"
                " last_message_id = excluded.last_message_id, message_count = excluded.message_count,"
                " created_at = excluded.created_at",
                (chat_id, hour, memory_id, last_id, count, time.time()),
            )
