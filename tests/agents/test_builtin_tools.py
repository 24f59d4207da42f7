"""The built-in memory and clock tools on real memory (SQLite, FAISS, the hashing embedder), each
acting only in the scope of the chat and person it is called for."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agents.tools import builtin_sources
from agents.tools.base import ToolContext, ToolError
from agents.tools.clock import CurrentTime
from agents.tools.registry import ToolRegistry
from agents.tools.settings import ToolsSettings
from memory.db import Database
from memory.embedder import HashingEmbedder
from memory.schema import migrations as memory_migrations
from memory.service import Memory
from memory.settings import MemorySettings
from memory.types import Scope

ANN = ToolContext(chat_id=10, user_id=1, tz=ZoneInfo("Europe/Berlin"))
BOB = ToolContext(chat_id=20, user_id=2)


@pytest.fixture
def tools(tmp_path: Path):
    db = Database.open(tmp_path / "familiar.db", [memory_migrations])
    memory = Memory(db, HashingEmbedder(), MemorySettings(), tmp_path / "index")
    registry = ToolRegistry(builtin_sources(memory, ToolsSettings()))
    yield registry, memory
    asyncio.run(memory.stop())
    db.close()


def call(registry: ToolRegistry, name: str, args: dict, ctx: ToolContext):
    tool = registry.get(name)
    assert tool is not None and registry.invalid(tool, args) is None
    return asyncio.run(tool.call(args, ctx))


def test_the_registry_offers_them_sorted_with_their_policies(tools):
    registry, _ = tools
    names = [t.spec.name for t in registry.offered()]
    assert names == ["current_time", "fetch_url", "forget_memory", "remember", "search_memory"]
    assert {t.spec.name: registry.policy(t) for t in registry.offered()} == {
        "current_time": "auto",
        "fetch_url": "auto",
        "forget_memory": "confirm",
        "remember": "auto",
        "search_memory": "auto",
    }
    assert registry.untrusted(registry.get("fetch_url"))  # a web page is data, never instructions
    off = ToolRegistry(registry.sources, {"remember": "off", "forget_memory": "auto"})
    assert [t.spec.name for t in off.offered()] == [
        "current_time",
        "fetch_url",
        "forget_memory",
        "search_memory",
    ]
    assert off.get("remember") is None and off.policy(off.get("forget_memory")) == "auto"


def test_search_memory_finds_this_chats_memories_only(tools):
    registry, memory = tools

    async def seed():
        await memory.add_fact("The lease of the flat ends in March.", Scope(10, 1))
        await memory.add_fact("Bob's lease is secret.", Scope(20, 2))

    asyncio.run(seed())
    result = call(registry, "search_memory", {"query": "lease", "limit": 5}, ANN)
    assert "The lease of the flat ends in March." in result.content
    assert "secret" not in result.content
    line = result.content.splitlines()[0]
    assert line.startswith("#") and ", fact]" in line
    nothing = call(registry, "search_memory", {"query": "lease", "until": "2000-01-01"}, ANN)
    assert nothing.content == "No memories match."
    with pytest.raises(ToolError, match="ISO-8601"):
        call(registry, "search_memory", {"query": "lease", "since": "last march"}, ANN)
    tool = registry.get("search_memory")
    assert registry.invalid(tool, {"query": "x", "limit": 500}) is not None
    assert registry.invalid(tool, {"query": "x", "extra": 1}) is not None


def test_remember_dedupes_and_forget_is_scoped(tools):
    registry, memory = tools
    first = call(registry, "remember", {"fact": "The user's cat is called Miso."}, ANN)
    again = call(registry, "remember", {"fact": "The user's cat is called Miso."}, ANN)
    assert first.content.startswith("Remembered as #") and again.content.startswith("Already known")
    memory_id = first.data
    forget = registry.get("forget_memory")
    assert forget is not None
    shown = asyncio.run(forget.confirm_text({"id": memory_id}, ANN))
    assert shown == f"Forget memory #{memory_id}: “The user's cat is called Miso.”"
    # Another chat sees neither the text nor can delete it.
    foreign = asyncio.run(forget.confirm_text({"id": memory_id}, BOB))
    assert "no such memory" in foreign and "Miso" not in foreign
    with pytest.raises(ToolError, match="no memory"):
        asyncio.run(forget.call({"id": memory_id}, BOB))
    assert asyncio.run(forget.call({"id": memory_id}, ANN)).content == f"Forgotten #{memory_id}."
    assert asyncio.run(memory.search("Miso", Scope(10, 1))) == []


def test_current_time_is_in_the_chats_zone():
    clock = CurrentTime(now=lambda: datetime(2026, 7, 1, 12, 0, tzinfo=UTC))
    result = asyncio.run(clock.call({}, ANN))
    assert result.content == "Wednesday 2026-07-01 14:00 (Europe/Berlin, UTC+0200)"
