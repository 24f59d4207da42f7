"""Context assembly inside a token budget, and compaction of history into summaries.

The prompt is ordered stable-first so a provider's prompt cache keeps hitting: the system prompt
holds the persona, pinned facts and lessons, then the conversation summary; then come the recent
turns; recalled memories, which change with every message, go last, with the incoming message
(``with_recalled``). An incoming message over half the budget loses its middle (``clip_middle``).
Budget shares (of what the persona and the incoming message leave): facts and lessons up to 20 %,
summary up to 15 %, recalled memories up to 20 %; recent turns take the rest, newest first, and
any share left unused goes back to them.

The turns shown are those after the latest summary. When they outgrow their share, the older
ones are compacted in one go until the rest fill half of it: the injected ``Summariser`` (an LLM,
or ``ExtractiveSummariser`` which needs none) writes a summary of the previous summary plus those
turns, stored as a "summary" memory. Compacting by halves keeps the start of the window, and so a
provider's cached prompt, the same for many turns, and costs one summary per many turns. The
turns themselves are never deleted and stay searchable.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loguru import logger

from memory.search import shown_once
from memory.text import STOPWORDS, has_visible, words
from memory.types import AssembledContext, Hit, Message

FACTS_SHARE, SUMMARY_SHARE, RECALL_SHARE = 0.20, 0.15, 0.20
COMPACT_TO = 0.5  # share of the turns budget left in the window after a compaction
INCOMING_SHARE = (
    0.5  # most of the budget the incoming message may take; a longer one loses its middle
)


class Summariser(ABC):
    """Writes a short summary of conversation turns (oldest first)."""

    @abstractmethod
    async def summarise(self, turns: list[Message]) -> str: ...


class ExtractiveSummariser(Summariser):
    """No-LLM summary: the top keywords, then the sentences that carry most of them, in order."""

    def __init__(self, max_sentences: int = 8, max_chars: int = 1500) -> None:
        self.max_sentences = max_sentences
        self.max_chars = max_chars

    async def summarise(self, turns: list[Message]) -> str:
        sentences: list[tuple[str, str]] = []
        for t in turns:
            who = "Summary so far" if t.role == "system" else who_said(t)
            for s in re.split(r"(?<=[.!?])\s+|\n+", t.text):
                if len(s.split()) >= 3:
                    sentences.append((who, s.strip()))
        counts = Counter(
            w
            for _, s in sentences
            for w in re.findall(r"\w+", s.lower())
            if w not in STOPWORDS and len(w) > 2
        )
        if not sentences:
            return " ".join(t.text for t in turns)[: self.max_chars]
        keywords = [w for w, _ in counts.most_common(8)]

        def weight(s: str) -> float:
            ws = [w for w in re.findall(r"\w+", s.lower()) if w not in STOPWORDS]
            return sum(counts[w] for w in ws) / (len(ws) ** 0.5 or 1.0)

        order = sorted(range(len(sentences)), key=lambda i: -weight(sentences[i][1]))[
            : self.max_sentences
        ]
        lines = [f"- {sentences[i][0]}: {sentences[i][1]}" for i in sorted(order)]
        text = f"Keywords: {', '.join(keywords)}\n" + "\n".join(lines)
        return text[: self.max_chars]


def _take(items: list[str], budget: int, count: Callable[[str], int]) -> tuple[list[str], int, int]:
    """Items in order while they fit: (taken, tokens used, number dropped)."""
    taken, used = [], 0
    for item in items:
        cost = count(item) + 1
        if used + cost > budget:
            continue
        taken.append(item)
        used += cost
    return taken, used, len(items) - len(taken)


def fit_turns(history: list[Message], budget: int, count: Callable[[str], int]) -> list[Message]:
    """The newest turns that fit, oldest first; stops at the first that does not fit so the kept
    turns are always a contiguous, most recent run."""
    kept: list[Message] = []
    used = 0
    for m in reversed(history):
        cost = count(m.text) + 4
        if used + cost > budget:
            break
        kept.append(m)
        used += cost
    return list(reversed(kept))


AUDIO_MARK = "[voice message, transcribed automatically; words may be misheard] "


def labelled(speaker: str | None, text: str) -> str:
    """A group member's turn begins with their name, so the model can tell who said what."""
    return f"{speaker}: {text}" if speaker else text


def forwarded(origin: str | None, text: str) -> str:
    """A message the person forwarded is someone else's words: marked as such, and as data (as
    a quote or a document is), so the model neither takes it as the person's own nor obeys
    what it says. ``origin``: who wrote it, as the channel names them."""
    if not origin:
        return text
    return (
        f"[Forwarded: a message from {origin}, their words, not the sender's:]\n"
        f"<<<FORWARDED\n{text}\nFORWARDED>>>"
    )


def said_by(role: str, meta: dict[str, Any]) -> str:
    """Who said a turn, for a transcript: a group member's name, else its role; a forwarded
    message says whose words it passes on."""
    who = str(meta.get("speaker") or "") or role
    origin = meta.get("forwarded_from")
    return f"{who} (forwarding {origin})" if origin else who


def who_said(turn: Message) -> str:
    """The turn's speaker for a transcript (``said_by``); a summary's turn is the summary."""
    if turn.role == "system":
        return "earlier summary"
    return said_by(turn.role, turn.meta)


def as_heard(turn: Message) -> str:
    """Turns that came from audio say so, so the model allows for misheard words; a group
    member's turn is labelled with their name (``meta["speaker"]``, set by the channel); a
    forwarded one is marked as its author's words (``meta["forwarded_from"]``)."""
    meta = turn.meta
    # As the incoming one: mark, name, words.
    text = labelled(meta.get("speaker"), forwarded(meta.get("forwarded_from"), turn.text))
    return AUDIO_MARK + text if meta.get("from_audio") else text


GROUP_NOTE = (
    '## This chat\nA group chat: each person\'s message begins with their name ("Ann: ..."); '
    "answer the person who wrote the latest one."
)
QUOTE_MAX_CHARS = 1500  # of a message replied to, shown with the reply


@dataclass(frozen=True)
class Quoted:
    """The message a person's message replies to (Telegram's reply, or the part of it they
    quoted): shown to the model with the reply, not kept in memory as the person's words.
    ``author``: ``"assistant"`` (the assistant's own message), ``"self"`` (the person's own) or
    a member's name."""

    text: str
    author: str


def _words(text: str) -> str:
    return " ".join(words(text))


def with_quote(quote: Quoted | None, text: str, shown: list[dict[str, Any]]) -> str:
    """The message with what it replies to before it, marked as a quote (data, as a document
    is), unless that is already among the turns ``shown`` to the model: replying to the latest
    answer, as people do in a group to address the bot, costs nothing. A message is matched by
    its words, so the formatting Telegram strips from an answer does not hide it."""
    if quote is None or not has_visible(quote.text):
        return text
    key = " ".join(_words(quote.text).split()[:40])
    if key and any(
        isinstance(m.get("content"), str) and f" {key} " in f" {_words(m['content'])} "
        for m in shown
    ):
        return text
    body = quote.text.strip()
    if len(body) > QUOTE_MAX_CHARS:
        body = body[:QUOTE_MAX_CHARS] + "…"
    whose = {"assistant": "your earlier message", "self": "their own earlier message"}.get(
        quote.author, f"an earlier message from {quote.author}"
    )
    return f"[In reply to {whose}:]\n<<<QUOTE\n{body}\nQUOTE>>>\n\n{text}"


RECALLED_HEADER = "## Possibly relevant memories (recalled automatically; not part of the message)"
MESSAGE_HEADER = "## The message"


def clip_middle(text: str, budget: int, count: Callable[[str], int]) -> str:
    """``text`` within ``budget`` tokens: a longer one keeps its start and end, and says how much of
    the middle was left out (the stored message stays whole and searchable)."""
    size = count(text)
    if size <= budget:
        return text
    keep = max(0, int(len(text) * budget / size * 0.9) - 80)  # room for the marker
    head, tail = keep * 2 // 3, keep // 3
    left_out = len(text) - head - tail
    return f"{text[:head]}\n[… {left_out:,} characters left out to fit the context …]\n{text[len(text) - tail :]}"


def with_recalled(recalled: str, incoming: str) -> str:
    """The incoming message as the model sees it: recalled memories first, when there are any."""
    return f"{recalled}\n\n{MESSAGE_HEADER}\n{incoming}" if recalled else incoming


def short(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def section_budgets(budget: int, persona: str, incoming: str, count: Callable[[str], int]) -> int:
    """Tokens left for facts, summary, recall and turns after the fixed parts."""
    return max(0, budget - count(persona) - count(incoming) - 16)


class ContextAssembler:
    """Builds one ``AssembledContext`` from a ``Memory`` (see the module docstring)."""

    def __init__(self, memory: Any) -> None:
        self.m = memory
        self.count = memory.count_tokens

    async def assemble(
        self,
        chat_id: int,
        user_id: int | None,
        incoming: str,
        budget: int,
        persona: str,
        speaker: str = "",
        forwarded_from: str = "",
    ) -> AssembledContext:
        """``speaker``: in a group chat, the name of who wrote ``incoming``; turns are then shown
        labelled with their speakers' names (the search still reads the words alone).
        ``forwarded_from``: ``incoming`` was forwarded, written by them (``forwarded``)."""
        from memory import store
        from memory.types import Scope

        m, count = self.m, self.count
        scope = Scope(chat_id, user_id)
        included: list[str] = []
        dropped: list[str] = []
        original, incoming = incoming, clip_middle(incoming, int(budget * INCOMING_SHARE), count)
        if incoming != original:
            dropped.append(
                f"the middle of the message ({len(original) - len(incoming):,} characters), to fit"
            )
        rest = section_budgets(budget, persona, incoming, count)
        if persona:
            included.append(f"persona ({count(persona)} tokens)")

        history = await m.recent_messages(chat_id, 500)
        incoming_ids: set[int | None] = set()
        if history and history[-1].role == "user" and history[-1].text.strip() == original.strip():
            # The caller stored the incoming turn before asking for context: it is not history,
            # and recalling it would only repeat the message.
            incoming_ids.add(history[-1].memory_id)
            history = history[:-1]

        # Facts and lessons: pinned facts first, then other facts, then lessons, newest first.
        facts = await m.list_memories(scope, ["fact"], 200)
        lessons = await m.list_memories(scope, ["lesson"], 50)
        pinned = [f for f in facts if _pinned(f)] + [f for f in facts if not _pinned(f)]
        fact_lines, used_f, n_drop = _take(
            [f"- {h.text}" for h in pinned], int(rest * FACTS_SHARE * 0.75), count
        )
        lesson_lines, used_l, n_drop_l = _take(
            [f"- {h.text}" for h in lessons], int(rest * FACTS_SHARE) - used_f, count
        )
        if fact_lines:
            included.append(f"{len(fact_lines)} facts")
        if lesson_lines:
            included.append(f"{len(lesson_lines)} lessons")
        if n_drop or n_drop_l:
            dropped.append(f"{n_drop} facts and {n_drop_l} lessons over their share")

        # Recall, reserved now and filled after the turns so it can skip turns already shown.
        recalled = (
            await m.search(incoming, scope, k=m.settings.context_recall_k)
            if incoming.strip()
            else []
        )
        recalled = [h for h in recalled if h.kind not in ("fact", "lesson")]
        speakers = await self._speakers(recalled)
        recall_reserve = min(
            int(rest * RECALL_SHARE),
            sum(count(recall_line(h, speakers)) + 8 for h in recalled),
        )

        summary = await m.db.run(store.latest_summary, m.db, chat_id)
        summary_text = summary[0] if summary else None
        covered = summary[2] if summary else 0
        turns_budget = rest - used_f - used_l - recall_reserve
        if summary_text:
            turns_budget -= int(rest * SUMMARY_SHARE)
        # The turns shown are all those the summary does not cover, while they fit. When they
        # no longer do, the older ones are summarised in one go, down to COMPACT_TO of the
        # budget: the window's start, and so the cached prompt prefix, then stays put for the
        # next many turns, and the summariser runs once per many turns, not once per message.
        pending = [t for t in history if t.id > covered]
        if sum(count(t.text) + 4 for t in pending) <= turns_budget:
            kept = pending
        else:
            if not summary_text:
                turns_budget -= int(rest * SUMMARY_SHARE)  # there will be a summary now
            kept = fit_turns(pending, int(turns_budget * COMPACT_TO), count)
            summary_text = await self._compact(
                chat_id, summary_text, pending[: len(pending) - len(kept)]
            )
        older = history[: len(history) - len(kept)]
        summary_used = 0
        if summary_text:
            summary_text = _clip(summary_text, int(rest * SUMMARY_SHARE), count)
            summary_used = count(summary_text)
            included.append(f"summary ({summary_used} tokens)")
        if older:
            dropped.append(f"{len(older)} older turns (summarised; still searchable)")

        shown = {t.memory_id for t in kept} | incoming_ids
        leftover = turns_budget - sum(count(t.text) + 4 for t in kept)
        recall_lines, used_r, n_drop_r = _take(
            [recall_line(h, speakers) for h in shown_once(recalled, shown)],
            recall_reserve
            + max(0, leftover)
            + (int(rest * SUMMARY_SHARE) - summary_used if summary_text else 0),
            count,
        )
        if recall_lines:
            included.append(f"{len(recall_lines)} recalled memories")
        if n_drop_r:
            dropped.append(f"{n_drop_r} recalled memories over budget")
        included.append(f"{len(kept)} recent turns")

        parts = [persona.strip()] if persona.strip() else []
        if speaker:
            parts.append(GROUP_NOTE)
        if fact_lines:
            about = "the person writing now" if speaker else "the user"
            parts.append(f"## What you know about {about}\n" + "\n".join(fact_lines))
        if lesson_lines:
            parts.append("## Lessons\n" + "\n".join(lesson_lines))
        if summary_text:
            parts.append("## Earlier in this conversation\n" + summary_text)
        recalled_text = (RECALLED_HEADER + "\n" + "\n".join(recall_lines)) if recall_lines else ""
        system = "\n\n".join(parts)
        messages = [
            {"role": t.role if t.role in ("user", "assistant") else "user", "content": as_heard(t)}
            for t in kept
        ]
        messages.append(
            {"role": "user", "content": labelled(speaker, forwarded(forwarded_from, incoming))}
        )
        used = count(system) + sum(count(x["content"]) + 4 for x in messages) + count(recalled_text)
        return AssembledContext(system, messages, included, dropped, used, budget, recalled_text)

    async def _speakers(self, hits: list[Hit]) -> dict[int, str]:
        """Who said each recalled turn and the turns around it (``said_by``), by memory id."""
        from memory import store

        ids = [t.id for h in hits if h.kind == "message" for t in (h, *h.before, *h.after)]
        if not ids:
            return {}
        turns = await self.m.db.run(store.turns_said, self.m.db, ids)
        return {i: said_by(role, meta) for i, (role, meta) in turns.items()}

    async def _compact(self, chat_id: int, previous: str | None, turns: list[Message]) -> str:
        """Summarise ``turns`` (after the previous summary), store it, return its text."""
        from datetime import UTC, datetime

        from memory import store
        from memory.types import Scope

        m = self.m
        inputs = list(turns)
        if previous:
            inputs.insert(0, Message(0, chat_id, None, "system", previous, datetime.now(UTC)))
        try:
            text = await m.summariser.summarise(inputs)
        except Exception as exc:  # an LLM outage must not lose the context: fall back
            logger.warning("summariser failed ({}); using the extractive summary", exc)
            text = await ExtractiveSummariser().summarise(inputs)
        if not text.strip():
            text = await ExtractiveSummariser().summarise(inputs)
        memory_id = await m.add_memory(
            text, Scope(chat_id), "summary", ref=f"messages:{turns[0].id}-{turns[-1].id}"
        )
        await m.db.run(store.add_summary, m.db, chat_id, memory_id, turns[0].id, turns[-1].id)
        logger.info("compacted {} turns of chat {} into summary {}", len(turns), chat_id, memory_id)
        return text


def recall_line(hit: Hit, speakers: dict[int, str] | None = None) -> str:
    """One recalled memory for the model, with the turns around a recalled turn (the question
    it answers, the reply it got) as indented context (``shown_once`` leaves out those already
    in the window). A turn says who said it (``speakers``: "user", "assistant", a group
    member's name, "user (forwarding Tom)"), so an answer of the assistant's is not read as the
    user's words."""
    said = speakers or {}

    def by(turn: Hit) -> str:
        who = said.get(turn.id)
        return f"{who}: " if who else ""

    lines = [f"- [{hit.ts:%Y-%m-%d}] {by(hit)}{hit.text}"]
    for label, turns in (("just before", hit.before), ("just after", hit.after)):
        lines += [f"  ({label}) {by(t)}{short(t.text, 300)}" for t in turns]
    return "\n".join(lines)


def _pinned(hit: Hit) -> bool:
    return bool(hit.provenance.get("pinned"))


def _clip(text: str, budget: int, count: Callable[[str], int]) -> str:
    if count(text) <= budget:
        return text
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(text[:mid] + "…") <= budget:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + "…"
