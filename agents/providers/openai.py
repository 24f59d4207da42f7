"""OpenAI-compatible chat-completions servers (vLLM, Ollama, llama.cpp) through the ``openai`` SDK.

This is how local models run, and later how trained adapters are served (vLLM ``--enable-lora``
takes the adapter name as the model). Temperature is honoured; effort is not. Structured output
goes out as ``response_format={"type": "json_schema"}``, which vLLM and recent llama.cpp accept;
servers that do not can be told so with ``json_schema=False`` (the caller then asks in the prompt).
Prompt caching is the server's business (vLLM prefix caching); cached tokens it reports are counted.
"""

from __future__ import annotations

import copy
import time
from collections.abc import AsyncIterator
from typing import Any

import openai

from agents.errors import LLMError, ProviderAuthError, ProviderRejected, ProviderUnavailable
from agents.providers.base import (
    Capabilities,
    Completion,
    LLMRequest,
    Provider,
    Usage,
    normalise_turns,
)


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
    ) -> None:
        self.model = model
        self.capabilities = Capabilities(temperature=True, effort=False, json_schema=json_schema)
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
        messages: list[dict[str, str]] = []
        if request.full_system():
            messages.append({"role": "system", "content": request.full_system()})
        messages += normalise_turns(request.messages)
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
        return params

    async def complete(self, request: LLMRequest) -> Completion:
        started = time.monotonic()
        try:
            response = await self._client.chat.completions.create(**self.build_params(request))
            choice = response.choices[0]
            text = choice.message.content or ""
            usage = _usage(response.usage)
        except Exception as exc:  # SDK errors, and bodies without the fields we need
            raise map_error(exc) from exc
        return Completion(
            text,
            usage,
            response.model or self.model,
            choice.finish_reason,
            time.monotonic() - started,
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
        try:
            stream = await self._client.chat.completions.create(**params)
            async for chunk in stream:
                model = chunk.model or model
                if chunk.usage is not None:
                    usage = _usage(chunk.usage)
                for choice in chunk.choices:
                    if choice.finish_reason:
                        finish = choice.finish_reason
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
        yield Completion("".join(parts), usage, model, finish, time.monotonic() - started)

    async def aclose(self) -> None:
        await self._client.close()


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
