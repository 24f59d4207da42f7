"""The weekly lessons: last week's 👎 feedback, with its reasons, distilled into "lesson" memories.

One model call per week, batched: every 👎 of the last completed week (Monday to Monday in the
jobs time zone; a vote belongs to the week it was cast or last changed in) goes into one prompt,
asking for a JSON list of short, general lessons (a JSON schema when the provider supports it;
the output is validated either way). No 👎, no call. No model, an open breaker, a spent budget
or unusable output: no lessons that week, logged, and the run still succeeds.

Where lessons live: memory's context assembly reads "lesson" memories of the chat it answers in
(``Memory.list_memories(Scope(chat_id, user_id), ["lesson"])``; there is no global scope), so a
lesson is written as a chat-wide memory (no user) into every chat that has messages, and chats
that appear later get the current lessons at the next run. ``job_lesson_cards`` records every
such memory, so the job reconciles instead of appending: a re-run, or a re-synthesis of a week
whose 👎 changed, forgets the cards of lessons no longer wanted and adds only the missing ones;
a lesson that two weeks produce in the same words is one card per chat. Lessons older than
``lessons_keep_weeks`` are retired the same way. A card someone deleted is not written again.
``job_lesson_weeks`` records which week was synthesised from which votes: an unchanged week (no
👎 the last synthesis did not see) makes no call. Lessons are shown in every chat, so the prompt
asks for general rules without names, personal details or quotes.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from loguru import logger

from agents.errors import BadModelOutput, LLMError
from agents.llm import LLM
from agents.providers.base import LLMRequest, extract_json
from agents.usage import CallContext
from jobs.settings import JobsSettings
from memory.db import Database
from memory.types import Scope

LESSONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"lessons": {"type": "array", "items": {"type": "string"}}},
    "required": ["lessons"],
    "additionalProperties": False,
}
SYSTEM = (
    "You review feedback on an AI assistant's answers and distil lessons for its future behaviour."
)
PROMPT = (
    "Below are answers from the past week that users rated 👎, with their reasons when they gave "
    "one. Write at most {n} lessons that would have avoided these problems and will help in future "
    "conversations: each one short imperative sentence that makes sense on its own (for example "
    '"Give quantities in metric units unless asked otherwise."). Lessons are shown in every chat, '
    "so never include names, personal details or quotes from the conversations. Skip feedback that "
    "teaches nothing general; an empty list is fine.{known}{json}\n\n"
)
JSON_NOTE = '\nReply with only JSON: {"lessons": ["..."]}.'
MIN_CHARS, MAX_CHARS = 12, 300
PROMPT_CHARS, ANSWER_CHARS, REASON_CHARS, BATCH_CHARS = 500, 1000, 500, 24_000


class LessonMemory(Protocol):
    """The part of ``memory.service.Memory`` the job writes through."""

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


@dataclass
class Downvote:
    answer_id: int
    user_id: int
    chat_id: int
    prompt: str
    answer: str
    reason: str | None
    updated_at: float


def last_completed_week(now: datetime, tz: ZoneInfo) -> tuple[datetime, datetime, str]:
    """Monday 00:00 to the next Monday 00:00 (local) of the week before ``now``'s, and its ISO label."""
    today = now.astimezone(tz).date()
    monday = today - timedelta(days=today.weekday())
    start = datetime.combine(monday - timedelta(days=7), dtime(0), tzinfo=tz)
    end = datetime.combine(monday, dtime(0), tzinfo=tz)
    year, week, _ = start.isocalendar()
    return start, end, f"{year}-W{week:02d}"


def lesson_key(text: str) -> str:
    """Two lessons are the same when they differ only in case, spacing or a final full stop."""
    return " ".join(text.lower().split()).rstrip(".!")


def parse_lessons(text: str, limit: int) -> list[str]:
    """The lessons in a model reply, cleaned; ``BadModelOutput`` when it is not the asked-for JSON."""
    try:
        data = extract_json(text)
    except ValueError as exc:
        raise BadModelOutput(f"lessons reply is not JSON: {exc}") from exc
    items = data.get("lessons") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise BadModelOutput('lessons reply has no "lessons" list')
    out: list[str] = []
    seen: set[str] = set()
    for item in items:
        if isinstance(item, dict):  # {"lesson": "..."} slipped in by a model without a schema
            item = item.get("lesson") or item.get("text")
        if not isinstance(item, str):
            continue
        clean = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", " ".join(item.split()))
        if not MIN_CHARS <= len(clean) <= MAX_CHARS:
            logger.info("lesson dropped for its length ({} chars)", len(clean))
            continue
        if lesson_key(clean) not in seen:
            seen.add(lesson_key(clean))
            out.append(clean)
    return out[:limit]


def _clip(text: str | None, n: int) -> str:
    text = (text or "").strip()
    return text if len(text) <= n else text[: n - 1] + "…"


def _has(conn: sqlite3.Connection, table: str) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
        is not None
    )


class WeeklyLessons:
    def __init__(
        self, db: Database, memory: LessonMemory, llm: LLM, settings: JobsSettings
    ) -> None:
        self.db = db
        self.memory = memory
        self.llm = llm
        self.settings = settings
        self.tz = ZoneInfo(settings.timezone)

    async def run(self, now: datetime | None = None) -> str:
        """Synthesise the last completed week (when needed), then bring every chat's lesson cards
        up to date; returns a one-line account for the run record."""
        now = now or datetime.now(UTC)
        start, end, label = last_completed_week(now, self.tz)
        downs = await self.db.run(self._downvotes, start.timestamp(), end.timestamp())
        if not downs:
            account = f"{label}: no 👎 feedback, nothing to learn"
        else:
            keys = sorted([d.answer_id, d.user_id] for d in downs)
            used = await self.db.run(self._used, start.timestamp())
            if used is not None and {tuple(k) for k in keys} <= used:
                account = f"{label}: its {len(downs)} 👎 were already synthesised"
            else:
                known = await self.db.run(self._kept_lessons, start.timestamp(), True)
                lessons = await self.synthesise(downs, [t for t, _, _ in known])
                if lessons is None:
                    account = f"{label}: {len(downs)} 👎 but no model answer, no lessons this time"
                else:
                    await self.db.run(self._record_week, start.timestamp(), label, keys, lessons)
                    account = f"{label}: {len(lessons)} lesson(s) from {len(downs)} 👎"
        added, removed, chats = await self.sync(start)
        return f"{account}; cards +{added} -{removed} in {chats} chat(s)"

    async def synthesise(self, downs: list[Downvote], known: list[str]) -> list[str] | None:
        """One model call for the whole batch; None when there is no usable answer (logged)."""
        caps = self.llm.capabilities
        if not caps.generates:
            logger.info("weekly lessons: no model configured; {} 👎 left unsynthesised", len(downs))
            return None
        n = self.settings.lessons_max_per_week
        known_note = (
            (
                "\nThese lessons are already known; do not repeat them:\n"
                + "\n".join(f"- {k}" for k in known[:30])
            )
            if known
            else ""
        )
        prompt = PROMPT.format(n=n, known=known_note, json="" if caps.json_schema else JSON_NOTE)
        blocks: list[str] = []
        size = len(prompt)
        for i, d in enumerate(downs[: self.settings.lessons_max_feedback], 1):
            block = (
                f"### {i}\nUser asked: {_clip(d.prompt, PROMPT_CHARS)}\n"
                f"Assistant answered: {_clip(d.answer, ANSWER_CHARS)}\n"
                f"Reason for 👎: {_clip(d.reason, REASON_CHARS) or '(none given)'}"
            )
            if size + len(block) > BATCH_CHARS:
                break
            blocks.append(block)
            size += len(block) + 2
        request = LLMRequest(
            messages=[{"role": "user", "content": prompt + "\n\n".join(blocks)}],
            system=SYSTEM,
            max_tokens=120 * n + 100,
            temperature=0.2 if caps.temperature else None,
            effort="low" if caps.effort else None,
            json_schema=LESSONS_SCHEMA if caps.json_schema else None,
        )
        try:
            result = await self.llm.complete(request, CallContext(purpose="lessons"))
            if result.refused:
                raise BadModelOutput("the model refused to write lessons")
            return parse_lessons(result.text, n)
        except (
            LLMError
        ) as exc:  # breaker open, provider down, malformed output: no lessons this week
            logger.warning("weekly lessons skipped ({}): {}", type(exc).__name__, exc)
            return None

    async def sync(self, current_week: datetime) -> tuple[int, int, int]:
        """Make every chat hold exactly one card of each kept lesson: (added, removed, chats)."""
        kept = await self.db.run(self._kept_lessons, current_week.timestamp(), False)
        wanted: dict[str, tuple[str, str, float]] = {}
        for text, week, ts in kept:  # newest week first: it owns a lesson two weeks share
            wanted.setdefault(lesson_key(text), (text, week, ts))
        chats, cards = await self.db.run(self._chats_and_cards)
        removed = added = 0
        have: dict[int, set[str]] = {}
        for memory_id, chat_id, text in cards:
            if lesson_key(text) in wanted:
                have.setdefault(chat_id, set()).add(lesson_key(text))
                continue
            # False when someone already deleted it; replaced, not asked to be forgotten.
            await self.memory.forget(memory_id, Scope(chat_id), erase=False)
            await self.db.run(self._drop_card, memory_id)
            removed += 1
        for chat_id in chats:
            for key, (text, week, ts) in wanted.items():
                if key in have.get(chat_id, set()):
                    continue
                memory_id = await self.memory.add_memory(
                    text,
                    Scope(chat_id),
                    "lesson",
                    ref=f"lessons:{week}",
                    ts=datetime.fromtimestamp(ts, UTC),
                )
                await self.db.run(self._add_card, memory_id, chat_id, text, week)
                added += 1
        return added, removed, len(chats)

    # -- queries (database thread) ------------------------------------------------------------
    def _downvotes(self, start: float, end: float) -> list[Downvote]:
        with self.db.read() as conn:
            if not (_has(conn, "feedback") and _has(conn, "feedback_answers")):
                return []  # the bot's tables are not there (no bot package, old database)
            rows = conn.execute(
                "SELECT f.answer_id, f.user_id, f.chat_id, a.prompt, a.answer, f.reason, f.updated_at"
                " FROM feedback f JOIN feedback_answers a ON a.id = f.answer_id"
                " WHERE f.rating = -1 AND f.updated_at >= ? AND f.updated_at < ?"
                # the ones with a reason first: they teach most when the batch is cut short
                " ORDER BY trim(coalesce(f.reason, '')) = '', f.updated_at DESC, f.answer_id",
                (start, end),
            ).fetchall()
        return [Downvote(*r) for r in rows]

    def _used(self, week_start: float) -> set[tuple[int, int]] | None:
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT feedback FROM job_lesson_weeks WHERE week_start = ?", (week_start,)
            ).fetchone()
        return None if row is None else {(int(a), int(u)) for a, u in json.loads(row[0])}

    def _kept_lessons(
        self, week_start: float, other_weeks_only: bool
    ) -> list[tuple[str, str, float]]:
        """(text, week label, week end) of the weeks still kept, newest week first."""
        cutoff = (
            week_start - (self.settings.lessons_keep_weeks - 1) * 7 * 86400 - 3 * 3600
        )  # DST slack
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT week, lessons, week_start FROM job_lesson_weeks WHERE week_start >= ?"
                + (" AND week_start != ?" if other_weeks_only else "")
                + " ORDER BY week_start DESC",
                (cutoff, week_start) if other_weeks_only else (cutoff,),
            ).fetchall()
        # A lesson's card carries the end of its week as its time, so the newest weeks list first.
        return [
            (text, week, start + 7 * 86400)
            for week, lessons, start in rows
            for text in json.loads(lessons)
        ]

    def _record_week(
        self, week_start: float, label: str, keys: list[list[int]], lessons: list[str]
    ) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO job_lesson_weeks (week_start, week, feedback, lessons, model, created_at)"
                " VALUES (?,?,?,?,?,?) ON CONFLICT (week_start) DO UPDATE SET feedback = excluded.feedback,"
                " lessons = excluded.lessons, model = excluded.model, created_at = excluded.created_at",
                (
                    week_start,
                    label,
                    json.dumps(keys),
                    json.dumps(lessons, ensure_ascii=False),
                    self.llm.model,
                    time.time(),
                ),
            )

    def _chats_and_cards(self) -> tuple[list[int], list[tuple[int, int, str]]]:
        with self.db.read() as conn:
            chats = [
                r[0] for r in conn.execute("SELECT DISTINCT chat_id FROM messages ORDER BY chat_id")
            ]
            cards = [
                tuple(r)
                for r in conn.execute(
                    "SELECT memory_id, chat_id, text FROM job_lesson_cards ORDER BY memory_id"
                )
            ]
        return chats, cards  # type: ignore[return-value]

    def _add_card(self, memory_id: int, chat_id: int, text: str, week: str) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO job_lesson_cards (memory_id, chat_id, text, week, created_at) VALUES (?,?,?,?,?)",
                (memory_id, chat_id, text, week, time.time()),
            )

    def _drop_card(self, memory_id: int) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM job_lesson_cards WHERE memory_id = ?", (memory_id,))
