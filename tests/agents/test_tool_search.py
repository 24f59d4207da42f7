"""Deferred tools and Anthropic's tool search: the real anthropic SDK against the stub, which
simulates the search as the API documents it (tests/stubs/tool_search.py); the agent loop inside
the chat agent on real SQLite; the OpenAI path, which has no search, still sends every tool."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from agents.chat import ChatAgent
from agents.llm import LLM
from agents.loop import ToolLoop
from agents.providers.base import (
    LLMRequest,
    ProviderBlock,
    TextBlock,
    ToolDef,
    ToolResultBlock,
    ToolUseBlock,
)
from agents.schema import migrations as agent_migrations
from agents.settings import LLMSettings, ToolLoopSettings
from agents.tools.base import Tool, ToolSource, ToolSpec
from agents.tools.registry import StaticSource, ToolRegistry
from agents.tools.settings import ToolsSettings
from bot.core.tool_buttons import step_line
from memory.db import Database
from memory.embedder import HashingEmbedder
from memory.schema import migrations as memory_migrations
from memory.service import Memory
from memory.settings import MemorySettings
from tests.agents.test_agent_loop import Deleter, Lookup, Tagger, Web, calls_of
from tests.agents.test_agents_provider_tools import PREFIX, run_stream
from tests.stubs import tool_search
from tests.stubs.anthropic_stub import Reply, tokens

OBJ: dict[str, Any] = {"type": "object", "properties": {}}
CLOCK = ToolDef("current_time", "The time now.", OBJ)
NOTES = ToolDef(
    "tag_note",
    "Tag a note with a label.",
    {"type": "object", "properties": {"label": {"type": "string"}}},
    deferred=True,
)


def ask(*tools: ToolDef, prefix: str = PREFIX, messages: list | None = None) -> LLMRequest:
    return LLMRequest(
        messages or [{"role": "user", "content": "tag my last note 'work'"}],
        system_prefix=prefix,
        max_tokens=200,
        tools=list(tools),
    )


def plain(tool: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in tool.items() if k != "cache_control"}


# -- the provider ---------------------------------------------------------------------------------
def test_deferred_definitions_go_out_marked_with_the_search_tool_last(stub, anthropic_on_stub):
    provider = anthropic_on_stub()
    asyncio.run(provider.complete(ask(CLOCK, NOTES)))
    asyncio.run(provider.complete(ask(CLOCK, NOTES, prefix="")))
    with_prefix, without = stub.bodies()
    assert [plain(t) for t in with_prefix["tools"]] == [
        {"name": "current_time", "description": "The time now.", "input_schema": OBJ},
        {
            "name": "tag_note",
            "description": "Tag a note with a label.",
            "input_schema": NOTES.input_schema,
            "defer_loading": True,
        },
        {"type": "tool_search_tool_bm25_20251119", "name": "tool_search_tool_bm25"},
    ]
    # The system prefix's breakpoint caches the tools; without one, the last tool in the prompt
    # (the search tool, never a deferred one) is the breakpoint.
    assert not any("cache_control" in t for t in with_prefix["tools"])
    assert [t.get("cache_control") for t in without["tools"]] == [
        None,
        None,
        {"type": "ephemeral"},
    ]


def test_nothing_deferred_sends_no_search_tool_and_a_provider_without_search_sends_all(
    stub, anthropic_on_stub
):
    asyncio.run(anthropic_on_stub().complete(ask(CLOCK)))
    asyncio.run(anthropic_on_stub(tool_search=False).complete(ask(CLOCK, NOTES)))
    only_clock, no_search = stub.bodies()
    assert [t["name"] for t in only_clock["tools"]] == ["current_time"]
    assert [plain(t) for t in no_search["tools"]] == [
        {"name": "current_time", "description": "The time now.", "input_schema": OBJ},
        {"name": "tag_note", "description": NOTES.description, "input_schema": NOTES.input_schema},
    ]


@pytest.mark.parametrize("streamed", [False, True])
def test_a_search_and_the_call_of_the_tool_found_come_back_in_order(
    stub, anthropic_on_stub, streamed
):
    provider = anthropic_on_stub()
    request = ask(CLOCK, NOTES)
    stub.script(
        Reply("Found it.", search="tag note", tool_calls=[{"name": "tag_note", "input": {}}])
    )
    if streamed:
        deltas, result = run_stream(provider, request)
        assert "".join(deltas) == "Found it."
    else:
        result = asyncio.run(provider.complete(request))
    first = stub.bodies()[0]
    # What the service sent, made again from the request (the stub's search is deterministic).
    searched = tool_search.search_blocks(first, 1, "tag note")
    assert searched[1]["content"]["tool_references"] == [
        {"type": "tool_reference", "tool_name": "tag_note"}
    ]
    [call] = result.tool_calls
    assert result.stop_reason == "tool_use" and call.name == "tag_note"
    assert result.content is not None
    assert [type(b) for b in result.content] == [
        ProviderBlock,
        ProviderBlock,
        TextBlock,
        ToolUseBlock,
    ]
    assert [b.data for b in result.content[:2]] == searched  # type: ignore[union-attr]

    # Carried back unchanged with the assistant turn, the tool result after it.
    follow = request.with_(
        messages=[
            *request.messages,
            {"role": "assistant", "content": result.blocks()},
            {"role": "user", "content": [ToolResultBlock(call.id, "tagged")]},
        ]
    )
    stub.script(Reply("Tagged."))
    asyncio.run(provider.complete(follow))
    turn = stub.bodies()[1]["messages"][1]
    assert turn["role"] == "assistant"
    assert turn["content"] == [
        *searched,
        {"type": "text", "text": "Found it."},
        {"type": "tool_use", "id": call.id, "name": "tag_note", "input": {}},
    ]


@pytest.mark.parametrize("streamed", [False, True])
def test_text_on_either_side_of_a_search_reads_as_two_paragraphs(stub, anthropic_on_stub, streamed):
    provider = anthropic_on_stub()
    stub.script(Reply("None fits.", search="tag note", before_search="Let me look for a tool."))
    if streamed:
        _, result = run_stream(provider, ask(CLOCK, NOTES))
    else:
        result = asyncio.run(provider.complete(ask(CLOCK, NOTES)))
    assert result.text == "Let me look for a tool.\n\nNone fits."
    assert result.stop_reason == "end_turn" and result.tool_calls == []
    assert result.content is not None
    assert [b.text for b in result.content if isinstance(b, TextBlock)] == [
        "Let me look for a tool.",
        "None fits.",
    ]


def test_the_stub_bills_a_deferred_definition_only_where_a_search_expands_it(
    stub, anthropic_on_stub
):
    provider = anthropic_on_stub()
    loaded = ToolDef(NOTES.name, NOTES.description, NOTES.input_schema)
    messages = [{"role": "user", "content": "hello there"}]
    every = asyncio.run(provider.complete(ask(CLOCK, loaded, prefix="", messages=messages)))
    deferred = asyncio.run(provider.complete(ask(CLOCK, NOTES, prefix="", messages=messages)))
    definition = tokens("tool:" + json.dumps(plain(stub.bodies()[0]["tools"][1]), sort_keys=True))
    search = tokens("tool:" + json.dumps(plain(stub.bodies()[1]["tools"][2]), sort_keys=True))
    assert deferred.usage.total_input == every.usage.total_input - definition + search

    # An answer that searches pays for a second pass over the prompt, the search's blocks and
    # the definition they expand to.
    stub.script(Reply("ok", search="tag note"))
    found = asyncio.run(provider.complete(ask(CLOCK, NOTES, prefix="", messages=messages)))
    body = stub.bodies()[2]
    blocks = tool_search.search_blocks(body, 3, "tag note")
    expansion = json.dumps(
        {k: v for k, v in body["tools"][1].items() if k != "defer_loading"}, sort_keys=True
    )
    assert expansion in tool_search.expanded_text(blocks[1], tool_search.deferred(body))
    second_pass = deferred.usage.total_input + sum(
        tokens("assistant:" + t)
        for t in (
            "server_tool_use:" + json.dumps(blocks[0], sort_keys=True),
            tool_search.expanded_text(blocks[1], tool_search.deferred(body)),
        )
    )
    assert found.usage.total_input == deferred.usage.total_input + second_pass


def test_the_stub_refuses_what_the_api_refuses(stub, anthropic_on_stub):
    from agents.errors import ProviderRejected

    provider = anthropic_on_stub(max_retries=0)
    # A scripted call of a deferred tool no search found: the real model could not make it.
    stub.script(Reply.tool("tag_note"))
    with pytest.raises(ProviderRejected, match="not found by a search"):
        asyncio.run(provider.complete(ask(CLOCK, NOTES)))
    # A reference to a tool the request does not define.
    ghost = ProviderBlock(
        "anthropic",
        {
            "type": "tool_search_tool_result",
            "tool_use_id": "srvtoolu_x",
            "content": {
                "type": "tool_search_tool_search_result",
                "tool_references": [{"type": "tool_reference", "tool_name": "gone"}],
            },
        },
    )
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [ghost, TextBlock("so")]},
        {"role": "user", "content": "and?"},
    ]
    with pytest.raises(ProviderRejected, match="not in tools: gone"):
        asyncio.run(provider.complete(ask(CLOCK, NOTES, messages=messages)))
    # Neither is the model refusing tool search: it stays on.
    assert provider.capabilities.tool_search is True


@pytest.mark.parametrize("streamed", [False, True])
def test_a_model_without_tool_search_gets_every_definition_after_its_first_refusal(stub, streamed):
    from agents.providers.anthropic import AnthropicProvider

    provider = AnthropicProvider("claude-haiku-4-5", api_key="k", base_url=stub.url, max_retries=0)
    stub.script(Reply("first"), Reply("second"))
    # An answer resumed from before: its turns hold a search this model cannot take.
    searched = ProviderBlock(
        "anthropic", {"type": "server_tool_use", "id": "srvtoolu_1", "name": "x", "input": {}}
    )
    earlier = [
        {"role": "user", "content": "tag it"},
        {"role": "assistant", "content": [searched, TextBlock("Looking.")]},
        {"role": "user", "content": "well?"},
    ]
    texts = []
    for messages in (None, earlier):
        request = ask(CLOCK, NOTES, messages=messages)
        if streamed:
            _, result = run_stream(provider, request)
        else:
            result = asyncio.run(provider.complete(request))
        texts.append(result.text)
    assert texts == ["first", "second"]
    refused, first, second = stub.bodies()  # one refusal only, then never a search again
    assert refused["tools"][-1]["name"] == "tool_search_tool_bm25"
    for body in (first, second):
        assert [plain(t) for t in body["tools"]] == [
            {"name": "current_time", "description": "The time now.", "input_schema": OBJ},
            {
                "name": "tag_note",
                "description": NOTES.description,
                "input_schema": NOTES.input_schema,
            },
        ]
    assert second["messages"][1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "Looking."}],
    }
    assert provider.capabilities.tool_search is False


def test_openai_sends_deferred_definitions_like_any_other(stub, openai_on_stub):
    asyncio.run(openai_on_stub().complete(ask(CLOCK, NOTES)))
    [body] = stub.bodies("/v1/chat/completions")
    assert [t["function"]["name"] for t in body["tools"]] == ["current_time", "tag_note"]
    assert "defer_loading" not in json.dumps(body)
    assert "tool_search" not in json.dumps(body)


# -- the registry ---------------------------------------------------------------------------------
class McpLookup(Lookup):
    spec = ToolSpec("tickets__lookup", "Look a ticket up.", OBJ, read_only=True, source="mcp:t")


def test_the_registry_defers_all_but_the_always_loaded_mcp_tools_included():
    tools = [Lookup(), Tagger(), McpLookup()]
    core = ToolRegistry([StaticSource("t", tools)], always_loaded=["lookup"])
    assert [(d.name, d.deferred) for d in core.definitions()] == [
        ("lookup", False),
        ("tag_note", True),
        ("tickets__lookup", True),
    ]
    named = ToolRegistry([StaticSource("t", tools)], always_loaded=["tickets__lookup"])
    assert [d.name for d in named.definitions() if not d.deferred] == ["tickets__lookup"]
    everything = ToolRegistry([StaticSource("t", tools)])
    assert not any(d.deferred for d in everything.definitions())
    # The default core: the tools most everyday messages need.
    assert ToolsSettings().always_loaded == [
        "create_reminder",
        "current_time",
        "remember",
        "search_memory",
    ]


# -- the loop -------------------------------------------------------------------------------------
@pytest.fixture
def rig(tmp_path: Path, stub, anthropic_on_stub):
    db = Database.open(tmp_path / "familiar.db", [memory_migrations, agent_migrations])
    memory = Memory(db, HashingEmbedder(), MemorySettings(), tmp_path / "index")
    tools = {"lookup": Lookup(), "deleter": Deleter(), "tagger": Tagger(), "web": Web()}

    def make() -> ChatAgent:
        settings = LLMSettings(fact_extraction_every=0, persona=PREFIX)
        registry = ToolRegistry([StaticSource("test", tools.values())], always_loaded=["lookup"])
        loop = ToolLoop(registry, ToolLoopSettings(), db)
        return ChatAgent(memory, LLM(anthropic_on_stub()), settings, db=db, tools=loop)

    yield make, tools, db, memory
    asyncio.run(memory.stop())
    db.close()


@pytest.mark.parametrize("streamed", [False, True])
def test_a_deferred_tool_found_by_search_is_called_and_recorded(rig, stub, streamed):
    make, tools, db, memory = rig
    agent = make()
    stub.script(
        Reply("On it.", search="tag a note", tool_calls=[{"name": "tag_note", "input": {}}]),
        Reply("Tagged it."),
    )
    shown: list[str] = []

    async def on_delta(text: str) -> None:
        shown.append(text)

    answer = asyncio.run(
        agent.answer(10, 1, "tag my last note", on_delta=on_delta if streamed else None)
    )
    assert answer.text == "Tagged it." and answer.error is None
    assert answer.calls == 2 and answer.tool_calls == 1
    assert tools["tagger"].calls == 1
    # The search is a step of the answer too: what it looked for and found.
    assert calls_of(db) == [
        ("tool_search", '{"query": "tag a note"}', "ok", None),
        ("tag_note", "{}", "ok", None),
    ]
    search, call = asyncio.run(agent.tools.db.run(agent.tools.store.calls, answer.tool_run_id))
    # "note" is in delete_note's description too: the best match first.
    found = "🔎 found tag_note, delete_note"
    assert step_line(1, search) == f'1. tool_search {{"query": "tag a note"}} → {found}'
    assert step_line(2, call).startswith("2. tag_note {} → ✅ 6 chars")
    if streamed:
        assert shown[-1] == "Tagged it."
    first, second = stub.bodies()
    searched = tool_search.search_blocks(first, 1, "tag a note")
    turn, results = second["messages"][-2:]
    assert turn["role"] == "assistant" and turn["content"][:2] == searched
    assert results["content"][0]["type"] == "tool_result"
    assert results["content"][0]["content"] == "tagged"
    assert first["tools"] == second["tools"]  # the same prefix on both steps


def test_confirm_applies_to_a_deferred_tool_and_the_search_survives_the_wait(rig, stub):
    make, tools, db, memory = rig
    agent = make()
    stub.script(
        Reply(search="delete a note", tool_calls=[{"name": "delete_note", "input": {"id": 7}}]),
        Reply("Deleted note 7."),
    )
    paused = asyncio.run(agent.answer(10, 1, "delete note 7"))
    assert paused.waiting_for == "Delete note #7" and tools["deleter"].deleted == []
    done = asyncio.run(agent.resume(paused.tool_run_id, True, user_id=1))
    assert done.text == "Deleted note 7." and tools["deleter"].deleted == [7]
    first, after = stub.bodies()
    # Stored as JSON while it waited, and sent back as it came.
    assert after["messages"][-2]["content"][:2] == tool_search.search_blocks(
        first, 1, "delete a note"
    )
    assert [r[0] for r in calls_of(db)] == ["tool_search", "delete_note"]


def test_the_untrusted_rule_holds_for_tools_found_by_search(rig, stub):
    make, tools, db, _ = rig
    agent = make()
    stub.script(
        Reply(search="fetch a web page", tool_calls=[{"name": "web_page", "input": {}}]),
        Reply(search="tag a note", tool_calls=[{"name": "tag_note", "input": {}}]),
    )
    paused = asyncio.run(agent.answer(10, 1, "read the page and do what it says"))
    assert paused.waiting_for is not None and "tag_note" in paused.waiting_for
    assert tools["tagger"].calls == 0


def test_the_cached_prefix_stays_while_answers_find_different_tools(rig, stub):
    make, tools, db, memory = rig
    agent = make()
    stub.script(
        Reply(search="tag a note", tool_calls=[{"name": "tag_note", "input": {}}]),
        Reply("Tagged."),
        Reply(search="web page", tool_calls=[{"name": "web_page", "input": {}}]),
        Reply("The page says hello."),
        Reply("You're welcome."),
    )
    answers = [
        asyncio.run(agent.answer(10, 1, text))
        for text in ("tag my note", "what does the page say?", "thanks")
    ]
    assert [a.text for a in answers] == ["Tagged.", "The page says hello.", "You're welcome."]
    bodies = stub.bodies()
    assert len({json.dumps(b["tools"]) for b in bodies}) == 1
    assert len({json.dumps(b["system"]) for b in bodies}) == 1
    prefix = sum(
        tokens("tool:" + json.dumps(plain(t), sort_keys=True))
        for t in bodies[0]["tools"]
        if tool_search.in_prompt(t)
    ) + tokens(bodies[0]["system"][0]["text"])
    # The first answer writes the prefix; the later ones read it on every call, nothing of it
    # written again, although each found a different tool.
    assert answers[0].usage.cache_write_tokens >= prefix
    for a in answers[1:]:
        assert a.usage.cache_read_tokens >= a.calls * prefix
    # The chat keeps the turns, not the search: later prompts carry no expanded definitions.
    assert "tool_search_tool_result" not in json.dumps(bodies[-1]["messages"])


class Changing(ToolSource):
    """An MCP server whose tool list changes while the daemon runs."""

    name = "mcp:t"

    def __init__(self) -> None:
        self.offered: list[Tool] = [McpLookup()]

    def tools(self) -> list[Tool]:
        return list(self.offered)


class McpClose(Tagger):
    spec = ToolSpec("tickets__close", "Close a ticket.", OBJ, source="mcp:t")


def test_an_mcp_server_changing_its_tools_leaves_the_cached_prefix_alone(
    tmp_path: Path, stub, anthropic_on_stub
):
    db = Database.open(tmp_path / "familiar.db", [memory_migrations, agent_migrations])
    memory = Memory(db, HashingEmbedder(), MemorySettings(), tmp_path / "index")
    server = Changing()
    registry = ToolRegistry([StaticSource("t", [Lookup()]), server], always_loaded=["lookup"])
    settings = LLMSettings(fact_extraction_every=0, persona=PREFIX)
    loop = ToolLoop(registry, ToolLoopSettings(), db)
    agent = ChatAgent(memory, LLM(anthropic_on_stub()), settings, db=db, tools=loop)
    try:
        first = asyncio.run(agent.answer(10, 1, "hello"))
        server.offered.append(McpClose())  # the server lists one more tool
        second = asyncio.run(agent.answer(10, 1, "and now?"))
    finally:
        asyncio.run(memory.stop())
        db.close()
    before, after = stub.bodies()
    assert [t.get("name") for t in after["tools"]] == [
        "lookup",
        "tickets__close",
        "tickets__lookup",
        "tool_search_tool_bm25",
    ]
    assert [t for t in before["tools"] if tool_search.in_prompt(t)] == [
        t for t in after["tools"] if tool_search.in_prompt(t)
    ]
    # Read from the cache, not written again: the new tool is not in the prefix.
    assert first.usage.cache_write_tokens > 0
    assert second.usage.cache_read_tokens >= first.usage.cache_write_tokens


def test_a_paused_turn_goes_back_for_the_model_to_go_on(rig, stub):
    make, tools, db, _ = rig
    agent = make()
    stub.script(Reply(search="tag a note", stop_reason="pause_turn"), Reply("Nothing to tag."))
    answer = asyncio.run(agent.answer(10, 1, "tag something"))
    assert answer.text == "Nothing to tag." and answer.calls == 2
    first, second = stub.bodies()
    last = second["messages"][-1]
    assert last["role"] == "assistant"
    assert last["content"] == tool_search.search_blocks(first, 1, "tag a note")
