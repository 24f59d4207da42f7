"""Built-in tools over the chat's memory: ``search_memory``, ``remember``, ``forget_memory``.

Each acts in the scope of the chat and person the answer is for (``ToolContext``), through the
``Memory`` facade, as the /recall, /remember and /forget commands do. ``forget_memory`` asks the
person first (policy ``confirm``) and shows the text it would forget.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agents.tools.base import Tool, ToolContext, ToolError, ToolResult, ToolSpec
from agents.tools.registry import StaticSource
from memory import store
from memory.errors import FamiliarError
from memory.store import Filters
from memory.types import Scope

SEARCH_LIMIT = 20


def _scope(ctx: ToolContext) -> Scope:
    return Scope(ctx.chat_id, ctx.user_id)


def _snippet(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _date(value: str | None, name: str, ctx: ToolContext) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ToolError(f"{name} must be an ISO-8601 date such as 2026-03-01") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=ctx.tz)


class SearchMemory(Tool):
    spec = ToolSpec(
        "search_memory",
        "Search this chat's memory; hits have id, date, kind, text. since/until: ISO dates.",
        {
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 1},
                "limit": {"type": "integer", "minimum": 1, "maximum": SEARCH_LIMIT},
                "since": {"type": "string"},
                "until": {"type": "string"},
            },
            "required": ["query"],
            "additionalProperties": False,
        },
        read_only=True,
        activity="🔎 searching memory…",
    )

    def __init__(self, memory: Any) -> None:
        self.memory = memory  # memory.service.Memory

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        since = _date(args.get("since"), "since", ctx)
        until = _date(args.get("until"), "until", ctx)
        hits = await self.memory.search(
            args["query"], _scope(ctx), k=args.get("limit", 8), since=since, until=until
        )
        if not hits:
            return ToolResult("No memories match.", data=[])
        lines = [f"#{h.id} [{h.ts:%Y-%m-%d}, {h.kind}] {_snippet(h.text)}" for h in hits]
        return ToolResult("\n".join(lines), data=[h.as_dict() for h in hits])


class Remember(Tool):
    spec = ToolSpec(
        "remember",
        "Store a lasting fact about the user, one sentence.",
        {
            "type": "object",
            "properties": {"fact": {"type": "string", "minLength": 1, "maxLength": 2000}},
            "required": ["fact"],
            "additionalProperties": False,
        },
        activity="📌 remembering…",
    )

    def __init__(self, memory: Any) -> None:
        self.memory = memory

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        try:
            result = await self.memory.add_fact(args["fact"], _scope(ctx), source="agent")
        except FamiliarError as exc:
            raise ToolError(f"could not remember that: {exc}") from exc
        if result.action == "duplicate":
            return ToolResult(f"Already known as #{result.id}.", data=result.id)
        if result.action == "superseded":
            return ToolResult(
                f"Stored as #{result.id}, replacing #{result.superseded_id}.", data=result.id
            )
        return ToolResult(f"Remembered as #{result.id}.", data=result.id)


class ForgetMemory(Tool):
    spec = ToolSpec(
        "forget_memory",
        "Delete a memory by id (from search_memory); the user confirms.",
        {
            "type": "object",
            "properties": {"id": {"type": "integer", "minimum": 1}},
            "required": ["id"],
            "additionalProperties": False,
        },
        policy="confirm",
        activity="🗑 forgetting…",
    )

    def __init__(self, memory: Any) -> None:
        self.memory = memory

    def describe(self, args: dict[str, Any]) -> str:
        return f"Forget memory #{args.get('id')}"

    async def confirm_text(self, args: dict[str, Any], ctx: ToolContext) -> str:
        memory_id = int(args["id"])
        rows = await self.memory.db.run(
            store.rows_by_id, self.memory.db, [memory_id], Filters(_scope(ctx))
        )
        row = rows.get(memory_id)
        if row is None:
            return f"Forget memory #{memory_id} (there is no such memory of yours here)"
        return f"Forget memory #{memory_id}: “{_snippet(row.text, 200)}”"

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        if await self.memory.forget(int(args["id"]), _scope(ctx)):
            return ToolResult(f"Forgotten #{args['id']}.")
        raise ToolError(f"there is no memory #{args['id']} of this user in this chat")


def memory_tools(memory: Any) -> StaticSource:
    return StaticSource("memory", [SearchMemory(memory), Remember(memory), ForgetMemory(memory)])
