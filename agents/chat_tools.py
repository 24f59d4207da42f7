"""The chat agent's answers with tools (``ChatAgent`` takes these methods from ``ToolAnswers``):
a plain answer through the agent loop, carrying on an answer paused for the person's OK, ending
the waits nobody answered, and the three-pass or panel draft that may use tools.

Kept apart from ``agents.chat`` so that each module stays one concern; ``Answer`` is imported
when needed, as ``agents.chat`` imports this module.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from loguru import logger

from agents.errors import BadModelOutput, LLMError
from agents.llm import LLM
from agents.loop import Hooks, LoopResult, ToolLoop
from agents.providers.base import Completion, LLMRequest
from agents.resilience import deadline
from agents.review import Drafter
from agents.settings import LLMSettings
from agents.tools.runs import Waiting
from agents.usage import CallContext

if TYPE_CHECKING:
    from agents.chat import Answer, ChatRoute, OnDelta


class ToolAnswers:
    """Mixed into ``ChatAgent``, which provides these attributes and ``_store_answer``."""

    tools: ToolLoop | None
    llm: LLM
    settings: LLMSettings
    route: ChatRoute | None

    async def _store_answer(
        self, chat_id: int, user_id: int | None, answer: Answer, reply_to: int | None = None
    ) -> None:
        raise NotImplementedError

    def _uses_tools(self, llm: LLM) -> bool:
        return (
            self.tools is not None
            and self.tools.settings.enabled
            and llm.capabilities.tools
            and bool(self.tools.registry.offered())
        )

    async def _with_tools(
        self,
        prefix: str,
        rest: str,
        messages: list[dict[str, Any]],
        ctx: CallContext,
        llm: LLM,
        hooks: Hooks,
        source_key: str | None = None,
        can_pause: bool = True,
    ) -> Answer:
        assert self.tools is not None
        result = await self.tools.start(
            llm,
            ctx,
            system_prefix=prefix,
            system=rest,
            messages=messages,
            cache_turns=len(messages) - 1,
            max_tokens=self.settings.max_output_tokens,
            hooks=hooks,
            can_pause=can_pause,
            source_key=source_key,
        )
        return self._loop_answer(result)

    @staticmethod
    def _loop_answer(result: LoopResult) -> Answer:
        from agents.chat import Answer

        text = result.text
        if result.waiting_for is None and result.stopped is None:
            last = result.last
            if not text:
                refused = last is not None and last.refused
                reason = "declined to answer" if refused else "returned an empty answer"
                raise BadModelOutput(f"the model {reason}")
            if last is not None and last.truncated:
                text += "\n\n… (cut off at the length limit)"
        return Answer(
            text,
            "single",
            result.usage,
            result.calls,
            tool_run_id=result.run_id,
            tool_calls=result.tool_calls,
            stopped=result.stopped,
            waiting_for=result.waiting_for,
        )

    async def resume(
        self,
        run_id: int,
        approved: bool,
        user_id: int,
        *,
        on_delta: OnDelta | None = None,
        on_activity: OnDelta | None = None,
    ) -> Answer:
        """Carry on an answer that waited for the user's ✅ (``approved``) or ❌. An answer that
        cannot be carried on (expired, already answered, someone else's) comes back with
        ``error="refused"`` and that reason as its text; nothing runs."""
        from agents.chat import Answer, user_message

        assert self.tools is not None
        claim = await self.tools.db.run(self.tools.store.claim, run_id, user_id, time.time())
        if claim.state is None:
            return Answer(claim.refusal, error="refused")
        state = self.tools.claimed_state(claim.state)
        try:
            with deadline(self.settings.answer_deadline_s):
                persona = await self.route(state.chat_id) if self.route is not None else None
                result = await self.tools.resume(
                    persona or self.llm, state, approved, Hooks(on_delta, on_activity)
                )
                answer = self._loop_answer(result)
        except LLMError as exc:
            message, kind = user_message(exc)
            logger.warning("resumed answer in chat {} failed ({}): {}", state.chat_id, kind, exc)
            return Answer(message, error=kind, tool_run_id=run_id)
        if answer.waiting_for is None:
            await self._store_answer(state.chat_id, state.user_id, answer)
        return answer

    async def expire_waiting(self) -> list[Waiting]:
        """Answers whose confirmation timed out, now marked expired (to tell their users)."""
        if self.tools is None:
            return []
        return await self.tools.db.run(self.tools.store.expire_due, time.time())

    def _tool_drafter(self, runs: list[LoopResult]) -> Drafter:
        """The first draft of a three-pass or panel answer through the agent loop: it may use
        tools (calls that need the user's OK are refused there; nothing can pause a draft)."""
        assert self.tools is not None
        tools = self.tools

        async def draft(request: LLMRequest, ctx: CallContext, llm: LLM) -> Completion:
            result = await tools.start(
                llm,
                ctx,
                system_prefix=request.system_prefix,
                system=request.system,
                messages=request.messages,
                cache_turns=request.cache_turns,
                max_tokens=request.max_tokens,
                can_pause=False,
                temperature=request.temperature,
                effort=request.effort,
            )
            runs.append(result)
            stop = result.last.stop_reason if result.last is not None else "end_turn"
            return Completion(result.text, result.usage, llm.model, stop)

        return draft
