"""Usage rows and daily budgets, with the real SDK against the stub and a real SQLite file."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from agents.errors import BudgetExceeded, ProviderAuthError
from agents.llm import LLM
from agents.providers.base import LLMRequest, Usage
from agents.settings import LLMSettings
from agents.usage import CallContext, UsageRecord, UsageStore, estimate_cost
from tests.stubs.anthropic_stub import Reply

REQ = LLMRequest([{"role": "user", "content": "what is the time"}], max_tokens=50)
ALICE = CallContext(user_id=1, chat_id=10, purpose="chat")


def test_every_call_is_recorded_with_cost_and_latency(stub, db, anthropic_on_stub):
    store = UsageStore(db, LLMSettings())
    llm = LLM(anthropic_on_stub(), store)
    result = asyncio.run(llm.complete(REQ, ALICE))
    row = db.conn.execute(
        "SELECT user_id, chat_id, purpose, provider, model, input_tokens,"
        " output_tokens, cost_usd, latency_ms, ok FROM llm_usage"
    ).fetchone()
    assert row[:5] == (1, 10, "chat", "anthropic", "claude-sonnet-4-6")
    assert (row[5], row[6]) == (result.usage.input_tokens, result.usage.output_tokens)
    expected = (result.usage.input_tokens * 3.0 + result.usage.output_tokens * 15.0) / 1e6
    assert row[7] == pytest.approx(expected)
    assert row[8] >= 0 and row[9] == 1


def test_cost_uses_cache_prices_and_prefix_model_names():
    settings = LLMSettings()
    usage = Usage(
        input_tokens=1_000_000,
        output_tokens=0,
        cache_read_tokens=1_000_000,
        cache_write_tokens=1_000_000,
    )
    assert estimate_cost(settings, "claude-sonnet-4-5-20250929", usage) == pytest.approx(
        3 + 0.3 + 3.75
    )
    assert estimate_cost(settings, "unknown-model", usage) == 0.0


def test_budget_stops_a_call_before_it_is_made(stub, db, anthropic_on_stub):
    store = UsageStore(db, LLMSettings(daily_token_budget=1))
    llm = LLM(anthropic_on_stub(), store)
    asyncio.run(llm.complete(REQ, ALICE))  # under budget (0 spent): allowed, spends > 1
    assert len(stub.requests) == 1
    with pytest.raises(BudgetExceeded, match="today's 1 tokens"):
        asyncio.run(llm.complete(REQ, ALICE))
    assert len(stub.requests) == 1  # nothing was sent
    # Another user, and an admin (exempt by default), are not affected.
    asyncio.run(llm.complete(REQ, CallContext(user_id=2)))
    asyncio.run(llm.complete(REQ, CallContext(user_id=1, is_admin=True)))
    assert len(stub.requests) == 3


def test_admins_can_have_their_own_budget(db):
    store = UsageStore(db, LLMSettings(daily_token_budget=None, admin_daily_token_budget=0))
    store.check_budget(CallContext(user_id=5))  # no limit for users
    with pytest.raises(BudgetExceeded):
        store.check_budget(CallContext(user_id=5, is_admin=True))


def test_budget_resets_with_the_utc_day(stub, db, anthropic_on_stub):
    now = [datetime(2026, 3, 1, 23, 0, tzinfo=UTC)]
    store = UsageStore(db, LLMSettings(daily_token_budget=1), clock=lambda: now[0])
    llm = LLM(anthropic_on_stub(), store)
    asyncio.run(llm.complete(REQ, ALICE))
    with pytest.raises(BudgetExceeded, match="in 1 h 0 min"):
        store.check_budget(ALICE)
    now[0] = datetime(2026, 3, 2, 0, 1, tzinfo=UTC)
    store.check_budget(ALICE)


def test_failures_are_recorded_and_auth_errors_alert_admins(stub, db, anthropic_on_stub):
    alerts: list[str] = []

    async def alert(text: str) -> None:
        alerts.append(text)

    llm = LLM(anthropic_on_stub(), UsageStore(db, LLMSettings()), on_admin_alert=alert)
    stub.script(Reply.error(401, message="invalid x-api-key"))
    with pytest.raises(ProviderAuthError):
        asyncio.run(llm.complete(REQ, ALICE))
    assert len(alerts) == 1 and "ANTHROPIC_API_KEY" in alerts[0]
    ok, error = db.conn.execute("SELECT ok, error FROM llm_usage").fetchone()
    assert ok == 0 and error.startswith("ProviderAuthError")


def test_summary_per_purpose(stub, db, anthropic_on_stub):
    store = UsageStore(db, LLMSettings(daily_token_budget=100_000))
    llm = LLM(anthropic_on_stub(), store)
    asyncio.run(llm.complete(REQ, ALICE))
    asyncio.run(llm.complete(REQ, ALICE.for_("draft")))
    summary = store.summary(user_id=1)
    assert set(summary["per_purpose"]) == {"chat", "draft"}
    assert summary["totals"]["calls"] == 2
    assert summary["used_today"] == summary["totals"]["counted"] > 0
    assert summary["daily_budget"] == 100_000


def test_streamed_calls_are_recorded(stub, db, anthropic_on_stub):
    store = UsageStore(db, LLMSettings())
    llm = LLM(anthropic_on_stub(), store)

    async def go():
        return [i async for i in llm.stream(REQ, ALICE)]

    asyncio.run(go())
    assert db.conn.execute("SELECT count(*), sum(output_tokens) > 0 FROM llm_usage").fetchone() == (
        1,
        1,
    )


def test_cache_reads_count_a_tenth_against_the_budget(db):
    store = UsageStore(db, LLMSettings(daily_token_budget=2_000))
    cached = Usage(
        input_tokens=100, output_tokens=50, cache_read_tokens=10_000, cache_write_tokens=200
    )
    store.record(UsageRecord(ALICE, "anthropic", "claude-sonnet-4-6", cached, 0.5))
    assert store.tokens_today(1) == 100 + 50 + 200 + 1_000
    store.check_budget(ALICE)  # 1,350 of 2,000: still allowed
    store.record(UsageRecord(ALICE, "anthropic", "claude-sonnet-4-6", cached, 0.5))
    with pytest.raises(BudgetExceeded):
        store.check_budget(ALICE)
    totals = store.summary(user_id=1)["totals"]
    assert totals["counted"] == 2_700 and totals["tokens"] == 2 * 10_350


def test_a_call_cut_off_is_counted_by_an_estimate(db):
    """A stream stopped before its end (⏹ Stop) and a call cancelled while awaited: no usage
    comes back from the provider, which bills them all the same, so an estimate is recorded and
    the daily budget counts it."""
    from contextlib import aclosing

    from agents.providers.fake import FakeProvider

    store = UsageStore(db, LLMSettings())
    prompt = "x" * 4000  # about 1,000 tokens read
    request = LLMRequest([{"role": "user", "content": prompt}], max_tokens=50)

    async def scenario() -> None:
        llm = LLM(FakeProvider([" ".join(["word"] * 400)]), store)
        async with aclosing(llm.stream(request, ALICE)) as stream:
            async for item in stream:
                if isinstance(item, str) and item.strip() == "word":
                    break  # the consumer stops reading after the first word
        slow = LLM(FakeProvider(["late"], delay_s=10), store)
        task = asyncio.create_task(slow.complete(request, ALICE))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    rows = db.conn.execute("SELECT input_tokens, output_tokens, ok FROM llm_usage").fetchall()
    assert rows == [(1000, 1, 1), (1000, 0, 1)]  # 4,000 characters read; "word" written
