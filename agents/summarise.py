"""Memory's ``Summariser`` answered by the model, with the extractive one as its fallback.

Used for compaction of long chats and for the hourly summaries. When no model is configured,
the breaker is open, or the budget is spent, the extractive summariser (no model) answers.
"""

from __future__ import annotations

from loguru import logger

from agents.errors import LLMError
from agents.llm import LLM
from agents.providers.base import LLMRequest
from agents.usage import CallContext
from memory.context import ExtractiveSummariser, Summariser, who_said
from memory.types import Message

PROMPT = (
    "Summarise this conversation for the assistant's long-term memory: who said what that "
    "matters later (facts, decisions, plans, open questions), in at most 8 short bullet points. "
    "Keep names, numbers and dates exact. If an earlier summary is included, fold it in.\n\n"
)
MAX_TRANSCRIPT_CHARS = 24_000


class LLMSummariser(Summariser):
    def __init__(self, llm: LLM, max_tokens: int = 400, fallback: Summariser | None = None) -> None:
        self.llm = llm
        self.max_tokens = max_tokens
        self.fallback = fallback or ExtractiveSummariser()

    async def summarise(self, turns: list[Message]) -> str:
        if not turns:
            return ""
        if not self.llm.capabilities.generates:
            return await self.fallback.summarise(turns)
        lines = [f"{who_said(t)}: {t.text}" for t in turns]
        transcript = "\n".join(lines)[-MAX_TRANSCRIPT_CHARS:]
        request = LLMRequest(
            messages=[{"role": "user", "content": PROMPT + transcript}],
            max_tokens=self.max_tokens,
            effort="low" if self.llm.capabilities.effort else None,
        )
        ctx = CallContext(user_id=None, chat_id=turns[-1].chat_id, purpose="summary")
        try:
            result = await self.llm.complete(request, ctx)
        except LLMError as exc:
            logger.info("model summary unavailable ({}); using the extractive summary", exc)
            return await self.fallback.summarise(turns)
        text = result.text.strip()
        return text or await self.fallback.summarise(turns)
