"""Reminder tools for the agent: ``create_reminder``, ``create_recurring_reminder``,
``list_reminders``, ``cancel_reminder``.

They live in jobs/ because reminders do (jobs imports agents, never the reverse): the composition
root hands ``reminder_tools(reminders)`` to the one ``ToolRegistry`` with the built-in families.
Times are read as /remind and /every read them, with the same errors (which carry examples, so
the model can correct itself). ``cancel_reminder`` asks the person first.
"""

from __future__ import annotations

from typing import Any

from agents.tools.base import Tool, ToolContext, ToolError, ToolResult, ToolSpec
from agents.tools.registry import StaticSource
from jobs.errors import ReminderError
from jobs.reminders import Reminders
from jobs.remindparse import every_with

_TEXT = {"type": "string", "minLength": 1, "maxLength": 1000}


def _explain(exc: ReminderError) -> ToolError:
    return ToolError(exc.explain().replace("\n  fix: ", "; "))


class _ReminderTool(Tool):
    def __init__(self, reminders: Reminders) -> None:
        self.reminders = reminders


def _create_spec(name: str, description: str, schedule: str) -> ToolSpec:
    """The spec of a tool that sets a reminder from a ``schedule`` string and a ``text``."""
    return ToolSpec(
        name,
        description,
        {
            "type": "object",
            "properties": {schedule: {"type": "string", "minLength": 1}, "text": _TEXT},
            "required": [schedule, "text"],
            "additionalProperties": False,
        },
        activity="⏰ setting a reminder…",
    )


class CreateReminder(_ReminderTool):
    spec = _create_spec(
        "create_reminder",
        "Remind once. when: 'in 20m', 'tomorrow 9:00' or ISO-8601 (chat's time zone).",
        "when",
    )

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        try:
            r = await self.reminders.add_at(ctx.chat_id, ctx.user_id, args["when"], args["text"])
        except ReminderError as exc:
            raise _explain(exc) from exc
        return ToolResult(f"Reminder #{r.id} set for {r.describe()}", data=r.id)


class CreateRecurringReminder(_ReminderTool):
    spec = _create_spec(
        "create_recurring_reminder",
        "Remind on a schedule. cron: 5-field crontab or @daily, e.g. '0 9 * * 1-5'.",
        "cron",
    )

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        try:
            cron, text = every_with(args["cron"], args["text"], self.reminders.tz)
            r = await self.reminders.add_every(ctx.chat_id, ctx.user_id, f"{cron} {text}")
        except ReminderError as exc:
            raise _explain(exc) from exc
        return ToolResult(f"Reminder #{r.id} set: {r.describe()}", data=r.id)


class ListReminders(_ReminderTool):
    spec = ToolSpec(
        "list_reminders",
        "Active reminders with ids.",
        {"type": "object", "properties": {}, "additionalProperties": False},
        read_only=True,
        activity="⏰ looking at reminders…",
    )

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        active = await self.reminders.active(ctx.chat_id)
        if not active:
            return ToolResult("No active reminders.", data=[])
        return ToolResult("\n".join(f"#{r.id} {r.describe()}" for r in active), data=active)


class CancelReminder(_ReminderTool):
    spec = ToolSpec(
        "cancel_reminder",
        "Cancel a reminder by id (from list_reminders); the user confirms.",
        {
            "type": "object",
            "properties": {"id": {"type": "integer", "minimum": 1}},
            "required": ["id"],
            "additionalProperties": False,
        },
        policy="confirm",
        activity="🗑 cancelling the reminder…",
    )

    def describe(self, args: dict[str, Any]) -> str:
        return f"Cancel reminder #{args.get('id')}"

    async def confirm_text(self, args: dict[str, Any], ctx: ToolContext) -> str:
        r = await self.reminders.get(ctx.chat_id, int(args["id"]))
        if r is None:
            return f"Cancel reminder #{args['id']} (there is no such reminder here)"
        return f"Cancel reminder #{r.id}: {r.describe()}"

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        if await self.reminders.delete(ctx.chat_id, int(args["id"])):
            return ToolResult(f"Reminder #{args['id']} cancelled.")
        raise ToolError(f"there is no active reminder #{args['id']} in this chat")


def reminder_tools(reminders: Reminders) -> StaticSource:
    return StaticSource(
        "reminders",
        [
            CreateReminder(reminders),
            CreateRecurringReminder(reminders),
            ListReminders(reminders),
            CancelReminder(reminders),
        ],
    )
