"""The plain values the memory package hands to its callers: scopes, hits, messages, results."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

KINDS = ("message", "summary", "fact", "note", "lesson", "document")
# Kinds found by their best sentence as well as by the whole (their ``parts``): every text of
# more than one sentence but facts, which are one line. Conversation turns joined them in
# memory m006: a turn of small talk and one piece of news is found by the news.
SENTENCE_KINDS = ("note", "document", "summary", "lesson", "message")
# Kinds whose words may tell of a time in the person's life (memory m008): not a document's
# ("last year" there counts from when it was written, which is not known) nor a lesson's.
TOLD_KINDS = ("message", "note", "fact", "summary")


@dataclass(frozen=True)
class Scope:
    """Whose memory. Search never crosses chats; a user id narrows to that user's rows plus the
    rows that belong to nobody in particular (the assistant's turns, chat-wide notes)."""

    chat_id: int
    user_id: int | None = None


@dataclass
class Hit:
    id: int
    text: str
    score: float
    kind: str
    chat_id: int
    user_id: int | None
    ts: datetime
    ref: str | None
    # Where the hit came from: "fts", "dense" or both, and for messages the message row id.
    provenance: dict[str, Any] = field(default_factory=dict)
    # For a conversation turn, the turns just before and after it (context, not ranked hits).
    before: list[Hit] = field(default_factory=list)
    after: list[Hit] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "text": self.text,
            "score": round(self.score, 6),
            "kind": self.kind,
            "chat_id": self.chat_id,
            "user_id": self.user_id,
            "ts": self.ts.isoformat(),
            "ref": self.ref,
            **(
                {
                    "before": [h.as_dict() for h in self.before],
                    "after": [h.as_dict() for h in self.after],
                }
                if self.before or self.after
                else {}
            ),
        }


@dataclass
class Message:
    id: int
    chat_id: int
    user_id: int | None
    role: str
    text: str
    ts: datetime
    telegram_message_id: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    memory_id: int | None = None


@dataclass(frozen=True)
class Revision:
    """A user turn revised after its Telegram message was edited (``Memory.revise_turn``)."""

    message_id: int  # the turn (``messages.id``)
    changed: bool  # False: it already read so (a replayed edit, or an edit of nothing it keeps)
    latest: bool  # no later user turn in the chat
    ts: float  # when it was first said (epoch seconds)


@dataclass(frozen=True)
class FactResult:
    action: Literal["added", "duplicate", "superseded"]
    id: int
    superseded_id: int | None = None


@dataclass
class AssembledContext:
    system: str
    messages: list[dict[str, str]]  # earlier turns, then the incoming message (plain)
    included: list[str]
    dropped: list[str]
    tokens_used: int
    budget_tokens: int = 0
    # Recalled memories: they change with every message, so they go with the incoming message
    # (``with_recalled``), after the turns, keeping the system prompt and the earlier turns a
    # prefix that stays the same from one message to the next (and so in a provider's cache).
    recalled: str = ""
