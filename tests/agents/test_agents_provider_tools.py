"""Tool use through the real anthropic and openai SDKs against the stub: definitions, calls
(streamed and not), results sent back, images, and tool definitions in the cached prefix."""

from __future__ import annotations

import asyncio
import json

import pytest

from agents.providers.base import (
    Completion,
    ImageBlock,
    LLMRequest,
    TextBlock,
    ToolDef,
    ToolResultBlock,
    ToolUseBlock,
    messages_from_json,
    messages_to_json,
    normalise_turns,
)
from tests.stubs.anthropic_stub import Reply

PREFIX = "You are Familiar. " + "Pinned fact: the user likes tea. " * 150  # > 1024 tokens
TOOLS = [
    ToolDef(
        "current_time",
        "The time now in the chat's time zone.",
        {"type": "object", "properties": {}, "additionalProperties": False},
    ),
    ToolDef(
        "search_memory",
        "Search what the user told you before.",
        {
            "type": "object",
            "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
            "required": ["query"],
        },
    ),
]
ASK = LLMRequest(
    [{"role": "user", "content": "what did I say about the lease?"}],
    system_prefix=PREFIX,
    max_tokens=200,
    tools=TOOLS,
)
PIXEL = bytes.fromhex("89504e470d0a1a0a")  # enough to check the encoding, not a real image


def run_stream(provider, request) -> tuple[list[str], Completion]:
    async def go():
        return [item async for item in provider.stream(request)]

    items = asyncio.run(go())
    assert isinstance(items[-1], Completion)
    return [i for i in items[:-1] if isinstance(i, str)], items[-1]


@pytest.mark.parametrize("streamed", [False, True])
def test_anthropic_returns_scripted_tool_calls(stub, anthropic_on_stub, streamed):
    provider = anthropic_on_stub()
    stub.script(Reply.tool("search_memory", "Let me look.", query="lease", limit=3))
    if streamed:
        deltas, result = run_stream(provider, ASK)
        assert "".join(deltas) == "Let me look."
    else:
        result = asyncio.run(provider.complete(ASK))
    assert result.stop_reason == "tool_use"
    assert result.text == "Let me look."
    [call] = result.tool_calls
    assert (call.name, call.input) == ("search_memory", {"query": "lease", "limit": 3})
    assert call.id.startswith("toolu_stub_")
    body = stub.bodies()[0]
    assert [t["name"] for t in body["tools"]] == ["current_time", "search_memory"]
    assert body["tools"][1]["input_schema"]["required"] == ["query"]


def test_anthropic_sends_tool_results_back_as_blocks(stub, anthropic_on_stub):
    provider = anthropic_on_stub()
    call = ToolUseBlock("toolu_1", "search_memory", {"query": "lease"})
    request = ASK.with_(
        messages=[
            *ASK.messages,
            {"role": "assistant", "content": [TextBlock("Looking."), call]},
            {"role": "user", "content": [ToolResultBlock("toolu_1", "#7 lease ends in March")]},
        ]
    )
    result = asyncio.run(provider.complete(request))
    assert result.text == "stub answer with: #7 lease ends in March"
    assert result.stop_reason == "end_turn" and not result.tool_calls
    sent = stub.bodies()[0]["messages"]
    assert sent[1] == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Looking."},
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "search_memory",
                "input": {"query": "lease"},
            },
        ],
    }
    assert sent[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "#7 lease ends in March"}
    ]


def test_anthropic_error_results_are_flagged(stub, anthropic_on_stub):
    provider = anthropic_on_stub()
    request = ASK.with_(
        messages=[
            *ASK.messages,
            {"role": "assistant", "content": [ToolUseBlock("t1", "nope", {})]},
            {"role": "user", "content": [ToolResultBlock("t1", "no tool nope", is_error=True)]},
        ]
    )
    asyncio.run(provider.complete(request))
    assert stub.bodies()[0]["messages"][2]["content"][0]["is_error"] is True


def test_tools_are_read_from_the_cache_in_a_warm_chat(stub, anthropic_on_stub):
    """Tools come before the system prompt in the cache prefix: the system prefix's breakpoint
    covers them, and a second request with the same tools reads both from the cache."""
    provider = anthropic_on_stub()
    first = asyncio.run(provider.complete(ASK))
    second = asyncio.run(
        provider.complete(ASK.with_(messages=[{"role": "user", "content": "and the car?"}]))
    )
    tools_tokens = sum(len(json.dumps(t)) for t in stub.bodies()[0]["tools"]) // 4
    assert first.usage.cache_read_tokens == 0
    assert second.usage.cache_read_tokens >= len(PREFIX) // 4 + tools_tokens
    # A changed tool list is a different prefix: nothing of it is read from the cache.
    third = asyncio.run(
        provider.complete(ASK.with_(tools=TOOLS[:1], messages=[{"role": "user", "content": "x"}]))
    )
    assert third.usage.cache_read_tokens == 0


def test_without_a_system_prefix_the_last_tool_is_the_breakpoint(stub, anthropic_on_stub):
    provider = anthropic_on_stub()
    big = [ToolDef(f"t{i}", "A tool. " * 200, {"type": "object"}) for i in range(3)]
    request = LLMRequest([{"role": "user", "content": "hi"}], tools=big)
    asyncio.run(provider.complete(request))
    second = asyncio.run(provider.complete(request))
    body = stub.bodies()[0]
    assert body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert all("cache_control" not in t for t in body["tools"][:-1])
    assert second.usage.cache_read_tokens > 1024


@pytest.mark.parametrize("streamed", [False, True])
def test_openai_returns_scripted_tool_calls(stub, openai_on_stub, streamed):
    provider = openai_on_stub()
    stub.script(
        Reply(
            tool_calls=[
                {"name": "search_memory", "input": {"query": "lease"}},
                {"name": "current_time", "input": {}},
            ]
        )
    )
    if streamed:
        _, result = run_stream(provider, ASK)
    else:
        result = asyncio.run(provider.complete(ASK))
    assert result.stop_reason == "tool_use"
    assert [(c.name, c.input) for c in result.tool_calls] == [
        ("search_memory", {"query": "lease"}),
        ("current_time", {}),
    ]
    assert len({c.id for c in result.tool_calls}) == 2
    body = stub.bodies("/v1/chat/completions")[0]
    assert body["tools"][1] == {
        "type": "function",
        "function": {
            "name": "search_memory",
            "description": "Search what the user told you before.",
            "parameters": TOOLS[1].input_schema,
        },
    }


@pytest.mark.parametrize("streamed", [False, True])
def test_openai_malformed_arguments_are_kept_aside(stub, openai_on_stub, streamed):
    provider = openai_on_stub()
    stub.script(Reply(tool_calls=[{"name": "search_memory", "raw_arguments": '{"query": '}]))
    result = run_stream(provider, ASK)[1] if streamed else asyncio.run(provider.complete(ASK))
    [call] = result.tool_calls
    assert call.input == {} and call.invalid_input == '{"query": '


def test_openai_sends_calls_and_results_in_its_own_shape(stub, openai_on_stub):
    provider = openai_on_stub()
    call = ToolUseBlock("call_1", "search_memory", {"query": "lease"})
    request = ASK.with_(
        messages=[
            *ASK.messages,
            {"role": "assistant", "content": [call]},
            {"role": "user", "content": [ToolResultBlock("call_1", "#7 lease ends in March")]},
        ]
    )
    result = asyncio.run(provider.complete(request))
    assert result.text == "stub answer with: #7 lease ends in March"
    sent = stub.bodies("/v1/chat/completions")[0]["messages"]
    assert sent[2] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "search_memory", "arguments": '{"query": "lease"}'},
            }
        ],
    }
    assert sent[3] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": "#7 lease ends in March",
    }


def test_images_are_serialised_for_both_providers(stub, anthropic_on_stub, openai_on_stub):
    photo = {
        "role": "user",
        "content": [TextBlock("what is this?"), ImageBlock(PIXEL, "image/png")],
    }
    request = LLMRequest([photo], max_tokens=50)
    asyncio.run(anthropic_on_stub().complete(request))
    asyncio.run(openai_on_stub().complete(request))
    a = stub.bodies()[0]["messages"][0]["content"]
    assert a[1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }
    o = stub.bodies("/v1/chat/completions")[0]["messages"][0]["content"]
    assert o == [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]


def test_plain_string_messages_serialise_as_before(stub, anthropic_on_stub, openai_on_stub):
    request = LLMRequest([{"role": "user", "content": "hello"}], max_tokens=20)
    asyncio.run(anthropic_on_stub().complete(request))
    asyncio.run(openai_on_stub().complete(request))
    assert stub.bodies()[0]["messages"] == [{"role": "user", "content": "hello"}]
    assert "tools" not in stub.bodies()[0]
    assert stub.bodies("/v1/chat/completions")[0]["messages"] == [
        {"role": "user", "content": "hello"}
    ]


def test_normalise_joins_block_turns_and_the_json_round_trip_keeps_them():
    call = ToolUseBlock("t1", "x", {"a": 1})
    turns = normalise_turns(
        [
            {"role": "user", "content": "one"},
            {"role": "user", "content": [TextBlock(" "), ImageBlock(PIXEL, "image/png")]},
            {"role": "assistant", "content": [call]},
        ]
    )
    assert turns == [
        {"role": "user", "content": [TextBlock("one"), ImageBlock(PIXEL, "image/png")]},
        {"role": "assistant", "content": [call]},
    ]
    assert messages_from_json(json.loads(json.dumps(messages_to_json(turns)))) == turns


def test_an_openai_server_without_function_calling_gets_no_tools(stub):
    from agents.providers import build_provider
    from agents.settings import LLMSettings

    settings = LLMSettings(provider="openai", openai_base_url=stub.openai_url, openai_tools=False)
    provider = build_provider(settings)
    assert provider.capabilities.tools is False  # so the chat agent answers without the loop
    asyncio.run(provider.complete(ASK))
    assert "tools" not in stub.bodies("/v1/chat/completions")[0]
    on = build_provider(settings.model_copy(update={"openai_tools": True}))
    assert on.capabilities.tools is True


def test_the_stub_can_add_the_services_tool_prompt_to_the_cached_prefix(stub, anthropic_on_stub):
    """``tool_prompt_tokens`` (the bench's --tool-prompt-tokens): a request with tools weighs that
    much more, and a warm one reads it from the cache with the tools."""
    provider = anthropic_on_stub()
    plain = asyncio.run(provider.complete(ASK))
    stub.tool_prompt_tokens = 300
    first = asyncio.run(provider.complete(ASK))
    second = asyncio.run(provider.complete(ASK))
    assert first.usage.total_input - plain.usage.total_input == 300
    assert second.usage.cache_read_tokens == first.usage.cache_write_tokens
    assert second.usage.cache_read_tokens >= len(PREFIX) // 4 + 300
    no_tools = ASK.with_(tools=[])
    assert asyncio.run(provider.complete(no_tools)).usage.total_input < plain.usage.total_input
