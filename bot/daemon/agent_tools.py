"""The composition root's part for the agent's tools: the one tool registry and loop, the jobs
package's tools (reminders, scheduled tasks), scheduled agent task runs, and the sweep that ends
confirmations nobody answered.

``build_services`` calls ``build_agent_tools`` before it builds the chat agent and
``wire_job_tools`` once reminders and the scheduler exist. ``familiar ask`` calls
``build_agent_tools`` too, so the shell answers with the same tools, policies and MCP servers
(not the jobs package's: a one-shot command has no scheduler or channel to deliver them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo

from loguru import logger

from agents.chat import ChatAgent
from agents.loop import ToolLoop
from agents.tools import builtin_sources
from agents.tools.base import ToolSource
from agents.tools.catalog import build_tool_sources
from agents.tools.registry import ToolRegistry
from bot.config import Settings
from bot.core.agent_commands import AgentCommands
from bot.core.transport import Transport
from bot.core.types import Sender
from jobs.agent_tasks import AgentTask, AgentTasks
from jobs.reminder_tools import reminder_tools
from jobs.reminders import Reminders
from jobs.scheduler import Backend, JobSpec, Scheduler, StandaloneBackend
from jobs.task_tools import task_tools
from memory.db import Database
from memory.errors import FamiliarError
from memory.service import Memory

Send = Callable[[int, str], Awaitable[None]]


@dataclass
class TaskChannel:
    """What scheduled task runs need of the channel; set when the channel is built."""

    transport: Transport | None = None
    # Whether (user id, chat id) may still use the assistant: a task whose owner has lost access
    # does not run (strangers never reach a model or a tool). None: everyone (the console).
    allowed: Callable[[int, int], bool] | None = None


def build_tool_loop(settings: Settings, db: Database, memory: Memory) -> ToolLoop:
    """The registry with the built-in families (policy and untrusted settings applied) and the
    loop over it; the jobs package's tools are added by ``wire_job_tools``."""
    tools = ToolRegistry(
        builtin_sources(memory, settings.tools),
        settings.tools.policy,
        settings.tools.untrusted,
        settings.tools.deferring,
    )
    return ToolLoop(tools, settings.tools, db, ZoneInfo(settings.jobs.timezone))


def build_agent_tools(
    settings: Settings, db: Database, memory: Memory
) -> tuple[ToolLoop, list[ToolSource]]:
    """The loop over the built-in families and every source of ``build_tool_sources`` (to-dos,
    MCP servers), in the order they are offered; the caller starts and stops those sources."""
    loop = build_tool_loop(settings, db, memory)
    sources = build_tool_sources(settings.tools, db)
    for source in sources:
        loop.registry.add(source)
    return loop, sources


def listed_builtin_sources(settings: Settings, db: Database) -> list[ToolSource]:
    """The built-in families the daemon registers besides the catalog's (memory, clock, web,
    reminders, tasks), built by the same factories over services that are never started: for
    ``familiar tools list`` to show their specs and policies, not to call them."""

    async def nothing(*_: object) -> None:
        raise FamiliarError("only the running daemon delivers reminders and runs tasks")

    backend = StandaloneBackend(ZoneInfo(settings.jobs.timezone))  # never started
    return [
        *builtin_sources(None, settings.tools),  # the memory tools only keep the object
        reminder_tools(Reminders(db, backend, settings.jobs, nothing)),
        task_tools(AgentTasks(db, backend, settings.jobs, nothing)),
    ]


def wire_job_tools(
    settings: Settings,
    db: Database,
    backend: Backend,
    scheduler: Scheduler,
    reminders: Reminders,
    loop: ToolLoop,
    agent: ChatAgent,
    agent_commands: AgentCommands,
    deliver_to: dict[str, Send],
    channel: TaskChannel,
) -> AgentTasks:
    """Reminder and task tools into the registry; scheduled tasks answered through the channel's
    transport (``channel``, set with the channel); the confirmation sweep."""
    admins = set(settings.telegram.admins)

    async def run_task(task: AgentTask, note: str | None) -> None:
        transport = channel.transport
        if transport is None:
            raise FamiliarError("no channel is up to run the scheduled task")
        user = task.user_id if task.user_id is not None else task.chat_id
        if channel.allowed is not None and not channel.allowed(user, task.chat_id):
            logger.info("task {} skipped: user {} may no longer use this chat", task.id, user)
            return
        header = f"🗓 Task #{task.id}: {task.prompt}" + (f"\n{note}" if note else "")
        sender = Sender(user, "", user in admins)
        await agent_commands.run_scheduled(
            task.chat_id, sender, task.prompt, header, transport, run_id=task.run_id
        )

    tasks = AgentTasks(db, backend, settings.jobs, run_task)
    loop.registry.add(reminder_tools(reminders))
    loop.registry.add(task_tools(tasks))

    async def expire_confirmations() -> str:
        """Calls that waited too long for the user's OK: say so; nothing was done."""
        expired = await agent.expire_waiting()
        send = deliver_to.get("send")
        for w in expired:
            if send is not None:
                await send(
                    w.chat_id,
                    f"⌛ I didn't get your OK in time, so I did nothing: {w.waiting_for}",
                )
        return f"{len(expired)} confirmation(s) expired"

    sweep_s = max(1.0, min(60.0, settings.tools.confirm_timeout_min * 30))
    scheduler.register(
        JobSpec(
            "tool_confirmations",
            expire_confirmations,
            every=timedelta(seconds=sweep_s),
            catch_up=False,
        )
    )
    return tasks
