"""Keeping users answered when the provider is slow or down: breaker, concurrency cap, deadline.

Hand-written rather than taken from a library (pybreaker, aiobreaker) because we need exactly a
single half-open probe on asyncio, a health-check view of the state, and our own error types;
that is ~100 lines. Retries are not here: the SDKs already retry 429/529/5xx with ``retry-after``.
What counts as a failure for the breaker is ``ProviderUnavailable`` (overload, 5xx, timeouts,
malformed bodies); a rejected request or a spent budget says nothing about the provider's health.

The overall deadline of an answer spans several calls (three passes, review rounds), so it lives
in a context variable set once per answer with ``with deadline(seconds):``; every call made
inside it gets the time that is left.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum

from loguru import logger

from agents.errors import DeadlineExceeded, ProviderUnavailable
from agents.providers.base import Completion, LLMRequest, Provider
from memory.health import CheckResult, Status

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "llm_deadline", default=None
)


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Every provider call inside gets at most the time left until ``seconds`` from now."""
    at = time.monotonic() + seconds
    outer = _deadline.get()
    token = _deadline.set(at if outer is None else min(at, outer))
    try:
        yield
    finally:
        _deadline.reset(token)


def time_left(default: float) -> float:
    at = _deadline.get()
    if at is None:
        return default
    return min(default, at - time.monotonic())


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """Closed → open after ``failures`` consecutive failures → after ``reset_s`` one probe
    (half-open) → closed on its success, open again on its failure."""

    def __init__(
        self,
        name: str,
        failures: int = 5,
        reset_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.threshold = failures
        self.reset_s = reset_s
        self.clock = clock
        self.state = BreakerState.CLOSED
        self.consecutive_failures = 0
        self.opened_at: float | None = None
        self.last_error = ""
        self._probe_in_flight = False

    def before_call(self) -> None:
        """Raise ProviderUnavailable when calls are not allowed now; otherwise let one through."""
        if self.state is BreakerState.CLOSED:
            return
        if self.state is BreakerState.OPEN:
            assert self.opened_at is not None
            wait = self.opened_at + self.reset_s - self.clock()
            if wait > 0:
                raise ProviderUnavailable(
                    f"the model provider is unavailable ({self.last_error}); retrying in {wait:.0f} s"
                )
            self.state = BreakerState.HALF_OPEN
            logger.info("breaker {} half-open: sending one probe", self.name)
        if self._probe_in_flight:
            raise ProviderUnavailable(
                "the model provider is recovering; one test request is in flight"
            )
        self._probe_in_flight = True

    def record_success(self) -> None:
        if self.state is not BreakerState.CLOSED:
            logger.info("breaker {} closed: the provider answered", self.name)
        self.state = BreakerState.CLOSED
        self.consecutive_failures = 0
        self._probe_in_flight = False

    def record_failure(self, reason: str) -> None:
        self.last_error = reason
        self._probe_in_flight = False
        self.consecutive_failures += 1
        if self.state is BreakerState.HALF_OPEN or self.consecutive_failures >= self.threshold:
            if self.state is not BreakerState.OPEN:
                logger.warning(
                    "breaker {} open after {} failures: {}",
                    self.name,
                    self.consecutive_failures,
                    reason,
                )
            self.state = BreakerState.OPEN
            self.opened_at = self.clock()

    def record_neutral(self) -> None:
        """A call that ended without telling us anything (cancelled, rejected request)."""
        self._probe_in_flight = False
        if self.state is BreakerState.HALF_OPEN:
            self.state = BreakerState.OPEN  # keep waiting; the next caller probes again

    def check(self) -> CheckResult:
        name = f"llm:{self.name}"
        if self.state is BreakerState.CLOSED:
            return CheckResult(name, Status.HEALTHY, "breaker closed")
        if self.state is BreakerState.HALF_OPEN:
            return CheckResult(
                name, Status.DEGRADED, f"breaker half-open (last error: {self.last_error})"
            )
        return CheckResult(
            name,
            Status.FAILING,
            f"breaker open after {self.consecutive_failures} failures (last error: {self.last_error})",
        )


class ResilientProvider(Provider):
    """Wraps a provider with a breaker, a cap on requests in flight, and the answer deadline."""

    def __init__(
        self,
        inner: Provider,
        breaker: CircuitBreaker,
        *,
        max_concurrency: int = 4,
        call_timeout_s: float = 120.0,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.model = inner.model
        self.capabilities = inner.capabilities
        self.breaker = breaker
        self.call_timeout_s = call_timeout_s
        self._slots = asyncio.Semaphore(max_concurrency)

    def _remaining(self) -> float:
        left = time_left(self.call_timeout_s)
        if left <= 0:
            raise DeadlineExceeded("the answer ran out of time before the model was asked")
        return left

    async def complete(self, request: LLMRequest) -> Completion:
        started = time.monotonic()
        left = self._remaining()
        self.breaker.before_call()
        try:
            async with asyncio.timeout(left):
                async with self._slots:
                    result = await self.inner.complete(request)
        except TimeoutError:
            self.breaker.record_failure("timed out")
            raise DeadlineExceeded(
                f"the model did not answer within {time.monotonic() - started:.0f} s"
            ) from None
        except ProviderUnavailable as exc:
            self.breaker.record_failure(str(exc))
            raise
        except BaseException:
            self.breaker.record_neutral()
            raise
        self.breaker.record_success()
        return result

    async def stream(self, request: LLMRequest) -> AsyncIterator[str | Completion]:
        """The inner stream runs in its own task feeding a queue, so the deadline can cancel it
        cleanly (an SDK stream must be entered and left in one task)."""
        started = time.monotonic()
        at = started + self._remaining()
        self.breaker.before_call()
        queue: asyncio.Queue[str | Completion | BaseException | None] = asyncio.Queue()

        async def pump() -> None:
            try:
                async with self._slots:
                    async for item in self.inner.stream(request):
                        await queue.put(item)
                await queue.put(None)
            except BaseException as exc:  # handed to the consumer, which decides
                await queue.put(exc)

        task = asyncio.create_task(pump())
        outcome = "neutral"
        try:
            while True:
                try:
                    async with asyncio.timeout(at - time.monotonic()):
                        item = await queue.get()
                except TimeoutError:
                    outcome = "timeout"
                    raise DeadlineExceeded(
                        f"the model did not finish within {time.monotonic() - started:.0f} s"
                    ) from None
                if item is None:
                    outcome = "ok"
                    return
                if isinstance(item, BaseException):
                    if isinstance(item, ProviderUnavailable):
                        outcome = str(item)
                    raise item
                if isinstance(item, Completion):
                    outcome = "ok"  # the consumer may stop reading once it has the result
                yield item
        finally:
            task.cancel()
            if outcome == "ok":
                self.breaker.record_success()
            elif outcome == "neutral":
                self.breaker.record_neutral()
            else:
                self.breaker.record_failure(outcome)

    async def aclose(self) -> None:
        await self.inner.aclose()
