"""The values of the agent loop (``agents.loop``): an answer's state, which is stored as JSON while
it waits for the person's OK, the loop's result, its hooks, and what the model is told when a call
is declined or cannot be asked about."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agents.providers.base import (
    Completion,
    ToolResultBlock,
    ToolUseBlock,
    Usage,
    block_from_json,
    block_to_json,
    messages_from_json,
    messages_to_json,
)

OnText = Callable[[str], Awaitable[None]]
STOPPED = {
    "steps": "I stopped here: this answer reached its limit of {n} steps.",
    "deadline": "I stopped here: this answer ran out of time.",
    "budget": "I stopped here: your daily token budget is spent.",
}
NO_ANSWER = "I could not finish working this out."
DECLINED = "The user declined this call; nothing was done. Do not try it again in this answer."
CANNOT_ASK = (
    "this call needs the user's confirmation, which cannot be asked for in this answer; nothing "
    "was done. Do not retry it; tell the user they can ask for it directly"
)


@dataclass
class RunState:
    """Everything an answer needs to carry on: stored as JSON while it waits for the user."""

    run_id: int
    chat_id: int
    user_id: int | None
    is_admin: bool
    system_prefix: str
    system: str
    messages: list[dict[str, Any]]
    cache_turns: int
    max_tokens: int
    step: int = 0  # model calls made
    tainted: bool = False  # an untrusted result has entered the answer
    pending: list[ToolUseBlock] = field(default_factory=list)  # calls of this step not answered
    results: list[ToolResultBlock] = field(default_factory=list)  # answered calls of this step
    best_text: str = ""
    # A draft in a three-pass or panel answer cannot stop to ask: calls that need the user's
    # OK are refused there (the model is told to leave them to the user).
    can_pause: bool = True
    temperature: float | None = None
    effort: str | None = None
    source_key: str | None = None  # the message answered: a replay does not redo its calls

    def to_json(self) -> dict[str, Any]:
        out = {
            k: v for k, v in self.__dict__.items() if k not in ("messages", "pending", "results")
        }
        out["messages"] = messages_to_json(self.messages)
        out["pending"] = [block_to_json(b) for b in self.pending]
        out["results"] = [block_to_json(b) for b in self.results]
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunState:
        d = dict(d)
        d["messages"] = messages_from_json(d["messages"])
        d["pending"] = [block_from_json(b) for b in d["pending"]]
        d["results"] = [block_from_json(b) for b in d["results"]]
        return cls(**d)


@dataclass
class LoopResult:
    text: str
    run_id: int
    usage: Usage = field(default_factory=Usage)
    calls: int = 0  # model calls
    tool_calls: int = 0
    stopped: str | None = None  # "steps" | "deadline" | "budget"
    waiting_for: str | None = None  # a call awaiting the user's confirmation, in plain words
    last: Completion | None = None


@dataclass
class Hooks:
    on_delta: OnText | None = None  # the text of the current step so far
    on_activity: OnText | None = None  # what a running tool is doing ("🔎 searching memory…")
