"""The ``schedule_task`` tool: a scheduled agent task (``jobs.agent_tasks``) from a conversation."""

from __future__ import annotations

from typing import Any

from agents.tools.base import Tool, ToolContext, ToolError, ToolResult, ToolSpec
from agents.tools.registry import StaticSource
from jobs.agent_tasks import MAX_PROMPT, AgentTasks
from jobs.errors import ReminderError


class ScheduleTask(Tool):
    spec = ToolSpec(
        "schedule_task",
        "At each cron time, answer prompt with tools and send it here (e.g. a daily briefing).",
        {
            "type": "object",
            "properties": {
                "cron": {"type": "string", "minLength": 1},
                "prompt": {"type": "string", "minLength": 1, "maxLength": MAX_PROMPT},
            },
            "required": ["cron", "prompt"],
            "additionalProperties": False,
        },
        activity="🗓 scheduling the task…",
    )

    def __init__(self, tasks: AgentTasks) -> None:
        self.tasks = tasks

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        try:
            task = await self.tasks.add(ctx.chat_id, ctx.user_id, args["cron"], args["prompt"])
        except ReminderError as exc:
            raise ToolError(exc.explain().replace("\n  fix: ", "; ")) from exc
        return ToolResult(f"Task #{task.id} scheduled: {task.describe()}", data=task.id)


def task_tools(tasks: AgentTasks) -> StaticSource:
    return StaticSource("tasks", [ScheduleTask(tasks)])
