"""The chat agent: one incoming message in, one answer out, with memory on both sides.

For each message it stores the user's turn, has memory assemble the context (persona, facts,
recalled memories, summary, recent turns) within the token budget, answers in the chat's mode
(single, three-pass, or review panel), stores the answer, and every few turns hands the recent
turns to the fact extractor in the background (batched: one call per N turns, not per message).
Which turns the extractor has had is kept per chat in ``llm_fact_marks``, so a restart carries on
the count instead of starting it again.
A chat with a persona selected is answered by the model ``route`` names for it (the persona's
LoRA adapter): directly, or in three-pass and panel answers as the author of drafts and
revisions, while the default model critiques and reviews.

With a ``ToolLoop`` and a provider that takes tools, a plain answer runs through the agent loop
(``agents.loop``): the conversation keeps the user's message and the final answer as its turns,
the tool calls stay beside the answer in ``agent_tool_calls``. An answer paused on a call that
needs the user's ✅ comes back with ``waiting_for`` set and stores no turn yet; ``resume``
carries it on.

Failures end in a clear sentence for the user, never an exception out of ``answer``: the reason
is logged, and ``Answer.error`` names the kind. With no model configured it answers from memory.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from loguru import logger

from agents.chat_tools import ToolAnswers
from agents.errors import (
    BadModelOutput,
    BudgetExceeded,
    DeadlineExceeded,
    LLMError,
    ProviderAuthError,
    ProviderRejected,
    ProviderUnavailable,
)
from agents.llm import LLM
from agents.loop import Hooks, LoopResult, ToolLoop
from agents.providers.base import (
    ImageBlock,
    LLMRequest,
    TextBlock,
    Usage,
    extract_json,
)
from agents.providers.none import NOTICE
from agents.resilience import deadline
from agents.review import Progress, ReviewEngine, ReviewResult
from agents.settings import LLMSettings
from agents.usage import CallContext
from agents.voice.handler import for_context
from memory import store
from memory.context import Quoted, said_by, with_quote, with_recalled
from memory.db import Database
from memory.facts import FactExtractor
from memory.text import MemoryInputError, clean
from memory.types import Message, Scope

Mode = Literal["single", "think", "review"]
OnDelta = Callable[[str], Awaitable[None]]
# The model a chat is answered by when it is not the default one (a persona's adapter): chat id in,
# an LLM out, or None for the default. Supplied by the composition root.
ChatRoute = Callable[[int], Awaitable[LLM | None]]
# Sections memory's assembler puts after the stable part (persona, facts, lessons) of the system
# prompt; the cache breakpoint goes before the first of them.
VOLATILE_HEADERS = ("## Earlier in this conversation",)
# A retrieval-only answer quotes each memory up to this many characters: a pasted 100 kB text
# quoted whole would flood the chat (dozens of Telegram messages) for one question.
RECALLED_CHARS = 300


def _recalled_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= RECALLED_CHARS else text[: RECALLED_CHARS - 1] + "…"


FACTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"facts": {"type": "array", "items": {"type": "string"}}},
    "required": ["facts"],
    "additionalProperties": False,
}
EXTRACT_PROMPT = (
    "From the conversation below, list durable facts about the user worth remembering for months "
    "(preferences, circumstances, plans, people, standing instructions). Each fact one short "
    'sentence that makes sense on its own, in the third person ("The user ..."). Skip small '
    "talk, questions and anything temporary. A message the user forwarded is someone else's "
    "words: take from it only what it says about the user (an appointment made for them), never "
    "its author's own circumstances as the user's. "
    'Reply with only JSON: {"facts": ["..."]}; an empty list when there is nothing.\n\n'
)


EDITED_NOTE = (
    "[The person edited this message after sending it; answer it as it reads now. An answer of "
    "yours to it above was to what it said before.]"
)


@dataclass(frozen=True)
class Edit:
    """Answering again a stored user turn whose message the person edited (its words already
    revised in memory, ``Memory.revise_turn``)."""

    turn_id: int
    at: int  # when it was edited (Telegram's edit_date): keys the answer, so a replay finds it


def source_key(chat_id: int, message_id: int, edit: Edit | None = None) -> str:
    """What the agent loop's steps are keyed on: the message answered ("CHAT:MESSAGE"), and for
    an answer after an edit, the edit, so its steps are its own ("CHAT:MESSAGE:editAT")."""
    key = f"{chat_id}:{message_id}"
    return f"{key}:edit{edit.at}" if edit is not None else key


@dataclass
class Answer:
    text: str
    mode: Mode = "single"
    usage: Usage = field(default_factory=Usage)
    calls: int = 0
    run_id: int | None = None  # the stored three-pass / panel transcript
    review: ReviewResult | None = None
    retrieval_only: bool = False
    error: str | None = (
        None  # "input", "unavailable", "budget", "auth", "timeout", "bad_output", "rejected"
    )
    included: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    replayed: bool = False  # the stored answer to a message handled before (an update replayed)
    tool_run_id: int | None = None  # the agent loop's record of the answer (its tool calls)
    tool_calls: int = 0
    stopped: str | None = None  # the bound that ended a tool-using answer early
    waiting_for: str | None = None  # a call that waits for the user's ✅, in plain words


def split_stable_prefix(system: str) -> tuple[str, str]:
    """(stable prefix, the rest) of an assembled system prompt, split at the first volatile section."""
    cut = min(
        (i for i in (system.find("\n\n" + h) for h in VOLATILE_HEADERS) if i >= 0), default=-1
    )
    if cut < 0:
        return system, ""
    return system[:cut], system[cut + 2 :]


def user_message(exc: LLMError) -> tuple[str, str]:
    """What the user is told for a failed answer, and the error kind."""
    if isinstance(exc, BudgetExceeded):
        return f"Sorry, {exc}.", "budget"
    if isinstance(exc, ProviderAuthError):
        return (
            "The model provider refused our credentials or spend limit; the admins have been told.",
            "auth",
        )
    if isinstance(exc, DeadlineExceeded):
        return (
            "The model took too long to answer, so I stopped waiting. Please try again.",
            "timeout",
        )
    if isinstance(exc, ProviderUnavailable):
        return (
            "The model provider is overloaded or unreachable right now. "
            "Please try again in a minute."
        ), "unavailable"
    if isinstance(exc, BadModelOutput):
        return f"The model gave no usable answer ({exc}). Try rephrasing.", "bad_output"
    if isinstance(exc, ProviderRejected):
        return (
            "The model provider rejected this request. Try a shorter or different message.",
            "rejected",
        )
    return f"Something went wrong asking the model: {exc}", "error"


def _who(turn: Message) -> str:
    """The turn's side for the extraction transcript: "user" (as the prompt calls the person,
    in a group too: each member's turns are extracted apart), marked when forwarded."""
    return said_by(turn.role, {"forwarded_from": turn.meta.get("forwarded_from")})


class LLMFactExtractor(FactExtractor):
    """Memory's extractor interface, answered by the model in one call per batch of turns."""

    def __init__(self, llm: LLM, max_tokens: int = 512) -> None:
        self.llm = llm
        self.max_tokens = max_tokens

    async def extract(self, turns: list[Message]) -> list[str]:
        if not turns or not self.llm.capabilities.generates:
            return []
        user_id = next((t.user_id for t in turns if t.user_id is not None), None)
        ctx = CallContext(user_id=user_id, chat_id=turns[0].chat_id, purpose="extract")
        transcript = "\n".join(f"{_who(t)}: {t.text}" for t in turns)
        request = LLMRequest(
            messages=[{"role": "user", "content": EXTRACT_PROMPT + transcript}],
            max_tokens=self.max_tokens,
            temperature=0.0 if self.llm.capabilities.temperature else None,
            effort="low" if self.llm.capabilities.effort else None,
            json_schema=FACTS_SCHEMA if self.llm.capabilities.json_schema else None,
        )
        try:
            result = await self.llm.complete(request, ctx)
            data = extract_json(result.text)
        except (LLMError, ValueError) as exc:
            logger.warning("fact extraction skipped: {}", exc)
            return []
        facts = data.get("facts", []) if isinstance(data, dict) else data
        return [f.strip() for f in facts if isinstance(f, str) and f.strip()][:20]


def turns_of_each_person(
    turns: list[Message], default: int | None
) -> dict[int | None, list[Message]]:
    """The turns of a batch by person, oldest first: each person's own turns with the answers
    they got (an assistant turn goes with the person whose turn it follows; one before any
    goes with ``default``, whose message made extraction due). A private chat is one person."""
    out: dict[int | None, list[Message]] = {}
    owner = default
    for t in turns:
        if t.role == "user":
            owner = t.user_id
        out.setdefault(owner, []).append(t)
    return out


class ExtractionMarks:
    """The id of the last message of each chat handed to fact extraction, cached in memory and
    kept in ``llm_fact_marks`` (without a database, in memory only)."""

    def __init__(self, db: Database | None) -> None:
        self.db = db
        self._marks: dict[int, int] = {}

    async def get(self, chat_id: int) -> int:
        if chat_id not in self._marks:
            self._marks[chat_id] = (
                await self.db.run(self._load, chat_id) if self.db is not None else 0
            )
        return self._marks[chat_id]

    def take(self, chat_id: int, message_id: int) -> None:
        """Claim turns up to ``message_id`` now, so a concurrent turn does not take them too."""
        self._marks[chat_id] = max(self._marks.get(chat_id, 0), message_id)

    async def save(self, chat_id: int, message_id: int) -> None:
        if self.db is not None:
            await self.db.run(self._save, chat_id, message_id)

    def _load(self, chat_id: int) -> int:
        assert self.db is not None
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT last_message_id FROM llm_fact_marks WHERE chat_id = ?", (chat_id,)
            ).fetchone()
        return int(row[0]) if row else 0

    def _save(self, chat_id: int, message_id: int) -> None:
        assert self.db is not None
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO llm_fact_marks (chat_id, last_message_id, ts) VALUES (?, ?, ?)"
                " ON CONFLICT (chat_id) DO UPDATE SET last_message_id = max(last_message_id,"
                " excluded.last_message_id), ts = excluded.ts",
                (chat_id, message_id, datetime.now(UTC).isoformat()),
            )


class ChatAgent(ToolAnswers):
    def __init__(
        self,
        memory: Any,
        llm: LLM,
        settings: LLMSettings,
        review: ReviewEngine | None = None,
        extractor: FactExtractor | None = None,
        route: ChatRoute | None = None,
        db: Database | None = None,
        tools: ToolLoop | None = None,
    ) -> None:
        self.memory = memory  # memory.service.Memory
        self.llm = llm
        self.route = (
            route  # a chat with a persona: its model answers and authors; llm critiques, reviews
        )
        self.settings = settings
        self.review = review
        self.extractor = extractor
        self.marks = ExtractionMarks(db)
        self.tools = tools
        self._background: set[asyncio.Task[Any]] = set()

    async def answer(
        self,
        chat_id: int,
        user_id: int | None,
        text: str,
        *,
        mode: Mode = "single",
        is_admin: bool = False,
        telegram_message_id: int | None = None,
        on_delta: OnDelta | None = None,
        progress: Progress | None = None,
        meta: dict[str, Any] | None = None,
        on_activity: OnDelta | None = None,
        attachment: str = "",
        images: Sequence[ImageBlock] = (),
        quoted: Quoted | None = None,
        can_pause: bool = True,
        edit: Edit | None = None,
    ) -> Answer:
        """Answer one incoming message. ``on_delta`` gets the text so far as it streams (single
        mode); ``progress`` gets phase names in think/review modes. ``meta`` is stored with the
        user's turn; with ``from_audio`` the model sees the text marked as a transcript (memory
        keeps the plain words). ``on_activity`` gets what a running tool is doing.
        ``attachment`` (a document or page the person sent, stored on its own) goes to the model
        before the message and is not stored with it. ``images`` (photos, for a provider with
        vision) go with the message as image blocks; a message with images is answered in
        single mode (the three-pass and panel answers pass text only). ``can_pause`` False
        (nobody there to ask, as ``familiar ask`` without a terminal): tool calls that need the
        person's OK are refused, with that reason to the model, instead of pausing the answer.
        ``quoted``: the message this one replies to, shown with it unless already in view.
        ``edit``: the message is a stored turn the person edited, answered again (not stored
        again; a replay of it finds the answer given after that edit, and nothing is given).
        Never raises for model faults."""
        if edit is not None:
            if await self.memory.answer_to(chat_id, edit.turn_id, edit.at) is not None:
                return Answer("", mode, replayed=True)
            turn_id, stored_now = edit.turn_id, True
        else:
            try:
                turn_id, stored_now = await self.memory.store_turn(
                    chat_id,
                    user_id,
                    "user",
                    text,
                    telegram_message_id=telegram_message_id,
                    meta=meta or None,
                )
            except MemoryInputError as exc:  # empty, or too big to keep: said; nothing stored
                logger.info("message in chat {} not taken: {}", chat_id, exc)
                return Answer(
                    f"⚠️ I can't take that message: {exc}. Please {exc.fix}.", mode, error="input"
                )
        if not stored_now:
            # A replayed update (the daemon stopped while answering): the turn is stored once and
            # an answer already stored is given again, not asked of the model a second time.
            stored = await self.memory.answer_to(chat_id, turn_id)
            if stored is not None:
                return Answer(stored, mode, replayed=True)
            logger.info("answering message {} in chat {} again (replayed)", turn_id, chat_id)
        context = await self.memory.assemble_context(
            chat_id,
            user_id,
            text,
            self.settings.context_tokens,
            self.settings.persona,
            speaker=str((meta or {}).get("speaker") or ""),
            forwarded_from=str((meta or {}).get("forwarded_from") or ""),
        )
        if not self.llm.capabilities.generates:
            return await self._from_memory(chat_id, user_id, text)
        history = context.messages[:-1]
        text = context.messages[-1][
            "content"
        ]  # the incoming message, clipped to the budget if need be
        if meta and meta.get("from_audio"):
            text = for_context(text)
        text = with_quote(quoted, text, history)
        if edit is not None:
            text = f"{EDITED_NOTE}\n{text}"
        if attachment:
            text = f"{attachment}\n\n{text}"
        if images:
            mode = "single"
        prefix, rest = split_stable_prefix(context.system)
        ctx = CallContext(user_id, chat_id, "chat", is_admin)
        try:
            with deadline(self.settings.answer_deadline_s):
                persona = await self.route(chat_id) if self.route is not None else None
                if mode == "single" or self.review is None:
                    llm = persona or self.llm
                    incoming: Any = with_recalled(context.recalled, text)
                    if images and llm.capabilities.vision:  # a persona's model may have none
                        incoming = [*images, TextBlock(incoming)]
                    messages = [*history, {"role": "user", "content": incoming}]
                    if self._uses_tools(llm):
                        source = (
                            source_key(chat_id, telegram_message_id, edit)
                            if telegram_message_id is not None
                            else None
                        )
                        answer = await self._with_tools(
                            prefix,
                            rest,
                            messages,
                            ctx,
                            llm,
                            Hooks(on_delta, on_activity),
                            source,
                            can_pause,
                        )
                    else:
                        answer = await self._single(prefix, rest, messages, ctx, on_delta, llm)
                else:
                    answer = await self._reviewed(
                        mode, text, prefix, rest, history, context.recalled, ctx, progress, persona
                    )
        except LLMError as exc:
            message, kind = user_message(exc)
            logger.warning("answer in chat {} failed ({}): {}", chat_id, kind, exc)
            return Answer(
                message, mode, error=kind, included=context.included, dropped=context.dropped
            )
        answer.included, answer.dropped = context.included, context.dropped
        if answer.waiting_for is None:  # a paused answer stores its turn once it is finished
            await self._store_answer(
                chat_id, user_id, answer, reply_to=turn_id, edit=edit.at if edit else None
            )
        return answer

    async def _store_answer(
        self,
        chat_id: int,
        user_id: int | None,
        answer: Answer,
        reply_to: int | None = None,
        edit: int | None = None,
    ) -> None:
        meta: dict[str, Any] = {"mode": answer.mode, "run_id": answer.run_id}
        if reply_to is not None:  # the user turn it answers: a replayed update finds it
            meta["reply_to"] = reply_to
        if edit is not None:  # given after that edit of it: a replayed edit finds it
            meta["edit"] = edit
        if answer.tool_run_id is not None:
            meta["tool_run_id"] = answer.tool_run_id
        await self.memory.add_message(chat_id, None, "assistant", answer.text, meta=meta)
        await self._maybe_extract(chat_id, user_id)

    async def _single(
        self,
        prefix: str,
        rest: str,
        messages: list[dict[str, str]],
        ctx: CallContext,
        on_delta: OnDelta | None,
        llm: LLM | None = None,
    ) -> Answer:
        llm = llm or self.llm
        # The turns before the incoming message are repeated by the next message's request.
        request = LLMRequest(
            messages=messages,
            system_prefix=prefix,
            system=rest,
            max_tokens=self.settings.max_output_tokens,
            cache_turns=len(messages) - 1,
        )
        result = await llm.answer(request, ctx, on_delta)
        text = result.text.strip()
        if not text:
            reason = "declined to answer" if result.refused else "returned an empty answer"
            raise BadModelOutput(f"the model {reason}")
        if result.truncated:
            text += "\n\n… (cut off at the length limit)"
        return Answer(text, "single", result.usage, 1)

    async def _reviewed(
        self,
        mode: Mode,
        text: str,
        prefix: str,
        rest: str,
        history: list[dict[str, str]],
        recalled: str,
        ctx: CallContext,
        progress: Progress | None,
        author: LLM | None = None,
    ) -> Answer:
        assert self.review is not None
        draft_runs: list[LoopResult] = []
        drafter = self._tool_drafter(draft_runs) if self._uses_tools(author or self.llm) else None
        if mode == "think":
            result = await self.review.three_pass(
                text,
                ctx,
                system_prefix=prefix,
                system=rest,
                history=history,
                recalled=recalled,
                progress=progress,
                author=author,
                drafter=drafter,
            )
        else:
            result = await self.review.panel(
                text,
                ctx,
                system_prefix=prefix,
                system=rest,
                history=history,
                recalled=recalled,
                progress=progress,
                author=author,
                drafter=drafter,
            )
        answer = Answer(result.final, mode, result.usage, result.calls, result.run_id, result)
        if draft_runs:
            answer.tool_run_id = draft_runs[0].run_id
            answer.tool_calls = draft_runs[0].tool_calls
            answer.calls += draft_runs[0].calls - 1  # the engine counted the draft as one call
        return answer

    async def _from_memory(self, chat_id: int, user_id: int | None, text: str) -> Answer:
        hits = await self.memory.search(text, Scope(chat_id, user_id), k=5)
        hits = [h for h in hits if h.text.strip() != clean(text)]  # not the message just stored
        if hits:
            lines = "\n".join(f"- [{h.ts:%Y-%m-%d}] {_recalled_line(h.text)}" for h in hits)
            body = f"{NOTICE}\n\nWhat I remember that may be relevant:\n{lines}"
        else:
            body = f"{NOTICE}\n\nI found nothing in memory about that."
        return Answer(body, retrieval_only=True)

    # -- fact extraction -------------------------------------------------------------------
    async def _maybe_extract(self, chat_id: int, user_id: int | None) -> None:
        """Start extraction in the background once ``fact_extraction_every`` turns are waiting.
        Checked once per answer, after it (off the answer's path); a failed answer's user turn
        waits for the next check."""
        every = self.settings.fact_extraction_every
        if self.extractor is None or every <= 0 or not self.llm.capabilities.generates:
            return
        try:
            mark = await self.marks.get(chat_id)
            # Up to twice the batch: all that waits, normally (a backlog beyond that is skipped).
            turns = await self.memory.recent_messages(chat_id, 2 * every, after_id=mark)
        except Exception as exc:  # bookkeeping must never cost the user the answer
            logger.opt(exception=exc).warning(
                "fact extraction bookkeeping in chat {} failed", chat_id
            )
            return
        if len(turns) < every:
            return
        self.marks.take(chat_id, turns[-1].id)
        task = asyncio.create_task(self._extract(chat_id, user_id, turns))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def relearn(self, chat_id: int, user_id: int | None, turn_id: int) -> None:
        """A turn the person edited (``Memory.revise_turn``) after its facts were extracted: its
        new words are read for facts again, in the background (a fact learnt from them
        supersedes the one from before, as any correction does). A turn not read yet is read
        with the others when extraction is next due."""
        if self.extractor is None or not self.llm.capabilities.generates:
            return
        try:
            if await self.marks.get(chat_id) < turn_id:
                return
            turns = await self.memory.db.run(
                store.messages_between, self.memory.db, chat_id, turn_id, turn_id
            )
        except Exception as exc:  # bookkeeping must never cost the person their edit
            logger.opt(exception=exc).warning("re-reading an edited turn in chat {}", chat_id)
            return
        task = asyncio.create_task(self._extract(chat_id, user_id, turns))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _extract(self, chat_id: int, user_id: int | None, turns: list[Message]) -> None:
        assert self.extractor is not None
        try:
            # Each person's facts from their own words: in a group, one member's "I'm allergic
            # to penicillin" is not a fact about whoever's message made extraction due.
            learnt = 0
            for person, own in turns_of_each_person(turns, user_id).items():
                learnt += len(await self.memory.learn(own, Scope(chat_id, person), self.extractor))
            # Saved once the facts are stored: a crash before this hands the same turns over again.
            await self.marks.save(chat_id, turns[-1].id)
            logger.info("extracted {} facts in chat {}", learnt, chat_id)
        except Exception as exc:  # background work: log, never crash the chat
            logger.opt(exception=exc).warning("fact extraction in chat {} failed", chat_id)

    async def drain(self) -> None:
        """Wait for background extraction (for shutdown and tests)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)


def answer_as_json(answer: Answer) -> str:
    """The ``--json`` form of the CLI: the answer, its passes or rounds, and usage."""
    out: dict[str, Any] = {
        "text": answer.text,
        "mode": answer.mode,
        "calls": answer.calls,
        "usage": answer.usage.as_dict(),
        "error": answer.error,
        "retrieval_only": answer.retrieval_only,
        "run_id": answer.run_id,
    }
    if answer.review is not None:
        out["review"] = answer.review.transcript()
    return json.dumps(out, ensure_ascii=False, indent=2)
