"""OpenAI-compatible chat-completions servers (vLLM, Ollama, llama.cpp) through the ``openai`` SDK.

This is how local models run, and later how trained adapters are served (vLLM ``--enable-lora``
takes the adapter name as the model). Temperature is honoured; effort is not. Structured output
goes out as ``response_format={"type": "json_schema"}``, which vLLM and recent llama.cpp accept;
servers that do not can be told so with ``json_schema=False`` (the caller then asks in the prompt).
Prompt caching is the server's business (vLLM prefix caching); cached tokens it reports are counted.

Tools go out as function definitions (``tools``) in the caller's order; calls come back as
``tool_calls`` (assembled from their fragments when streamed) with ``finish_reason`` "tool_calls",
reported as ``stop_reason`` "tool_use". Blocks map onto the chat format: an assistant turn's
tool calls onto ``tool_calls``, each tool result onto a ``tool`` message, an image onto an
``image_url`` part with a data URL. Whether a server honours tools depends on how it was started
(vLLM ``--enable-auto-tool-choice``); ``tools=False`` says it does not.

Every definition goes out, deferred ones too (``ToolDef.deferred``): chat completions have no
tool search run by the server, which is what lets Anthropic leave deferred definitions out of
the prompt and expand the ones found after the cached prefix. Searching on our side instead
would change the ``tools`` list within an answer, and the list leads the prompt, so every later
step would miss the server's prefix cache; a local server's prompt is cheap, its cache is not.
A ``ProviderBlock`` (another provider's search steps, in an answer resumed here) is left out.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import openai

from agents.errors import LLMError, ProviderAuthError, ProviderRejected, ProviderUnavailable
from agents.providers.base import (
    Capabilities,
    Completion,
    ImageBlock,
    LLMRequest,
    Provider,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
    Usage,
    normalise_turns,
)

FINISH = {"tool_calls": "tool_use", "function_call": "tool_use"}


class OpenAICompatibleProvider(Provider):
    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 2,
        json_schema: bool = True,
        tools: bool = True,
    ) -> None:
        self.model = model
        self.capabilities = Capabilities(
            temperature=True, effort=False, json_schema=json_schema, tools=tools, vision=True
        )
        # Local servers need no key, but the SDK insists on one.
        self._client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or "not-needed",
            timeout=timeout_s,
            max_retries=max_retries,
        )

    def with_model(self, model: str) -> OpenAICompatibleProvider:
        """The same server and connection pool asking for ``model``: with vLLM ``--enable-lora`` the
        name of a LoRA adapter it serves (``--lora-modules NAME=DIR``). Close only the original."""
        other = copy.copy(self)
        other.model = model
        return other

    def build_params(self, request: LLMRequest) -> dict[str, Any]:
        messages: list[dict[str, Any]] = []
        if request.full_system():
            messages.append({"role": "system", "content": request.full_system()})
        for m in normalise_turns(request.messages):
            messages += _messages(m)
        params: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": request.max_tokens,
        }
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.json_schema is not None and self.capabilities.json_schema:
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": request.json_schema},
            }
        if request.tools and self.capabilities.tools:
            params["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.input_schema,
                    },
                }
                for t in request.tools
            ]
        return params

    async def complete(self, request: LLMRequest) -> Completion:
        started = time.monotonic()
        try:
            response = await self._client.chat.completions.create(**self.build_params(request))
            choice = response.choices[0]
            text = choice.message.content or ""
            usage = _usage(response.usage)
            calls = [
                _call(c.id, c.function.name, c.function.arguments)
                for c in choice.message.tool_calls or []
                if c.type == "function"
            ]
        except Exception as exc:  # SDK errors, and bodies without the fields we need
            raise map_error(exc) from exc
        return Completion(
            text,
            usage,
            response.model or self.model,
            FINISH.get(choice.finish_reason, choice.finish_reason),
            time.monotonic() - started,
            calls,
        )

    async def stream(self, request: LLMRequest) -> AsyncIterator[str | Completion]:
        started = time.monotonic()
        params = self.build_params(request) | {
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        parts: list[str] = []
        usage = Usage()
        finish: str | None = None
        model = self.model
        # Fragments of tool calls by index: [id, name, arguments so far].
        fragments: dict[int, list[str]] = {}
        try:
            stream = await self._client.chat.completions.create(**params)
            async for chunk in stream:
                model = chunk.model or model
                if chunk.usage is not None:
                    usage = _usage(chunk.usage)
                for choice in chunk.choices:
                    if choice.finish_reason:
                        finish = choice.finish_reason
                    for tc in (choice.delta.tool_calls if choice.delta else None) or []:
                        frag = fragments.setdefault(tc.index, ["", "", ""])
                        frag[0] = tc.id or frag[0]
                        if tc.function is not None:
                            frag[1] += tc.function.name or ""
                            frag[2] += tc.function.arguments or ""
                    delta = choice.delta.content if choice.delta else None
                    if delta:
                        parts.append(delta)
                        yield delta
        except Exception as exc:
            raise map_error(exc) from exc
        if finish is None:
            # The connection ended part-way (no finish_reason, no [DONE]; the SDK does not
            # object): what came is not the answer, and must not be shown as if it were.
            raise ProviderUnavailable(
                "the model server's stream ended before the answer was finished"
            )
        calls = [_call(*fragments[i]) for i in sorted(fragments)]
        yield Completion(
            "".join(parts),
            usage,
            model,
            FINISH.get(finish or "", finish),
            time.monotonic() - started,
            calls,
        )

    async def aclose(self) -> None:
        await self._client.close()


def _call(call_id: str, name: str, arguments: str | None) -> ToolUseBlock:
    """A tool call from its JSON arguments; arguments that are not a JSON object are kept aside
    (``invalid_input``) so the caller answers the call with an error instead of running it."""
    try:
        args = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return ToolUseBlock(call_id, name, {}, (arguments or "")[:500])
    if not isinstance(args, dict):
        return ToolUseBlock(call_id, name, {}, (arguments or "")[:500])
    return ToolUseBlock(call_id, name, args)


def _messages(m: dict[str, Any]) -> list[dict[str, Any]]:
    """One turn in the chat-completions shape: a tool result is a message of its own."""
    content = m["content"]
    if isinstance(content, str):
        return [{"role": m["role"], "content": content}]
    if m["role"] == "assistant":
        text = "".join(b.text for b in content if isinstance(b, TextBlock))
        out: dict[str, Any] = {"role": "assistant", "content": text or None}
        calls = [b for b in content if isinstance(b, ToolUseBlock)]
        if calls:
            out["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": json.dumps(c.input)},
                }
                for c in calls
            ]
        return [out]
    results = [
        {"role": "tool", "tool_call_id": b.tool_use_id, "content": b.content}
        for b in content
        if isinstance(b, ToolResultBlock)
    ]
    parts: list[dict[str, Any]] = []
    for b in content:
        if isinstance(b, TextBlock):
            parts.append({"type": "text", "text": b.text})
        elif isinstance(b, ImageBlock):
            url = f"data:{b.media_type};base64,{b.b64()}"
            parts.append({"type": "image_url", "image_url": {"url": url}})
    if parts and all(p["type"] == "text" for p in parts):
        return [*results, {"role": "user", "content": "\n\n".join(p["text"] for p in parts)}]
    return [*results, *([{"role": "user", "content": parts}] if parts else [])]


def _usage(u: Any) -> Usage:
    if u is None:
        return Usage()
    details = getattr(u, "prompt_tokens_details", None)
    cached = (getattr(details, "cached_tokens", None) or 0) if details else 0
    return Usage(
        input_tokens=(u.prompt_tokens or 0) - cached,
        output_tokens=u.completion_tokens or 0,
        cache_read_tokens=cached,
    )


def map_error(exc: Exception) -> LLMError:
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status in (401, 403):
            return ProviderAuthError(
                f"the model server refused the credentials (HTTP {status})",
                "check FAMILIAR_LLM__OPENAI_API_KEY",
            )
        if status == 402:
            return ProviderAuthError(
                "the model server says the spend limit is reached (HTTP 402)",
                "raise the limit with the provider",
            )
        if status == 429 or status >= 500:
            return ProviderUnavailable(f"the model server is overloaded or failing (HTTP {status})")
        return ProviderRejected(f"the model server rejected the request (HTTP {status}): {exc}")
    if isinstance(exc, openai.APITimeoutError):
        return ProviderUnavailable("the model server did not answer in time")
    if isinstance(exc, openai.APIConnectionError):
        return ProviderUnavailable(f"cannot reach the model server: {exc}")
    return ProviderUnavailable(
        f"the model server returned a malformed response: {type(exc).__name__}"
    )
