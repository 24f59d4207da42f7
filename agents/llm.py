"""The one door every model call goes through: budget check, the provider, the usage record.

Services above (chat agent, review engine, fact extractor) are handed an ``LLM`` and never a bare
provider, so nothing can skip the budget or go unrecorded. A provider error is recorded as a
failed row, logged with its reason, and re-raised; auth and spend-limit errors also go to the
``on_admin_alert`` callback the composition root supplies (the bot sends it to admins).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Awaitable, Callable

from loguru import logger

from agents.errors import LLMError, ProviderAuthError
from agents.providers.base import (
    Capabilities,
    Completion,
    LLMRequest,
    Provider,
    Usage,
    content_text,
)
from agents.usage import CallContext, UsageRecord, UsageStore
from memory.text import estimate_tokens

AdminAlert = Callable[[str], Awaitable[None]]


def estimated_usage(request: LLMRequest, written: str) -> Usage:
    """The tokens of a call cut off before the provider reported them: its prompt's text and
    the answer ``written`` so far (``memory.text.estimate_tokens``; images and tool definitions
    not counted)."""
    parts = [request.system_prefix or "", request.system or ""]
    parts += [content_text(m.get("content") or "") for m in request.messages]
    return Usage(
        input_tokens=sum(estimate_tokens(p) for p in parts), output_tokens=estimate_tokens(written)
    )


class LLM:
    def __init__(
        self,
        provider: Provider,
        usage: UsageStore | None = None,
        on_admin_alert: AdminAlert | None = None,
    ) -> None:
        self.provider = provider
        self.usage = usage
        self.on_admin_alert = on_admin_alert

    @property
    def capabilities(self) -> Capabilities:
        return self.provider.capabilities

    @property
    def model(self) -> str:
        return self.provider.model

    async def complete(self, request: LLMRequest, ctx: CallContext) -> Completion:
        if self.usage is not None:
            await self.usage.acheck_budget(ctx)
        started = time.monotonic()
        try:
            result = await self.provider.complete(request)
        except LLMError as exc:
            await self._failed(ctx, exc, time.monotonic() - started)
            raise
        except asyncio.CancelledError:
            await self._cut_off(ctx, request, "", started)
            raise
        await self._record(ctx, result.usage, result.model, time.monotonic() - started)
        return result

    async def stream(
        self, request: LLMRequest, ctx: CallContext
    ) -> AsyncGenerator[str | Completion, None]:
        """Text deltas, then the ``Completion`` last, as ``Provider.stream``."""
        if self.usage is not None:
            await self.usage.acheck_budget(ctx)
        started = time.monotonic()
        written = ""  # the text so far
        ended = False
        try:
            async for item in self.provider.stream(request):
                if isinstance(item, Completion):
                    ended = True
                    await self._record(ctx, item.usage, item.model, time.monotonic() - started)
                else:
                    written += item
                yield item
        except LLMError as exc:
            ended = True
            await self._failed(ctx, exc, time.monotonic() - started)
            raise
        finally:
            if not ended:  # cancelled, or closed by a consumer that stopped reading
                await self._cut_off(ctx, request, written, started)

    async def answer(
        self,
        request: LLMRequest,
        ctx: CallContext,
        on_delta: Callable[[str], Awaitable[None]] | None = None,
    ) -> Completion:
        """``complete``, or, with ``on_delta``, the stream read to its end, the text so far
        handed to ``on_delta`` as it grows; the stream is closed at once if the reader stops."""
        if on_delta is None:
            return await self.complete(request, ctx)
        result: Completion | None = None
        so_far = ""
        async with contextlib.aclosing(self.stream(request, ctx)) as stream:
            async for item in stream:
                if isinstance(item, Completion):
                    result = item
                else:
                    so_far += item
                    await on_delta(so_far)
        if result is None:
            raise LLMError("the model's stream ended without a result")
        return result

    async def _cut_off(
        self, ctx: CallContext, request: LLMRequest, written: str, started: float
    ) -> None:
        """A call stopped before the end (⏹ Stop, the daemon stopping): the provider still bills
        what it read and wrote, and the daily budget must count it; no usage comes back, so it is
        estimated. Consumers close the stream at once (``contextlib.aclosing``)."""
        usage = estimated_usage(request, written)
        await asyncio.shield(self._record(ctx, usage, self.model, time.monotonic() - started))

    async def _record(self, ctx: CallContext, usage: Usage, model: str, latency_s: float) -> None:
        if self.usage is not None:
            await self.usage.arecord(
                UsageRecord(ctx, self.provider.name, model or self.model, usage, latency_s)
            )

    async def _failed(self, ctx: CallContext, exc: LLMError, latency_s: float) -> None:
        logger.warning("model call for {} failed ({}): {}", ctx.purpose, type(exc).__name__, exc)
        if self.usage is not None:
            await self.usage.arecord(
                UsageRecord(
                    ctx,
                    self.provider.name,
                    self.model,
                    Usage(),
                    latency_s,
                    ok=False,
                    error=f"{type(exc).__name__}: {exc}",
                )
            )
        if isinstance(exc, ProviderAuthError) and self.on_admin_alert is not None:
            try:
                await self.on_admin_alert(exc.explain())
            except Exception as alert_exc:  # the alert must not hide the user's error
                logger.warning("admin alert failed: {}", alert_exc)

    async def aclose(self) -> None:
        await self.provider.aclose()
