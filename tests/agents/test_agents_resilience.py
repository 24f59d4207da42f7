"""Breaker, concurrency cap and deadline, against the stub server through the real SDK."""

from __future__ import annotations

import asyncio
import time

import pytest

from agents.errors import DeadlineExceeded, ProviderRejected, ProviderUnavailable
from agents.providers import build_provider, health_checks
from agents.providers.base import Completion, LLMRequest
from agents.providers.fake import FakeProvider
from agents.resilience import BreakerState, CircuitBreaker, ResilientProvider, deadline
from agents.settings import LLMSettings
from memory.health import Status
from tests.stubs.anthropic_stub import Reply

REQ = LLMRequest([{"role": "user", "content": "hello"}], max_tokens=50)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def guarded(anthropic_on_stub, clock, failures=3, reset_s=30.0, **kw):
    breaker = CircuitBreaker("anthropic", failures=failures, reset_s=reset_s, clock=clock)
    return ResilientProvider(anthropic_on_stub(max_retries=0), breaker, **kw), breaker


def test_breaker_opens_after_repeated_failure_and_recovers_through_one_probe(
    stub, anthropic_on_stub
):
    clock = Clock()
    provider, breaker = guarded(anthropic_on_stub, clock)

    async def scenario():
        stub.script(*[Reply.error(500)] * 3)
        for _ in range(3):
            with pytest.raises(ProviderUnavailable):
                await provider.complete(REQ)
        assert breaker.state is BreakerState.OPEN
        assert breaker.check().status is Status.FAILING
        sent = len(stub.requests)
        started = time.monotonic()
        with pytest.raises(ProviderUnavailable, match="unavailable"):
            await provider.complete(REQ)
        assert time.monotonic() - started < 0.1  # a clear answer at once, not a hang
        assert len(stub.requests) == sent  # the open breaker sent nothing

        clock.now += 31  # past reset_s: half-open, exactly one probe goes through
        stub.script(Reply("probe ok", delay_s=0.3))
        probe = asyncio.create_task(provider.complete(REQ))
        await asyncio.sleep(0.1)
        assert breaker.state is BreakerState.HALF_OPEN
        assert breaker.check().status is Status.DEGRADED
        with pytest.raises(ProviderUnavailable, match="recovering"):
            await provider.complete(REQ)
        assert (await probe).text == "probe ok"
        assert len(stub.requests) == sent + 1
        assert breaker.state is BreakerState.CLOSED
        assert (await provider.complete(REQ)).text.startswith("stub answer")

    asyncio.run(scenario())
    assert breaker.check().status is Status.HEALTHY


def test_a_failed_probe_reopens_the_breaker(stub, anthropic_on_stub):
    clock = Clock()
    provider, breaker = guarded(anthropic_on_stub, clock, failures=1)

    async def scenario():
        stub.script(Reply.error(529), Reply.error(529))
        with pytest.raises(ProviderUnavailable):
            await provider.complete(REQ)
        clock.now += 31
        with pytest.raises(ProviderUnavailable, match="529"):
            await provider.complete(REQ)  # the probe, which fails
        assert breaker.state is BreakerState.OPEN
        with pytest.raises(ProviderUnavailable, match="retrying in"):
            await provider.complete(REQ)

    asyncio.run(scenario())
    assert len(stub.requests) == 2


def test_rejected_requests_do_not_open_the_breaker(stub, anthropic_on_stub):
    provider, breaker = guarded(anthropic_on_stub, Clock(), failures=1)
    stub.script(Reply.error(400, message="bad"))
    with pytest.raises(ProviderRejected):
        asyncio.run(provider.complete(REQ))
    assert breaker.state is BreakerState.CLOSED


def test_deadline_ends_a_slow_answer_within_it(stub, anthropic_on_stub):
    provider, breaker = guarded(anthropic_on_stub, Clock())
    stub.script(Reply("too late", delay_s=3.0))

    async def ask():
        with deadline(0.3):
            return await provider.complete(REQ)

    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        asyncio.run(ask())
    assert time.monotonic() - started < 1.0
    assert breaker.consecutive_failures == 1


def test_deadline_applies_to_streams(stub, anthropic_on_stub):
    provider, _ = guarded(anthropic_on_stub, Clock())
    stub.script(Reply("a b c d e f g h i j k l", chunk_delay_s=0.3))

    async def ask():
        got = []
        with deadline(0.5):
            async for item in provider.stream(REQ):
                got.append(item)
        return got

    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        asyncio.run(ask())
    assert time.monotonic() - started < 1.2


def test_stream_success_closes_the_breaker(stub, anthropic_on_stub):
    provider, breaker = guarded(anthropic_on_stub, Clock())
    breaker.consecutive_failures = 2

    async def ask():
        return [i async for i in provider.stream(REQ)]

    items = asyncio.run(ask())
    assert isinstance(items[-1], Completion)
    assert breaker.consecutive_failures == 0


def test_concurrency_is_capped():
    class Counting(FakeProvider):
        in_flight = peak = 0

        async def complete(self, request):
            Counting.in_flight += 1
            Counting.peak = max(Counting.peak, Counting.in_flight)
            try:
                await asyncio.sleep(0.05)
                return await super().complete(request)
            finally:
                Counting.in_flight -= 1

    provider = ResilientProvider(Counting(), CircuitBreaker("fake"), max_concurrency=2)

    async def many():
        return await asyncio.gather(*(provider.complete(REQ) for _ in range(6)))

    assert len(asyncio.run(many())) == 6
    assert Counting.peak == 2


def test_build_provider_and_health_checks(stub):
    settings = LLMSettings(provider="anthropic", anthropic_api_key="k", anthropic_base_url=stub.url)
    provider = build_provider(settings)
    assert isinstance(provider, ResilientProvider) and provider.capabilities.json_schema
    assert asyncio.run(provider.complete(REQ)).text.startswith("stub answer")
    checks = health_checks(provider)
    assert checks["llm"]().status is Status.HEALTHY
    assert health_checks(build_provider(LLMSettings(provider="none"))) == {}
    assert not build_provider(LLMSettings(provider="none")).capabilities.generates


def test_anthropic_base_url_comes_from_the_sdk_environment(stub, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", stub.url)
    provider = build_provider(LLMSettings(provider="anthropic", anthropic_api_key="k"))
    asyncio.run(provider.complete(REQ))
    assert len(stub.requests) == 1
