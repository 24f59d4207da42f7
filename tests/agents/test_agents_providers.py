"""The real anthropic and openai SDKs against the stub server: requests, streaming, faults."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from agents.errors import ProviderAuthError, ProviderRejected, ProviderUnavailable
from agents.providers.base import Completion, LLMRequest, extract_json, normalise_turns
from tests.stubs.anthropic_stub import Reply

PREFIX = "You are Familiar. " + "Pinned fact: the user likes tea. " * 150  # > 1024 tokens
REQ = LLMRequest(
    [{"role": "user", "content": "hello"}],
    system_prefix=PREFIX,
    system="recalled: x",
    max_tokens=200,
)


def collect(provider, request):
    async def go():
        return [item async for item in provider.stream(request)]

    return asyncio.run(go())


def test_complete_sends_cache_marks_on_the_stable_prefix(stub, anthropic_on_stub):
    provider = anthropic_on_stub()
    stub.script("first answer")
    first = asyncio.run(provider.complete(REQ))
    assert first.text == "first answer"
    body = stub.bodies()[0]
    assert body["system"][0] == {
        "type": "text",
        "text": PREFIX,
        "cache_control": {"type": "ephemeral"},
    }
    assert "cache_control" not in body["system"][1]  # the per-message part is not a breakpoint
    # No top-level mark: the rest of a one-off prompt would be a write (1.25x) nothing reads.
    assert "cache_control" not in body
    assert "temperature" not in body and "output_config" not in body
    assert first.usage.cache_write_tokens >= len(PREFIX) // 4 and first.usage.cache_read_tokens == 0
    assert first.usage.input_tokens > 0  # the per-message part and the turns, uncached

    second = asyncio.run(
        provider.complete(REQ.with_(messages=[{"role": "user", "content": "again"}]))
    )
    # The system prefix was written by the first call and is read by the second.
    assert second.usage.cache_read_tokens >= len(PREFIX) // 4
    assert second.usage.output_tokens > 0


def test_cache_tail_caches_the_whole_prompt_for_the_call_that_extends_it(stub, anthropic_on_stub):
    provider = anthropic_on_stub()
    first = asyncio.run(provider.complete(REQ.with_(cache_tail=True)))
    assert stub.bodies()[0]["cache_control"] == {"type": "ephemeral"}
    assert (
        first.usage.input_tokens == 0 and first.usage.cache_write_tokens == first.usage.total_input
    )
    longer = REQ.with_(
        messages=[
            *REQ.messages,
            {"role": "assistant", "content": "hi there"},
            {"role": "user", "content": "and now?"},
        ],
        cache_tail=True,
    )
    second = asyncio.run(provider.complete(longer))
    # Everything the first call sent is read back; only the two new turns are written.
    assert second.usage.cache_read_tokens == first.usage.total_input
    assert 0 < second.usage.cache_write_tokens < 20


def test_the_output_schema_is_part_of_the_cache_key(stub, anthropic_on_stub):
    """As with the real API, a request that adds output_config.format reads nothing that calls
    without it cached (the stub models Anthropic's documented behaviour; the engine relies on it)."""
    provider = anthropic_on_stub()
    assert provider.capabilities.schema_in_cache_key
    asyncio.run(provider.complete(REQ.with_(cache_tail=True)))
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    with_schema = asyncio.run(provider.complete(REQ.with_(cache_tail=True, json_schema=schema)))
    assert with_schema.usage.cache_read_tokens == 0
    again = asyncio.run(provider.complete(REQ.with_(cache_tail=True, json_schema=schema)))
    assert again.usage.cache_read_tokens == with_schema.usage.total_input
    assert not anthropic_on_stub(prompt_cache=False).capabilities.schema_in_cache_key


def test_no_cache_marks_when_caching_is_off(stub, anthropic_on_stub):
    asyncio.run(anthropic_on_stub(prompt_cache=False).complete(REQ))
    body = stub.bodies()[0]
    assert "cache_control" not in body and all("cache_control" not in b for b in body["system"])


def test_effort_and_json_schema_go_in_output_config(stub, anthropic_on_stub):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    result = asyncio.run(
        anthropic_on_stub().complete(
            REQ.with_(effort="medium", json_schema=schema, temperature=0.5)
        )
    )
    body = stub.bodies()[0]
    assert body["output_config"] == {
        "effort": "medium",
        "format": {"type": "json_schema", "schema": schema},
    }
    assert "temperature" not in body  # SDK 2.x takes none; the provider says so
    assert extract_json(result.text) == {"ok": True}


def test_stream_yields_deltas_then_the_completion(stub, anthropic_on_stub):
    stub.script("one two three four five six seven")
    items = collect(anthropic_on_stub(), REQ)
    *deltas, final = items
    assert len(deltas) >= 2 and all(isinstance(d, str) for d in deltas)
    assert isinstance(final, Completion)
    assert "".join(deltas) == final.text == "one two three four five six seven"
    assert final.usage.output_tokens > 0 and final.stop_reason == "end_turn"
    assert stub.bodies()[0]["stream"] is True


@pytest.mark.parametrize("status", [429, 529, 500])
def test_transient_errors_are_retried_honouring_retry_after(stub, anthropic_on_stub, status):
    stub.script(Reply.error(status, retry_after=0.4), "recovered")
    started = time.monotonic()
    result = asyncio.run(anthropic_on_stub().complete(REQ))
    assert result.text == "recovered"
    assert len(stub.requests) == 2
    assert time.monotonic() - started >= 0.4


def test_overload_beyond_the_retries_is_unavailable(stub, anthropic_on_stub):
    stub.script(*[Reply.error(529, retry_after=0.05)] * 3)
    with pytest.raises(ProviderUnavailable, match="529"):
        asyncio.run(anthropic_on_stub(max_retries=2).complete(REQ))
    assert len(stub.requests) == 3


@pytest.mark.parametrize(
    ("reply", "fix"),
    [
        (Reply.error(401, message="invalid x-api-key"), "ANTHROPIC_API_KEY"),
        (
            Reply.error(400, message="Your credit balance is too low to access the API"),
            "spend limit",
        ),
    ],
)
def test_auth_and_spend_limit_are_not_retried(stub, anthropic_on_stub, reply, fix):
    stub.script(reply)
    with pytest.raises(ProviderAuthError) as info:
        asyncio.run(anthropic_on_stub().complete(REQ))
    assert fix in info.value.fix
    assert len(stub.requests) == 1


def test_bad_request_is_rejected_not_unavailable(stub, anthropic_on_stub):
    stub.script(Reply.error(400, message="messages: field required"))
    with pytest.raises(ProviderRejected):
        asyncio.run(anthropic_on_stub().complete(REQ))


def test_malformed_body_is_a_clear_error(stub, anthropic_on_stub):
    stub.script(Reply(fault="malformed"))
    with pytest.raises(ProviderUnavailable, match="malformed"):
        asyncio.run(anthropic_on_stub(max_retries=0).complete(REQ))


@pytest.mark.parametrize("fault", ["malformed", "stream_error"])
def test_stream_faults_are_clear_errors(stub, anthropic_on_stub, fault):
    stub.script(Reply("a b c d e f g h i", fault=fault))
    with pytest.raises(ProviderUnavailable):
        collect(anthropic_on_stub(max_retries=0), REQ)


def test_slow_server_times_out(stub, anthropic_on_stub):
    stub.script(Reply("late", delay_s=2.0))
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable, match="in time"):
        asyncio.run(anthropic_on_stub(timeout_s=0.3, max_retries=0).complete(REQ))
    assert time.monotonic() - started < 1.5


def test_refusal_and_truncation_are_reported(stub, anthropic_on_stub):
    stub.script(Reply("", stop_reason="refusal"), Reply("cut", stop_reason="max_tokens"))
    refused = asyncio.run(anthropic_on_stub().complete(REQ))
    truncated = asyncio.run(anthropic_on_stub().complete(REQ))
    assert refused.refused and refused.text == ""
    assert truncated.truncated and truncated.text == "cut"


def test_openai_compatible_sends_temperature_and_schema(stub, openai_on_stub):
    schema = {"type": "object", "properties": {"score": {"type": "integer"}}}
    result = asyncio.run(openai_on_stub().complete(REQ.with_(temperature=0.7, json_schema=schema)))
    body = stub.bodies("/v1/chat/completions")[0]
    assert body["temperature"] == 0.7
    assert body["response_format"]["json_schema"]["schema"] == schema
    assert body["messages"][0] == {"role": "system", "content": REQ.full_system()}
    assert extract_json(result.text) == {"score": 0}
    assert result.usage.input_tokens > 0 and result.usage.output_tokens > 0


def test_openai_stream_reports_usage(stub, openai_on_stub):
    stub.script("alpha beta gamma delta epsilon")
    *deltas, final = collect(openai_on_stub(), REQ)
    assert "".join(deltas) == final.text == "alpha beta gamma delta epsilon"
    assert final.usage.input_tokens > 0 and final.stop_reason == "stop"


def test_openai_without_schema_support_omits_response_format(stub, openai_on_stub):
    asyncio.run(
        openai_on_stub(json_schema=False).complete(REQ.with_(json_schema={"type": "object"}))
    )
    assert "response_format" not in stub.bodies("/v1/chat/completions")[0]


def test_openai_errors_map_like_anthropic(stub, openai_on_stub):
    stub.script(Reply.error(401))
    with pytest.raises(ProviderAuthError):
        asyncio.run(openai_on_stub(max_retries=0).complete(REQ))
    stub.script(Reply(fault="malformed"))
    with pytest.raises(ProviderUnavailable):
        asyncio.run(openai_on_stub(max_retries=0).complete(REQ))


def test_turns_are_normalised():
    turns = [
        {"role": "assistant", "content": "hi"},
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
        {"role": "assistant", "content": " "},
    ]
    assert normalise_turns(turns) == [{"role": "user", "content": "a\n\nb"}]


def test_extract_json_tolerates_prose_and_fences():
    assert extract_json('Sure! ```json\n{"a": 1}\n``` hope it helps') == {"a": 1}
    assert extract_json('Here: {"a": [1, 2]} done') == {"a": [1, 2]}
    with pytest.raises(ValueError):
        extract_json("no json here")


def test_the_breakpoint_after_earlier_turns_survives_an_unanswered_turn(stub, anthropic_on_stub):
    provider = anthropic_on_stub()
    turns = [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "two"},
        {"role": "user", "content": "three (never answered)"},
    ]
    body = provider.build_params(
        REQ.with_(messages=[*turns, {"role": "user", "content": "four"}], cache_turns=3)
    )
    # "three" and "four" become one user message, so the breakpoint moves back to "two".
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == [
        {"type": "text", "text": "two", "cache_control": {"type": "ephemeral"}}
    ]
    assert isinstance(body["messages"][2]["content"], str)
    plain = provider.build_params(
        REQ.with_(messages=[*turns[:2], {"role": "user", "content": "x"}], cache_turns=2)
    )
    assert plain["messages"][1]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in json.dumps(provider.build_params(REQ)["messages"])


def test_a_changed_effort_keeps_the_system_prompt_cached_but_not_the_turns(stub, anthropic_on_stub):
    provider = anthropic_on_stub()
    turns = [
        {"role": "user", "content": "one " * 300},
        {"role": "assistant", "content": "two"},
        {"role": "user", "content": "three"},
    ]
    first = asyncio.run(
        provider.complete(REQ.with_(messages=turns, effort="medium", cache_tail=True))
    )
    same = asyncio.run(
        provider.complete(REQ.with_(messages=turns, effort="medium", cache_tail=True))
    )
    other = asyncio.run(provider.complete(REQ.with_(messages=turns, effort="low", cache_tail=True)))
    assert same.usage.cache_read_tokens == first.usage.total_input
    system_only = len(PREFIX) // 4
    assert system_only <= other.usage.cache_read_tokens < first.usage.total_input - 250
    # "high" is the API's default and is left out: such a request is alike one with no effort.
    assert "output_config" not in provider.build_params(REQ.with_(effort="high"))
