"""The one place tools are registered: sources in, the tools offered to the model out.

The composition root adds every ``ToolSource`` (built-in families, the jobs package's reminder
tools, MCP servers) to one ``ToolRegistry``. The registry applies the policy settings
(``tools.policy.<name>`` overrides a tool's default; ``off`` is never offered; ``tools.untrusted``
adds tools whose results count as untrusted data), keeps the offered
set in a stable order (sorted by name, so the definitions serialise the same way every time and
stay in the provider's prompt cache), and validates arguments against each tool's JSON schema
with ``jsonschema``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from loguru import logger

from agents.providers.base import ToolDef
from agents.tools.base import Policy, Tool, ToolSource


class StaticSource(ToolSource):
    """A fixed family of tools (the built-in ones)."""

    def __init__(self, name: str, tools: Iterable[Tool]) -> None:
        self.name = name
        self._tools = list(tools)

    def tools(self) -> list[Tool]:
        return list(self._tools)


class ToolRegistry:
    def __init__(
        self,
        sources: Iterable[ToolSource] = (),
        policy: dict[str, Policy] | None = None,
        untrusted: Iterable[str] = (),
    ) -> None:
        self.sources: list[ToolSource] = list(sources)
        self.overrides: dict[str, Policy] = dict(policy or {})
        self.untrusted_names = set(untrusted)
        self._validators: dict[tuple[str, int], Draft202012Validator] = {}

    def add(self, source: ToolSource) -> None:
        self.sources.append(source)

    def policy(self, tool: Tool) -> Policy:
        return self.overrides.get(tool.spec.name, tool.spec.policy)

    def untrusted(self, tool: Tool) -> bool:
        """Whether the tool's results are untrusted data (its spec says so, or the settings)."""
        return tool.spec.untrusted or tool.spec.name in self.untrusted_names

    def all(self) -> list[Tool]:
        """Every tool of every source, the first of a name winning, sorted by name."""
        seen: dict[str, Tool] = {}
        for source in self.sources:
            for tool in source.tools():
                if tool.spec.name in seen:
                    logger.warning(
                        "tool {} of {} hides one of the same name", tool.spec.name, source.name
                    )
                    continue
                seen[tool.spec.name] = tool
        return [seen[name] for name in sorted(seen)]

    def offered(self) -> list[Tool]:
        return [t for t in self.all() if self.policy(t) != "off"]

    def get(self, name: str) -> Tool | None:
        """The offered tool of that name (None for unknown and ``off`` tools)."""
        return next((t for t in self.offered() if t.spec.name == name), None)

    def definitions(self) -> list[ToolDef]:
        return [
            ToolDef(t.spec.name, t.spec.description, t.spec.input_schema) for t in self.offered()
        ]

    def invalid(self, tool: Tool, args: dict[str, Any]) -> str | None:
        """Why ``args`` do not fit the tool's schema, or None when they do."""
        key = (tool.spec.name, id(tool.spec.input_schema))
        validator = self._validators.get(key)
        if validator is None:
            validator = self._validators[key] = Draft202012Validator(tool.spec.input_schema)
        error = best_match(validator.iter_errors(args))
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path)
        return f"{where + ': ' if where else ''}{error.message}"
