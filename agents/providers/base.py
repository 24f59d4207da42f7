"""The provider interface every model backend implements, and the values it passes around.

A request carries the system prompt in two parts: ``system_prefix`` is the stable part (persona,
pinned facts) that providers with prompt caching mark as cacheable; ``system`` is the part that
changes now and then (the conversation summary). ``cache_turns`` says how many leading messages
are earlier turns, which the next message's request repeats. Options a provider does not honour are ignored
by it; ``capabilities`` says which ones it honours, so callers can, for example, ask for JSON in the
prompt when structured output is not available.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Effort = Literal["low", "medium", "high", "xhigh", "max"]


@dataclass(frozen=True)
class Capabilities:
    temperature: bool = False
    effort: bool = False
    json_schema: bool = False
    prompt_cache: bool = False
    # The provider's prompt cache is keyed on the output schema too (Claude receives the schema as
    # an added system prompt, so a request that adds or changes output_config.format misses the
    # cache written without it), so a call that adds a schema cannot read what earlier calls cached.
    schema_in_cache_key: bool = False
    streaming: bool = True
    generates: bool = True  # False for the retrieval-only provider


@dataclass
class Usage:
    input_tokens: int = 0  # uncached input
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total_input(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def total(self) -> int:
        return self.total_input + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "input": self.input_tokens,
            "output": self.output_tokens,
            "cache_read": self.cache_read_tokens,
            "cache_write": self.cache_write_tokens,
        }


@dataclass
class LLMRequest:
    messages: list[dict[str, str]]  # {"role": "user"|"assistant", "content": str}, oldest first
    system: str = ""
    system_prefix: str = ""
    max_tokens: int = 1024
    temperature: float | None = None
    effort: Effort | None = None
    json_schema: dict[str, Any] | None = None
    # Also cache the whole prompt, not only the stable prefix: for calls that a follow-up call
    # extends (a three-pass draft and critique), where the write (1.25x) comes back as a read
    # (0.1x). Elsewhere it would be a write nothing reads.
    cache_tail: bool = False
    # How many leading messages are the conversation's earlier turns: the same prefix in the next
    # message's request, so providers with prompt caching put a breakpoint after the last of them.
    cache_turns: int = 0

    def with_(self, **changes: Any) -> LLMRequest:
        return replace(self, **changes)

    def full_system(self) -> str:
        return "\n\n".join(p for p in (self.system_prefix, self.system) if p)


@dataclass
class Completion:
    text: str
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    stop_reason: str | None = None  # "end_turn", "max_tokens", "refusal", ...
    latency_s: float = 0.0

    @property
    def truncated(self) -> bool:
        return self.stop_reason in ("max_tokens", "length")

    @property
    def refused(self) -> bool:
        return self.stop_reason in ("refusal", "content_filter")


class Provider(ABC):
    """A model backend. Implementations raise ``agents.errors`` exceptions, never SDK ones."""

    name: str = "provider"
    model: str = ""
    capabilities: Capabilities = Capabilities()

    @abstractmethod
    async def complete(self, request: LLMRequest) -> Completion:
        """One answer, whole."""

    async def stream(self, request: LLMRequest) -> AsyncIterator[str | Completion]:
        """Text deltas as they come, then the final ``Completion`` as the last item.

        The default calls ``complete`` and yields its text once.
        """
        completion = await self.complete(request)
        if completion.text:
            yield completion.text
        yield completion

    async def aclose(self) -> None:
        """Release connections (nothing to release by default)."""
        return None


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def extract_json(text: str) -> Any:
    """Parse JSON from model output that may have prose or a code fence around it.

    Raises ValueError when no JSON object or array can be found.
    """
    text = text.strip()
    candidates = [text]
    candidates += [m.group(1).strip() for m in _FENCE.finditer(text)]
    for opener, closer in (("{", "}"), ("[", "]")):
        start, end = text.find(opener), text.rfind(closer)
        if 0 <= start < end:
            candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except (json.JSONDecodeError, ValueError):
            continue
    raise ValueError("no JSON found in the model output")


def normalise_turns(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """Turns the chat APIs accept: no empty text, roles alternating, starting with the user.

    Stored history can start with an assistant turn or hold two user turns in a row (a message
    that got no answer); APIs reject both, so neighbours of one role are joined.
    """
    out: list[dict[str, str]] = []
    for m in messages:
        role = "assistant" if m.get("role") == "assistant" else "user"
        content = (m.get("content") or "").strip()
        if not content:
            continue
        if out and out[-1]["role"] == role:
            out[-1] = {"role": role, "content": out[-1]["content"] + "\n\n" + content}
        else:
            out.append({"role": role, "content": content})
    while out and out[0]["role"] != "user":
        out.pop(0)
    return out
