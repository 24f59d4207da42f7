"""The provider interface every model backend implements, and the values it passes around.

Messages are ``{"role": "user"|"assistant", "content": ...}`` where the content is a plain string
(what most callers send) or a list of content blocks: ``TextBlock``, ``ImageBlock``,
``ToolUseBlock`` (the model asks for a tool call), ``ToolResultBlock`` (what the call returned)
and ``ProviderBlock`` (a block of the provider's own, such as the steps of a search it ran on its
side, which goes back to it unchanged). A request may carry tool definitions (``ToolDef``: name,
description, JSON schema), in the order the caller gives, which must be stable: providers with
prompt caching cache them as part of the prefix. A definition marked ``deferred`` may be left out
of the prompt by a provider that can search for tools (``Capabilities.tool_search``): the model
finds it when it needs it; other providers send it like any other. A completion that asks for
tools has ``stop_reason == "tool_use"`` and ``tool_calls``; ``content`` keeps the whole turn in
order when it holds provider blocks.

A request carries the system prompt in two parts: ``system_prefix`` is the stable part (persona,
pinned facts) that providers with prompt caching mark as cacheable; ``system`` is the part that
changes now and then (the conversation summary). ``cache_turns`` says how many leading messages
are earlier turns, which the next message's request repeats. Options a provider does not honour are ignored
by it; ``capabilities`` says which ones it honours, so callers can, for example, ask for JSON in the
prompt when structured output is not available.
"""

from __future__ import annotations

import base64
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
    tools: bool = False  # takes tool definitions and returns tool calls
    vision: bool = False  # takes image blocks in user messages
    # Sends deferred tool definitions for the model to search, not in the prompt (see ToolDef).
    tool_search: bool = False


# -- content blocks ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TextBlock:
    text: str


@dataclass(frozen=True)
class ImageBlock:
    data: bytes
    media_type: str = "image/jpeg"  # image/jpeg, image/png, image/gif, image/webp

    def b64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")


@dataclass(frozen=True)
class ToolUseBlock:
    id: str
    name: str
    input: dict[str, Any]
    # The arguments as sent when they were not a JSON object (a model's malformed call): the
    # caller answers it with an error result instead of running anything.
    invalid_input: str | None = None


@dataclass(frozen=True)
class ToolResultBlock:
    tool_use_id: str
    content: str
    is_error: bool = False


@dataclass(frozen=True)
class ProviderBlock:
    """A block only its provider understands (Anthropic's ``server_tool_use`` and
    ``tool_search_tool_result``: a tool search the service ran within the answer). It is kept in
    the assistant turn exactly as it came and sent back so with the turn; other providers leave
    it out."""

    provider: str
    data: dict[str, Any]


Block = TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock | ProviderBlock
Content = str | list[Block]


@dataclass(frozen=True)
class ToolDef:
    """A tool as the model sees it."""

    name: str
    description: str
    input_schema: dict[str, Any]
    # Not needed by most messages: a provider with tool search leaves it out of the prompt and
    # the model finds it by searching; a provider without sends it like any other.
    deferred: bool = False


def content_text(content: Content) -> str:
    """The text of a message's content (text blocks joined; other blocks left out)."""
    if isinstance(content, str):
        return content
    return "\n".join(b.text for b in content if isinstance(b, TextBlock))


def block_to_json(block: Block) -> dict[str, Any]:
    """A block as plain JSON (for storing a paused answer); ``block_from_json`` reads it back."""
    if isinstance(block, TextBlock):
        return {"type": "text", "text": block.text}
    if isinstance(block, ImageBlock):
        return {"type": "image", "media_type": block.media_type, "data": block.b64()}
    if isinstance(block, ToolUseBlock):
        out: dict[str, Any] = {
            "type": "tool_use",
            "id": block.id,
            "name": block.name,
            "input": block.input,
        }
        if block.invalid_input is not None:
            out["invalid_input"] = block.invalid_input
        return out
    if isinstance(block, ProviderBlock):
        return {"type": "provider", "provider": block.provider, "data": block.data}
    return {
        "type": "tool_result",
        "tool_use_id": block.tool_use_id,
        "content": block.content,
        "is_error": block.is_error,
    }


def block_from_json(d: dict[str, Any]) -> Block:
    kind = d.get("type")
    if kind == "text":
        return TextBlock(d["text"])
    if kind == "image":
        return ImageBlock(base64.b64decode(d["data"]), d["media_type"])
    if kind == "tool_use":
        return ToolUseBlock(d["id"], d["name"], d["input"], d.get("invalid_input"))
    if kind == "tool_result":
        return ToolResultBlock(d["tool_use_id"], d["content"], bool(d.get("is_error")))
    if kind == "provider":
        return ProviderBlock(d["provider"], d["data"])
    raise ValueError(f"unknown block type {kind!r}")


def messages_to_json(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "role": m["role"],
            "content": m["content"]
            if isinstance(m["content"], str)
            else [block_to_json(b) for b in m["content"]],
        }
        for m in messages
    ]


def messages_from_json(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "role": m["role"],
            "content": m["content"]
            if isinstance(m["content"], str)
            else [block_from_json(b) for b in m["content"]],
        }
        for m in messages
    ]


@dataclass(frozen=True)
class ToolSearch:
    """A search for deferred tools the provider ran within the answer (recorded as a step)."""

    query: str
    found: list[str]
    error: str | None = None


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
    # {"role": "user"|"assistant", "content": str | list[Block]}, oldest first
    messages: list[dict[str, Any]]
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
    # Tools the model may call, in a stable order (they are part of the cached prefix).
    tools: list[ToolDef] = field(default_factory=list)

    def with_(self, **changes: Any) -> LLMRequest:
        return replace(self, **changes)

    def full_system(self) -> str:
        return "\n\n".join(p for p in (self.system_prefix, self.system) if p)


@dataclass
class Completion:
    text: str
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    stop_reason: str | None = None  # "end_turn", "max_tokens", "refusal", "tool_use", ...
    latency_s: float = 0.0
    tool_calls: list[ToolUseBlock] = field(default_factory=list)
    # The turn's blocks in the order they came, when it holds ``ProviderBlock``s (which must go
    # back where they were); None: its text, then its calls, is the whole turn.
    content: list[Block] | None = None
    searches: list[ToolSearch] = field(default_factory=list)

    def blocks(self) -> list[Block]:
        """The assistant turn to send back with the tool results: its text, then its calls."""
        if self.content is not None:
            return [b for b in self.content if not (isinstance(b, TextBlock) and not b.text)]
        out: list[Block] = [TextBlock(self.text)] if self.text.strip() else []
        return out + list(self.tool_calls)

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


def normalise_turns(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Turns the chat APIs accept: no empty text, roles alternating, starting with the user.

    Stored history can start with an assistant turn or hold two user turns in a row (a message
    that got no answer); APIs reject both, so neighbours of one role are joined. String content
    stays a string (so a plain prompt serialises as it always did); block content keeps its
    blocks, less empty text blocks.
    """
    out: list[dict[str, Any]] = []
    for m in messages:
        role = "assistant" if m.get("role") == "assistant" else "user"
        raw = m.get("content") or ""
        content: Content
        if isinstance(raw, str):
            content = raw.strip()
        else:
            content = [b for b in raw if not (isinstance(b, TextBlock) and not b.text.strip())]
        if not content:
            continue
        if out and out[-1]["role"] == role:
            before = out[-1]["content"]
            if isinstance(before, str) and isinstance(content, str):
                joined: Content = before + "\n\n" + content
            else:
                joined = _as_blocks(before) + _as_blocks(content)
            out[-1] = {"role": role, "content": joined}
        else:
            out.append({"role": role, "content": content})
    while out and out[0]["role"] != "user":
        out.pop(0)
    return out


def _as_blocks(content: Content) -> list[Block]:
    return [TextBlock(content)] if isinstance(content, str) else list(content)
