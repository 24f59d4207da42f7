"""What the model is shown of the tools: every built-in tool, with the issue's names and
arguments, in a stable order, without the keywords that only bound values (they cost tokens in
every prompt; the loop still checks them on every call)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agents.schema import migrations as agent_migrations
from agents.tools import builtin_sources
from agents.tools.base import Tool, ToolContext, ToolResult, ToolSpec
from agents.tools.catalog import build_tool_sources
from agents.tools.registry import VALIDATION_ONLY, StaticSource, ToolRegistry, model_schema
from agents.tools.settings import ToolsSettings
from jobs.agent_tasks import AgentTasks
from jobs.reminder_tools import reminder_tools
from jobs.reminders import Reminders
from jobs.scheduler import StandaloneBackend
from jobs.schema import migrations as jobs_migrations
from jobs.settings import JobsSettings
from jobs.task_tools import task_tools
from memory.db import Database
from memory.embedder import HashingEmbedder
from memory.schema import migrations as memory_migrations
from memory.service import Memory
from memory.settings import MemorySettings

# The issue's tools and arguments, exactly (#16, "Built-in tools").
ISSUE = {
    "search_memory": {"query", "limit", "since", "until"},
    "remember": {"fact"},
    "forget_memory": {"id"},
    "create_reminder": {"when", "text"},
    "create_recurring_reminder": {"cron", "text"},
    "list_reminders": set(),
    "cancel_reminder": {"id"},
    "schedule_task": {"cron", "prompt"},
    "add_todo": {"text", "priority", "due"},
    "list_todos": set(),
    "complete_todo": {"id"},
    "current_time": set(),
    "fetch_url": {"url"},
}


@pytest.fixture
def registry(tmp_path: Path):
    """Every built-in tool, registered as the daemon registers them."""
    db = Database.open(
        tmp_path / "familiar.db", [memory_migrations, agent_migrations, jobs_migrations]
    )
    memory = Memory(db, HashingEmbedder(), MemorySettings(), tmp_path / "index")
    settings = ToolsSettings()
    backend = StandaloneBackend(ZoneInfo("UTC"))
    js = JobsSettings(timezone="UTC")

    async def nothing(*_: Any) -> None:
        return None

    reg = ToolRegistry(builtin_sources(memory, settings))
    reg.add(reminder_tools(Reminders(db, backend, js, nothing)))
    reg.add(task_tools(AgentTasks(db, backend, js, nothing)))
    for source in build_tool_sources(settings, db):
        reg.add(source)
    yield reg
    asyncio.run(memory.stop())
    db.close()


def keywords(schema: Any) -> set[str]:
    """Every keyword used at a schema position (not property names)."""
    if not isinstance(schema, dict):
        return set()
    found = set(schema)
    for sub in (schema.get("properties") or {}).values():
        found |= keywords(sub)
    return found | keywords(schema.get("items"))


def test_the_model_sees_the_issues_tools_sorted_without_validation_only_keywords(registry):
    defs = registry.definitions()
    assert [d.name for d in defs] == sorted(ISSUE)
    for d in defs:
        assert set(d.input_schema["properties"]) == ISSUE[d.name], d.name
        assert d.input_schema["type"] == "object"
        assert not keywords(d.input_schema) & VALIDATION_ONLY, d.name
    # the same objects every time: the definitions serialise identically (the cached prefix)
    assert json.dumps([d.input_schema for d in defs]) == json.dumps(
        [d.input_schema for d in registry.definitions()]
    )
    priority = next(d for d in defs if d.name == "add_todo").input_schema["properties"]
    assert priority["priority"]["enum"] == ["high", "normal", "low"]  # meaning stays


def test_the_loop_still_checks_what_the_model_is_not_shown(registry):
    cancel = registry.get("cancel_reminder")
    remember = registry.get("remember")
    assert "minimum" in json.dumps(cancel.spec.input_schema)  # the spec keeps the full schema
    assert registry.invalid(cancel, {"id": 0}) is not None
    assert registry.invalid(cancel, {"id": 3, "force": True}) is not None  # no extra arguments
    assert registry.invalid(remember, {"fact": "x" * 2001}) is not None
    assert registry.invalid(cancel, {"id": 3}) is None


def test_built_in_definitions_stay_small(registry):
    """They ride along in every prompt: 13 tools in at most 3,000 characters of JSON (4,364
    before the descriptions were cut to what the model needs and the validation-only keywords
    were left out; 2,799 after)."""
    size = sum(
        len(
            json.dumps(
                {"name": d.name, "description": d.description, "input_schema": d.input_schema}
            )
        )
        for d in registry.definitions()
    )
    assert size <= 3000, size


def test_model_schema_keeps_properties_named_like_keywords_and_schema_valued_keywords():
    schema = {
        "type": "object",
        "properties": {
            "minimum": {"type": "integer", "minimum": 0},  # a property, not a keyword
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 20}},
            "extra": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "required": ["minimum"],
        "additionalProperties": False,
    }
    assert model_schema(schema) == {
        "type": "object",
        "properties": {
            "minimum": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "extra": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "required": ["minimum"],
    }


def test_a_tool_whose_schema_changes_is_shown_the_new_schema():
    class Echo(Tool):
        def __init__(self, schema: dict[str, Any]) -> None:
            self.spec = ToolSpec("echo", "Echo.", schema)

        async def call(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
            return ToolResult("")

    source = StaticSource("s", [Echo({"type": "object", "properties": {"a": {"type": "string"}}})])
    reg = ToolRegistry([source])
    assert set(reg.definitions()[0].input_schema["properties"]) == {"a"}
    source._tools = [Echo({"type": "object", "properties": {"b": {"type": "string"}}})]
    assert set(reg.definitions()[0].input_schema["properties"]) == {"b"}


def test_the_default_core_names_built_in_tools_and_stays_under_300_tokens(registry):
    """Where the provider can search for tools, only ``tools.always_loaded`` rides along in every
    prompt (bench/agents_tools.py: the target of at most 10 % of effective input once cached
    needs them at about 300 tokens or less, at 4 characters a token)."""
    core = ToolsSettings().always_loaded
    split = ToolRegistry(registry.sources, always_loaded=core)
    shown = [d for d in split.definitions() if not d.deferred]
    assert sorted(d.name for d in shown) == sorted(core)  # no name that matches no tool
    size = sum(
        len(
            json.dumps(
                {"name": d.name, "description": d.description, "input_schema": d.input_schema}
            )
        )
        for d in shown
    )
    assert size <= 1200, size
    assert len(split.definitions()) == len(ISSUE)  # the rest is offered, deferred
