"""The tool interface: what the agent loop sees of a built-in tool or an MCP server's tool.

A ``Tool`` has a ``ToolSpec`` (its name, a description for the model, a JSON schema for its
arguments, and how it may be used) and one coroutine, ``call``. The loop validates arguments
against the schema, applies the policy (``auto`` runs, ``confirm`` asks the person first,
``off`` is never offered), runs the call with a timeout and records it; a tool only does its
work. A ``ToolSource`` offers a changing set of tools (an MCP server connects, dies, changes its
list); built-in families are static sources.

Errors: a tool raises ``ToolError`` with a message meant for the model ("no reminder #12");
anything else it raises is caught by the loop, logged with its traceback, and reported to the
model as a failed call. Neither ever leaves the loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

Policy = Literal["auto", "confirm", "off"]


class ToolError(Exception):
    """A tool could not do what was asked; the message goes back to the model."""


@dataclass(frozen=True)
class ToolSpec:
    name: str  # ^[a-zA-Z0-9_-]{1,64}$ (what both Anthropic and OpenAI accept); MCP: server__tool
    description: str
    input_schema: dict[str, Any]  # a JSON schema of type "object"
    # The default policy; settings may override it per tool (tools.policy.<name>).
    policy: Policy = "auto"
    # Where the default comes from, for people (`familiar tools list`): "default" for a built-in
    # tool, the server's allow/confirm lists for an MCP tool.
    policy_from: str = "default"
    # Changes nothing (search, list, read the time): may run concurrently with other read-only
    # calls, and never needs the confirmation that an untrusted result imposes on later calls.
    read_only: bool = False
    # Its results come from outside (a web page, an MCP server): they reach the model delimited
    # and labelled as data, and once one has entered an answer, every later call in that answer
    # that changes anything asks the person first.
    untrusted: bool = False
    source: str = "builtin"  # "builtin" or "mcp:<server name>"
    # What the streamed message shows while the call runs, e.g. "🔎 searching memory…".
    activity: str = ""


@dataclass(frozen=True)
class ToolContext:
    """Who the call is for. Tools act only within this chat's scope."""

    chat_id: int
    user_id: int
    is_admin: bool = False
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    answer_id: int | None = None  # the answer the call belongs to, once it has an id


@dataclass(frozen=True)
class ToolResult:
    content: str
    is_error: bool = False
    # Structured data for callers other than the model (tests, ``familiar tools call``).
    data: Any = None


class Tool(ABC):
    spec: ToolSpec

    @abstractmethod
    async def call(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        """Do the work. ``args`` has already been validated against ``spec.input_schema``."""

    def describe(self, args: dict[str, Any]) -> str:
        """The call in plain words, for a confirmation ("Delete memory #12: 'my old job…'?")."""
        shown = ", ".join(f"{k}={v!r}" for k, v in args.items())
        return f"{self.spec.name}({shown})"

    async def confirm_text(self, args: dict[str, Any], ctx: ToolContext) -> str:
        """What the confirmation shows; a tool that can say more from the chat's data (the text
        of the memory it would delete) overrides this. Defaults to ``describe``."""
        return self.describe(args)


class ToolSource(ABC):
    """A set of tools that may change while the daemon runs."""

    name: str = "source"

    @abstractmethod
    def tools(self) -> list[Tool]:
        """The tools offered now, in a stable order (tool definitions are part of the cached
        prompt prefix, so the same set must serialise the same way every time)."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect in the background; must not delay the daemon's readiness."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Disconnect."""
