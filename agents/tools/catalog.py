"""Where the tools come from: the one place that builds every ``ToolSource`` (built-in families
and MCP servers), for the daemon and ``familiar tools``.

Built-in families are added here as they are written; the order of the sources is the order the
tools are offered in, so it stays fixed (tool definitions are part of the cached prompt prefix).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from loguru import logger

from agents.tools.base import Tool, ToolSource
from agents.tools.settings import ToolsSettings
from agents.tools.todos import TodoStore, TodoTools
from memory.db import Database

if TYPE_CHECKING:
    from agents.tools.mcp import MCPServerSource

MCP_PREFIX = "mcp:"


def build_tool_sources(tools: ToolsSettings, db: Database) -> list[ToolSource]:
    """Every tool source, built-in families first, then one per configured MCP server."""
    sources: list[ToolSource] = [TodoTools(TodoStore(db))]
    if tools.mcp:  # the SDK takes seconds to import: only when a server is configured
        from agents.tools.mcp import MCPServerSource

        sources += [MCPServerSource(server, tools) for server in tools.mcp]
    return sources


def mcp_sources(sources: Sequence[ToolSource]) -> list[MCPServerSource]:
    return [cast("MCPServerSource", s) for s in sources if s.name.startswith(MCP_PREFIX)]


def all_tools(sources: Sequence[ToolSource]) -> list[Tool]:
    """The tools offered now, in source order; a name taken already is skipped, with a warning."""
    seen: dict[str, Tool] = {}
    for source in sources:
        for tool in source.tools():
            if tool.spec.name in seen:
                logger.warning(
                    "tool {} of {} is shadowed by one of {}",
                    tool.spec.name,
                    source.name,
                    seen[tool.spec.name].spec.source,
                )
                continue
            seen[tool.spec.name] = tool
    return list(seen.values())
