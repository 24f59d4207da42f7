"""Anthropic's Messages API through the official ``anthropic`` SDK (2.x).

The SDK does the retries (429, 529 and 5xx, honouring ``retry-after``) and the timeouts; this
module maps requests onto it and its errors onto ours. SDK 2.x takes no temperature: it offers
``output_config.effort`` and ``output_config.format`` (JSON schema), and a top-level
``cache_control`` that caches the prompt up to its last block. Breakpoints (at most three of the
four allowed):

- the stable system prefix, so the persona and pinned facts stay cached across turns;
- the last of the conversation's earlier turns (``cache_turns``), so the next message, which
  repeats them, reads them from the cache;
- the top-level mark, only on requests with ``cache_tail`` (calls a follow-up call extends, as in
  three-pass): elsewhere it would be a write at 1.25x that nothing reads.

The cache is keyed on ``output_config.format`` as well, which ``Capabilities.schema_in_cache_key``
tells callers.

Tools: definitions go out as ``tools`` in the caller's (stable) order. Anthropic's cache prefix is
tools, then system, then messages, so the system prefix's breakpoint caches the tools with it; a
request with tools and no system prefix marks the last tool instead. Content blocks map onto the
API's: text, base64 image, ``tool_use``, ``tool_result``; a completion's ``tool_use`` blocks become
``Completion.tool_calls`` (streamed or not: the SDK assembles a streamed call's JSON).

Tool search (``tool_search``, on by default; Claude Sonnet 4, Opus 4 and later): definitions
the caller marks ``deferred`` go out with ``defer_loading: true`` and the API's BM25 tool search
tool after them (last, so the tools keep their sorted order). The service leaves deferred
definitions out of the prompt, so they are not in the cached prefix at all: the prefix is the
always-loaded definitions and the search tool, the same on every request. When the model needs
a deferred tool it searches within its answer; the result (``tool_search_tool_result``, holding
``tool_reference`` blocks) expands the definitions it found inline in the conversation, after
the cached prefix, so the cache stays valid. Those ``server_tool_use`` and
``tool_search_tool_result`` blocks come back as ``ProviderBlock``s in ``Completion.content`` and
are sent back unchanged with the assistant turn when the answer goes on after a tool call, which
keeps the tools found callable for the rest of the answer. A turn the service paused
(``stop_reason`` "pause_turn") is sent back the same way to let it go on. A model without tool
search (Claude Haiku 4.5 and the Claude 3 family refuse ``tool_reference`` blocks with a 400) is
found out by its first refusal: the request goes again at once with every definition in full,
and so does every later one (logged once; ``tools.tool_search = false`` spares the try), the
search's blocks left out of turns sent to it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import anthropic
from loguru import logger

from agents.errors import LLMError, ProviderAuthError, ProviderRejected, ProviderUnavailable
from agents.providers.base import (
    Block,
    Capabilities,
    Completion,
    ImageBlock,
    LLMRequest,
    Provider,
    ProviderBlock,
    TextBlock,
    ToolSearch,
    ToolUseBlock,
    Usage,
    normalise_turns,
)

EPHEMERAL = {"type": "ephemeral"}
DEFAULT_EFFORT = "high"
SPEND_LIMIT_HINTS = ("credit balance", "spend limit", "billing", "usage limit")
# BM25 takes the model's words as they come ("list my reminders"); the regex variant would have
# it write patterns. The one tool search variant we send: the cached prefix never changes.
TOOL_SEARCH = {"type": "tool_search_tool_bm25_20251119", "name": "tool_search_tool_bm25"}
# The API's own blocks of a tool search run within the answer, kept and sent back unchanged.
SERVER_BLOCKS = ("server_tool_use", "tool_search_tool_result")
# What a 400 says when the model takes no tool search ("... does not support tool_reference
# blocks. This feature is only available on Claude Sonnet 4+, Opus 4+, and newer models.").
NO_TOOL_SEARCH_HINTS = ("tool_reference", "tool search", "tool_search", "defer_loading")


class AnthropicProvider(Provider):
    name = "anthropic"

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 2,
        prompt_cache: bool = True,
        send_effort: bool = True,
        tool_search: bool = True,
    ) -> None:
        self.model = model
        self.prompt_cache = prompt_cache
        self.send_effort = send_effort
        self.capabilities = Capabilities(
            temperature=False,
            effort=send_effort,
            json_schema=True,
            prompt_cache=prompt_cache,
            schema_in_cache_key=prompt_cache,
            tools=True,
            vision=True,
            tool_search=tool_search,
        )
        # base_url None lets the SDK read ANTHROPIC_BASE_URL itself.
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=max_retries
        )

    def build_params(self, request: LLMRequest) -> dict[str, Any]:
        """The keyword arguments of ``messages.create``/``messages.stream`` for a request."""
        sent = request.messages
        if not self.capabilities.tool_search:
            sent = _without_search_blocks(sent)
        messages = [_message(m) for m in normalise_turns(sent)]
        if self.prompt_cache and request.cache_turns > 0:
            turns = [_message(m) for m in normalise_turns(sent[: request.cache_turns])]
            _mark_turns(messages, turns)
        params: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_tokens,
            "messages": messages,
        }
        system: list[dict[str, Any]] = []
        if request.system_prefix:
            block: dict[str, Any] = {"type": "text", "text": request.system_prefix}
            if self.prompt_cache:
                block["cache_control"] = EPHEMERAL
            system.append(block)
        if request.system:
            system.append({"type": "text", "text": request.system})
        if system:
            params["system"] = system
        if request.tools:
            params["tools"] = self._tools(request)
        if self.prompt_cache and request.cache_tail:
            params["cache_control"] = EPHEMERAL
        output_config: dict[str, Any] = {}
        # "high" is the API's default: left out, a request with it and one without any effort
        # (a plain chat answer) are alike, so they share one cache.
        if request.effort and self.send_effort and request.effort != DEFAULT_EFFORT:
            output_config["effort"] = request.effort
        if request.json_schema is not None:
            output_config["format"] = {"type": "json_schema", "schema": request.json_schema}
        if output_config:
            params["output_config"] = output_config
        return params

    def _tools(self, request: LLMRequest) -> list[dict[str, Any]]:
        search = self.capabilities.tool_search and any(t.deferred for t in request.tools)
        tools: list[dict[str, Any]] = []
        for t in request.tools:
            tool: dict[str, Any] = {
                "name": t.name,
                "description": t.description,
                "input_schema": t.input_schema,
            }
            if search and t.deferred:
                tool["defer_loading"] = True
            tools.append(tool)
        if search:
            tools.append(dict(TOOL_SEARCH))
        if self.prompt_cache and not request.system_prefix:
            # The last definition in the prompt: a deferred one is not part of the prefix.
            last = next(t for t in reversed(tools) if not t.get("defer_loading"))
            last["cache_control"] = EPHEMERAL
        return tools

    async def complete(self, request: LLMRequest) -> Completion:
        params = self.build_params(request)
        started = time.monotonic()
        try:
            message = await self._client.messages.create(**params)
        except Exception as exc:  # SDK errors, and a malformed body the SDK could not parse
            if not self._refuses_tool_search(exc, request):
                raise map_error(exc) from exc
            return await self.complete(request)  # again, every definition in full
        return _completion(message, time.monotonic() - started)

    async def stream(self, request: LLMRequest) -> AsyncIterator[str | Completion]:
        params = self.build_params(request)
        started = time.monotonic()
        try:
            async with self._client.messages.stream(**params) as stream:
                async for text in stream.text_stream:
                    yield text
                message = await stream.get_final_message()
        except Exception as exc:  # SDK errors, and a malformed body the SDK could not parse
            # A refusal comes as the HTTP answer, before any text: nothing was shown yet.
            if not self._refuses_tool_search(exc, request):
                raise map_error(exc) from exc
            message = None
        if message is None:
            async for item in self.stream(request):  # again, every definition in full
                yield item
            return
        if message.stop_reason is None:
            # The stream ended part-way (no message_delta, no message_stop; the SDK does not
            # object): what came is not the answer, and must not be shown as if it were.
            raise ProviderUnavailable(
                "the model server's stream ended before the answer was finished"
            )
        yield _completion(message, time.monotonic() - started)

    def _refuses_tool_search(self, exc: Exception, request: LLMRequest) -> bool:
        """Whether ``exc`` is the model refusing tool search; if so it is not offered again."""
        if not (
            isinstance(exc, anthropic.BadRequestError)
            and self.capabilities.tool_search
            and any(t.deferred for t in request.tools)
        ):
            return False
        said = exc.api_message or str(exc)
        lowered = said.lower()
        if "not support" not in lowered or not any(h in lowered for h in NO_TOOL_SEARCH_HINTS):
            return False
        logger.warning(
            "{} takes no tool search ({}): every tool definition goes with every prompt from "
            "now on (tools.tool_search = false spares this try)",
            self.model,
            said,
        )
        self.capabilities = replace(self.capabilities, tool_search=False)
        return True

    async def aclose(self) -> None:
        await self._client.close()


def _block(block: Block) -> dict[str, Any]:
    if isinstance(block, TextBlock):
        return {"type": "text", "text": block.text}
    if isinstance(block, ImageBlock):
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": block.media_type, "data": block.b64()},
        }
    if isinstance(block, ToolUseBlock):
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    if isinstance(block, ProviderBlock):
        return dict(block.data)
    out: dict[str, Any] = {
        "type": "tool_result",
        "tool_use_id": block.tool_use_id,
        "content": block.content,
    }
    if block.is_error:
        out["is_error"] = True
    return out


def _message(m: dict[str, Any]) -> dict[str, Any]:
    content = m["content"]
    if isinstance(content, str):
        return {"role": m["role"], "content": content}
    return {"role": m["role"], "content": [_block(b) for b in content]}


def _without_search_blocks(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The turns less the blocks of tool searches, for a model that takes none."""
    return [
        m
        if isinstance(m["content"], str)
        else {**m, "content": [b for b in m["content"] if not isinstance(b, ProviderBlock)]}
        for m in messages
    ]


def _mark_turns(messages: list[dict[str, Any]], turns: list[dict[str, Any]]) -> None:
    """Put a cache breakpoint on the last of the earlier turns, where it is still a message of its
    own once turns are normalised (an unanswered user turn merges with the incoming message;
    then the breakpoint goes one back)."""
    last = len(turns) - 1
    if last >= 0 and messages[last] != turns[last]:
        last -= 1
    if last < 0 or messages[: last + 1] != turns[: last + 1]:
        return
    turn = messages[last]
    blocks: list[dict[str, Any]]
    if isinstance(turn["content"], str):
        blocks = [{"type": "text", "text": turn["content"]}]
    else:
        blocks = [dict(b) for b in turn["content"]]
    blocks[-1]["cache_control"] = EPHEMERAL
    messages[last] = {"role": turn["role"], "content": blocks}


def _completion(message: Any, latency_s: float) -> Completion:
    # Text on either side of a search the service ran is two paragraphs, not one run-on line.
    parts: list[str] = []
    apart = False
    for b in message.content:
        if b.type == "text":
            parts.append(("\n\n" if apart and parts else "") + b.text)
            apart = False
        elif b.type in SERVER_BLOCKS:
            apart = True
    text = "".join(parts)
    u = message.usage
    usage = Usage(
        input_tokens=u.input_tokens or 0,
        output_tokens=u.output_tokens or 0,
        cache_read_tokens=u.cache_read_input_tokens or 0,
        cache_write_tokens=u.cache_creation_input_tokens or 0,
    )
    calls = [
        ToolUseBlock(b.id, b.name, b.input)
        if isinstance(b.input, dict)
        else ToolUseBlock(b.id, b.name, {}, repr(b.input)[:500])
        for b in message.content
        if b.type == "tool_use"
    ]
    content: list[Block] | None = None
    if any(b.type in SERVER_BLOCKS for b in message.content):
        found = iter(calls)
        content = []
        for b in message.content:
            if b.type == "text":
                content.append(TextBlock(b.text))
            elif b.type == "tool_use":
                content.append(next(found))
            elif b.type in SERVER_BLOCKS:
                # As the API sent it (fields it left out stay out), to go back unchanged.
                content.append(ProviderBlock("anthropic", b.to_dict(mode="json")))
    return Completion(
        text,
        usage,
        message.model,
        message.stop_reason,
        latency_s,
        calls,
        content,
        _searches(content),
    )


def _searches(content: list[Block] | None) -> list[ToolSearch]:
    """The tool searches of a turn: each ``server_tool_use``'s query with what its result found."""
    blocks = [b.data for b in content or [] if isinstance(b, ProviderBlock)]
    queries = {b.get("id"): b.get("input") or {} for b in blocks if b["type"] == "server_tool_use"}
    out = []
    for b in blocks:
        if b["type"] != "tool_search_tool_result":
            continue
        asked = queries.get(b.get("tool_use_id"), {})
        query = str(asked.get("query", asked.get("pattern", "")))
        result = b.get("content") or {}
        refs = [str(r.get("tool_name")) for r in result.get("tool_references") or []]
        error = result.get("error_code") if result.get("type", "").endswith("_error") else None
        out.append(ToolSearch(query, refs, error))
    return out


def map_error(exc: Exception) -> LLMError:
    """SDK errors onto ours: what a user is told, and whether an admin must act."""
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        detail = exc.api_message or str(exc)
        if status in (401, 403):
            return ProviderAuthError(
                f"Anthropic refused the credentials (HTTP {status}): {detail}",
                "check ANTHROPIC_API_KEY (or the credential 'anthropic_api_key')",
            )
        if status == 402 or (status == 400 and any(h in detail.lower() for h in SPEND_LIMIT_HINTS)):
            return ProviderAuthError(
                f"Anthropic spend limit reached (HTTP {status}): {detail}",
                "raise the spend limit or add credit in the Anthropic console",
            )
        if status == 429 or exc.type == "rate_limit_error":
            return ProviderUnavailable(f"Anthropic is rate limiting us (HTTP 429): {detail}")
        # An error event inside a 200 stream carries its type but not a failing status.
        if status >= 500 or exc.type in ("overloaded_error", "api_error"):
            return ProviderUnavailable(
                f"Anthropic is overloaded or failing (HTTP {status}): {detail}"
            )
        return ProviderRejected(f"Anthropic rejected the request (HTTP {status}): {detail}")
    if isinstance(exc, anthropic.APITimeoutError):
        return ProviderUnavailable("Anthropic did not answer in time")
    if isinstance(exc, anthropic.APIConnectionError):
        return ProviderUnavailable(f"cannot reach Anthropic: {exc}")
    # APIResponseValidationError and anything else: a body we could not read.
    return ProviderUnavailable(f"Anthropic returned a malformed response: {type(exc).__name__}")
