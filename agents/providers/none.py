"""The provider used when no model is configured: Familiar still answers, from memory alone.

It generates nothing; the chat agent sees ``capabilities.generates`` is false and answers with
this notice followed by what memory recalls for the message.
"""

from __future__ import annotations

from agents.providers.base import Capabilities, Completion, LLMRequest, Provider

NOTICE = (
    "No language model is configured, so I can only show what I remember. "
    "Set FAMILIAR_LLM__PROVIDER (anthropic or openai) and its key to get real answers."
)


class NoneProvider(Provider):
    name = "none"
    model = "none"
    capabilities = Capabilities(streaming=False, generates=False)

    async def complete(self, request: LLMRequest) -> Completion:
        return Completion(NOTICE, model="none", stop_reason="end_turn")
