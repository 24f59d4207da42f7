"""The one place tools are registered: sources in, the tools offered to the model out.

The composition root adds every ``ToolSource`` (built-in families, the jobs package's reminder
tools, MCP servers) to one ``ToolRegistry``. The registry applies the policy settings
(``tools.policy.<name>`` overrides a tool's default; ``off`` is never offered; ``tools.untrusted``
adds tools whose results count as untrusted data), keeps the offered
set in a stable order (sorted by name, so the definitions serialise the same way every time and
stay in the provider's prompt cache), and validates arguments against each tool's JSON schema
with ``jsonschema``.

The definitions ride along in every prompt (read from the cache at a tenth of the price, but on
every call), so what the model is shown is the schema less the keywords that only bound values
(``model_schema``): the loop still validates every call against the full schema and answers a
violation with an error the model can correct (bench/agents_tools.py measures the cost).

Fewer definitions ride along at all where the provider can search for tools: every tool not
named in ``always_loaded`` is marked ``deferred`` (MCP tools too, unless named there), and such
a provider leaves those out of the prompt; the model finds one when a message needs it. Deferred
or not, a tool is offered, validated, policy-checked and recorded alike. ``always_loaded`` None
defers nothing (``tools.tool_search`` off).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from loguru import logger

from agents.providers.base import ToolDef
from agents.tools.base import Policy, Tool, ToolSource

# Keywords that bound a value without saying what it is: checked on every call, not worth their
# tokens in every prompt. Names, types, enums, required and descriptions stay.
VALIDATION_ONLY = frozenset(
    {"additionalProperties", "minLength", "maxLength", "minimum", "maximum", "$schema"}
)


def model_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema as the model is shown it: ``VALIDATION_ONLY`` keywords left out of the object
    and of its properties' and items' schemas (never a property that happens to carry one of
    those names)."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in VALIDATION_ONLY and not (key == "additionalProperties" and value is not False):
            continue
        if key == "properties" and isinstance(value, dict):
            value = {
                name: model_schema(sub) if isinstance(sub, dict) else sub
                for name, sub in value.items()
            }
        elif key == "items" and isinstance(value, dict):
            value = model_schema(value)
        out[key] = value
    return out


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
        always_loaded: Iterable[str] | None = None,
    ) -> None:
        self.sources: list[ToolSource] = list(sources)
        self.always_loaded = None if always_loaded is None else frozenset(always_loaded)
        self.overrides: dict[str, Policy] = dict(policy or {})
        self.untrusted_names = set(untrusted)
        self._validators: dict[tuple[str, int], Draft202012Validator] = {}
        # name -> (the spec's schema, what the model is shown of it)
        self._shown: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}

    def add(self, source: ToolSource) -> None:
        self.sources.append(source)

    def policy(self, tool: Tool) -> Policy:
        return self.overrides.get(tool.spec.name, tool.spec.policy)

    def policy_from(self, tool: Tool) -> str:
        """Where ``policy(tool)`` comes from: the settings' override, or the tool's default."""
        if tool.spec.name in self.overrides:
            return f"tools.policy.{tool.spec.name}"
        return tool.spec.policy_from

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

    def deferred(self, tool: Tool) -> bool:
        """Whether the tool's definition waits for the model to search for it."""
        return self.always_loaded is not None and tool.spec.name not in self.always_loaded

    def definitions(self) -> list[ToolDef]:
        return [
            ToolDef(t.spec.name, t.spec.description, self._shown_schema(t), self.deferred(t))
            for t in self.offered()
        ]

    def _shown_schema(self, tool: Tool) -> dict[str, Any]:
        schema = tool.spec.input_schema
        cached = self._shown.get(tool.spec.name)
        if cached is None or cached[0] is not schema:  # new, or re-listed by its MCP server
            cached = self._shown[tool.spec.name] = (schema, model_schema(schema))
        return cached[1]

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
