"""A hand-written test double of ``Provider``: scripted replies, every request recorded.

For tests of code that sits above the provider (chat agent, review engine, Telegram handlers)
where running the stub HTTP server would add nothing. It is a real implementation of the
interface: replies are consumed in order; an ``Exception`` in the script is raised instead; when
the script is empty it echoes the last user message, or, when a JSON schema is asked for, returns
a minimal document that satisfies the schema. A scripted ``Completion`` with ``tool_calls`` plays a
model asking for tools. Token counts are estimated as characters / 4.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import Any

from agents.providers.base import (
    Capabilities,
    Completion,
    LLMRequest,
    Provider,
    Usage,
    content_text,
)


def estimate_tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4) if text else 0


def example_for_schema(schema: dict[str, Any]) -> Any:
    """A small value valid against a (simple) JSON schema: objects, arrays, enums, scalars."""
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {k: example_for_schema(v) for k, v in props.items()}
    if kind == "array":
        return []
    if kind == "integer":
        return int(schema.get("maximum", schema.get("minimum", 0)))
    if kind == "number":
        return float(schema.get("maximum", schema.get("minimum", 0)))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return "ok"


class FakeProvider(Provider):
    name = "fake"

    def __init__(
        self,
        replies: Iterable[str | Completion | Exception] = (),
        *,
        model: str = "fake-model",
        capabilities: Capabilities | None = None,
        delay_s: float = 0.0,
    ) -> None:
        self.model = model
        self.capabilities = capabilities or Capabilities(
            temperature=True, effort=True, json_schema=True, prompt_cache=False, tools=True
        )
        self.replies: deque[str | Completion | Exception] = deque(replies)
        self.requests: list[LLMRequest] = []
        self.delay_s = delay_s

    def script(self, *replies: str | Completion | Exception) -> None:
        self.replies.extend(replies)

    async def complete(self, request: LLMRequest) -> Completion:
        self.requests.append(request)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        reply = self.replies.popleft() if self.replies else self._default(request)
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, Completion):
            return reply
        prompt = request.full_system() + "".join(
            content_text(m["content"]) for m in request.messages
        )
        usage = Usage(input_tokens=estimate_tokens(prompt), output_tokens=estimate_tokens(reply))
        return Completion(reply, usage, self.model, "end_turn")

    async def stream(self, request: LLMRequest) -> AsyncIterator[str | Completion]:
        completion = await self.complete(request)
        words = completion.text.split(" ")
        for i, word in enumerate(words):
            yield word if i == 0 else " " + word
        yield completion

    @staticmethod
    def _default(request: LLMRequest) -> str:
        if request.json_schema is not None:
            return json.dumps(example_for_schema(request.json_schema))
        last = next(
            (content_text(m["content"]) for m in reversed(request.messages) if m["role"] == "user"),
            "",
        )
        return f"echo: {last}"
