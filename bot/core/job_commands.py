"""Reminder, task and backup commands: /remind, /every, /reminders and /tasks (with signed delete
buttons), /backup."""

from __future__ import annotations

from collections.abc import Awaitable

from bot.core.assistant import Assistant
from bot.core.commands import Command
from bot.core.signing import ButtonSigner
from bot.core.transport import Transport
from bot.core.types import Button, ButtonPress, Incoming, Reply
from jobs.agent_tasks import AgentTasks
from jobs.errors import ReminderError
from jobs.reminders import Reminder, Reminders
from jobs.scheduler import Scheduler


class JobCommands:
    def __init__(
        self,
        scheduler: Scheduler,
        reminders: Reminders,
        signer: ButtonSigner,
        tasks: AgentTasks | None = None,
    ) -> None:
        self.scheduler, self.reminders, self.signer = scheduler, reminders, signer
        self.tasks = tasks

    def register(self, assistant: Assistant) -> None:
        add = assistant.commands.add
        add(
            Command(
                "remind",
                "Remind you once: in 20m, tomorrow 9:00, 2026-12-01 08:30",
                self.remind,
                "/remind WHEN TEXT",
                needs_args=True,
            )
        )
        add(
            Command(
                "every",
                "Remind you on a schedule (cron: minute hour day month weekday)",
                self.every,
                '/every "0 9 * * 1-5" TEXT',
                needs_args=True,
            )
        )
        add(
            Command(
                "reminders",
                "List this chat's reminders, with delete buttons",
                self.list,
                "/reminders",
            )
        )
        add(
            Command(
                "backup",
                "Make and verify a backup now (admins)",
                self.backup,
                "/backup",
                admin_only=True,
            )
        )
        assistant.buttons["rm"] = self.on_delete
        if self.tasks is not None:
            add(
                Command(
                    "tasks",
                    "List this chat's scheduled tasks (ask me to schedule one), with delete buttons",
                    self.list_tasks,
                    "/tasks",
                )
            )
            assistant.buttons["tk"] = self.on_delete_task

    async def remind(self, msg: Incoming, args: str, transport: Transport) -> Reply:
        """/remind WHEN TEXT"""
        return await self._add(self.reminders.add_once(msg.chat_id, msg.sender.id, args, msg.key))

    async def every(self, msg: Incoming, args: str, transport: Transport) -> Reply:
        """/every CRON TEXT"""
        return await self._add(self.reminders.add_every(msg.chat_id, msg.sender.id, args, msg.key))

    @staticmethod
    async def _add(adding: Awaitable[Reminder]) -> Reply:
        try:
            reminder = await adding
        except ReminderError as exc:  # the message carries examples of what works
            return Reply(exc.explain().replace("\n  fix: ", "\n"), markdown=False)
        return Reply(f"⏰ I'll remind you {reminder.describe()}", markdown=False)

    async def list(self, msg: Incoming, args: str, transport: Transport) -> Reply:
        """/reminders: each active reminder with a delete button."""
        active = await self.reminders.active(msg.chat_id)
        if not active:
            return Reply("No reminders here. /remind WHEN TEXT sets one.", markdown=False)
        lines = [f"#{r.id} {r.describe()}" for r in active]
        buttons = [
            [Button(f"🗑 #{r.id}", self.signer.data("rm", str(r.id), msg.chat_id))]
            for r in active[:20]
        ]
        return Reply("\n".join(lines), buttons=buttons, markdown=False)

    async def on_delete(self, press: ButtonPress, payload: str, transport: Transport) -> str:
        verified = self.signer.verify("rm", payload, press.chat_id)
        if verified is None or not verified.isdigit():
            return "This button isn't valid here."
        if await self.reminders.delete(press.chat_id, int(verified)):
            return f"Reminder #{verified} deleted."
        return "That reminder is already gone."

    async def list_tasks(self, msg: Incoming, args: str, transport: Transport) -> Reply:
        """/tasks: each scheduled agent task with a delete button."""
        assert self.tasks is not None
        active = await self.tasks.active(msg.chat_id)
        if not active:
            return Reply(
                "No scheduled tasks here. Ask me, e.g. “every weekday at 8, tell me which "
                "reminders are due today”.",
                markdown=False,
            )
        lines = [f"#{t.id} {t.describe()}" for t in active]
        buttons = [
            [Button(f"🗑 #{t.id}", self.signer.data("tk", str(t.id), msg.chat_id))]
            for t in active[:20]
        ]
        return Reply("\n".join(lines), buttons=buttons, markdown=False)

    async def on_delete_task(self, press: ButtonPress, payload: str, transport: Transport) -> str:
        assert self.tasks is not None
        verified = self.signer.verify("tk", payload, press.chat_id)
        if verified is None or not verified.isdigit():
            return "This button isn't valid here."
        if await self.tasks.delete(press.chat_id, int(verified)):
            return f"Task #{verified} deleted."
        return "That task is already gone."

    async def backup(self, msg: Incoming, args: str, transport: Transport) -> Reply:
        """/backup (admins): a verified backup now (once per message, however often replayed)."""
        if "backup" not in self.scheduler.jobs:
            return Reply(
                "Scheduled backups are off (jobs.backup_enabled = false), and /backup with them. "
                "`familiar backup` on the server makes a verified one, even while I run.",
                markdown=False,
            )
        trigger = f"manual {msg.key}" if msg.key else "manual"
        record = await self.scheduler.finished_run("backup", trigger) if msg.key else None
        if record is not None:
            return Reply(f"✅ {record.output}", markdown=False)
        await transport.send(msg.chat_id, Reply("Backing up…", markdown=False))
        record = await self.scheduler.run_now("backup", trigger=trigger)
        if record is None:
            return Reply("A backup is already running.", markdown=False)
        if record.outcome != "ok":
            return Reply(f"The backup failed: {record.error}", markdown=False)
        return Reply(f"✅ {record.output}", markdown=False)
