"""The ``current_time`` tool: now, in the chat's time zone."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from agents.tools.base import Tool, ToolContext, ToolResult, ToolSpec
from agents.tools.registry import StaticSource


class CurrentTime(Tool):
    spec = ToolSpec(
        "current_time",
        "Now: date, time, weekday (chat's time zone).",
        {"type": "object", "properties": {}, "additionalProperties": False},
        read_only=True,
        activity="🕰 checking the time…",
    )

    def __init__(self, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.now = now

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        local = self.now().astimezone(ctx.tz)
        return ToolResult(
            f"{local:%A %Y-%m-%d %H:%M} ({ctx.tz.key}, UTC{local:%z})", data=local.isoformat()
        )


def clock_tools() -> StaticSource:
    return StaticSource("clock", [CurrentTime()])
