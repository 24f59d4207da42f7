"""The service graph: every service built once, in dependency order, and handed down.

``build_services`` is the composition root's body: the daemon calls it with an open database and
its lifecycle; tests call it the same way with a temp data directory. Services are added to the
lifecycle in the order they must start (memory, model, jobs, then the channel last, so nothing
answers before what it needs is there) and stop in reverse.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

from loguru import logger

from agents.chat import ChatAgent, LLMFactExtractor
from agents.fact_judge import LLMFactJudge
from agents.llm import LLM
from agents.providers import health_checks as llm_health_checks
from agents.review import ReviewEngine
from agents.review_runs import ReviewRuns
from agents.summarise import LLMSummariser
from agents.tools.base import ToolSource
from agents.tools.catalog import mcp_sources
from agents.tools.registry import ToolRegistry
from agents.tools.todos import TodoStore
from agents.tools.web import fetch_limits
from agents.usage import UsageStore
from agents.voice import Transcriber, build_transcriber
from bot import __version__
from bot.config import Settings, secret_field_paths
from bot.core.agent_commands import AgentCommands
from bot.core.assistant import Assistant
from bot.core.chat_modes import SqliteChatModes
from bot.core.commands import Command
from bot.core.documents import DocumentDesk
from bot.core.drafts import AnswerDrafts
from bot.core.feedback import Feedback, FeedbackStore
from bot.core.job_commands import JobCommands
from bot.core.memory_commands import MemoryCommands
from bot.core.personas import ChatPersonas, PersonaCommands, PersonaRouter
from bot.core.photos import PhotoDesk
from bot.core.signing import ButtonSigner
from bot.core.todo_commands import TodoCommands
from bot.core.transport import Transport
from bot.core.types import Incoming, Reply
from bot.daemon.agent_tools import TaskChannel, build_agent_tools, wire_job_tools
from bot.daemon.lifecycle import FunctionService, Lifecycle
from bot.daemon.training import Training, adapter_registry, build_llm_provider, build_training
from bot.telegram.access import prune_audit
from bot.telegram.transport import in_topic, topic_of
from jobs.agent_tasks import AgentTasks
from jobs.backup_job import BackupService
from jobs.digest import register_digest_jobs
from jobs.health import HealthWatch, StorageWatch
from jobs.reminders import Reminder, Reminders
from jobs.scheduler import JobQueueBackend, JobSpec, Scheduler
from jobs.summarize import HourlySummarizer
from memory.db import Database, storage_fault
from memory.embedder import make_embedder
from memory.errors import FamiliarError
from memory.health import HealthRegistry, storage_check
from memory.images import ImageStore
from memory.service import Memory

INDEX_DIR = "index"
Send = Callable[[int, str], Awaitable[None]]


@dataclass
class AdminNotifier:
    """Sends a line to every admin through whichever channel is up; logs it in any case."""

    admins: list[int]
    send: Send | None = None
    sent: list[str] = field(default_factory=list)
    # Pictures (the digest's chart): set by a channel that can show them.
    send_photo: Callable[[int, bytes, str], Awaitable[None]] | None = None

    async def __call__(self, text: str) -> None:
        logger.warning("admin notice: {}", text.splitlines()[0][:200] if text else "")
        self.sent.append(text)
        for admin in self.admins:
            await self._send(admin, text)

    async def to(self, chat_id: int, text: str) -> None:
        """One admin's own copy (the digest: its to-dos are that admin's chat's alone)."""
        logger.info("admin notice to {}: {}", chat_id, text.splitlines()[0][:200] if text else "")
        self.sent.append(text)
        await self._send(chat_id, text)

    async def _send(self, admin: int, text: str) -> None:
        if self.send is None:
            return
        try:
            await self.send(admin, text)
        except Exception:  # one unreachable admin must not stop the others
            logger.opt(exception=True).warning("could not notify admin {}", admin)

    async def photo(self, data: bytes, caption: str) -> None:
        if self.send_photo is None:
            return
        for admin in self.admins:
            try:
                await self.send_photo(admin, data, caption)
            except Exception:
                logger.opt(exception=True).warning("could not send a picture to admin {}", admin)


@dataclass
class Services:
    assistant: Assistant
    memory: Memory
    agent: ChatAgent
    llm: LLM
    scheduler: Scheduler
    reminders: Reminders
    backups: BackupService
    notify_admins: AdminNotifier
    # Where reminders go: set by the channel once it is built ("send": chat id, text).
    deliver_to: dict[str, Send] = field(default_factory=dict)
    # Voice notes: one engine for the process, loaded on the first recording, closed at stop.
    transcriber: Transcriber | None = None
    # /train: its progress messages are edited through the channel's transport (set with the channel).
    training: Training | None = None
    # The agent's tools (built-in families, MCP servers), in the order they are offered.
    tools: list[ToolSource] = field(default_factory=list)
    # Scheduled agent tasks answer through the channel (its transport and access), set with it.
    channel: TaskChannel = field(default_factory=TaskChannel)
    tasks: AgentTasks | None = None
    tool_registry: ToolRegistry | None = None
    # Documents and links people send: read into memory, answered with them in view.
    documents: DocumentDesk | None = None
    # Photos people send: kept under <data dir>/images, described once, answered with vision.
    photos: PhotoDesk | None = None


def build_job_queue(settings: Settings) -> JobQueueBackend:
    """PTB's JobQueue (the process's one APScheduler), on an Application that never polls; the
    backend holds the application (the queue itself only has a weak reference to it)."""
    from zoneinfo import ZoneInfo

    from telegram.ext import Application

    token = settings.telegram.token.get_secret_value() if settings.telegram.token else "0:console"
    app = Application.builder().token(token).updater(None).build()
    assert app.job_queue is not None, "python-telegram-bot was installed without [job-queue]"
    app.job_queue.scheduler.configure(timezone=ZoneInfo(settings.jobs.timezone))
    return JobQueueBackend(app)


def build_services(
    settings: Settings,
    db: Database,
    health: HealthRegistry,
    lifecycle: Lifecycle,
    *,
    started_at: float,
) -> Services:
    data_dir = settings.data_dir
    notify_admins = AdminNotifier(list(settings.telegram.admins))

    # memory: the embedding model and the index load in the background after start
    embedder = make_embedder(
        settings.memory.embedding_model,
        settings.memory.embedding_batch_size,
        settings.memory.embedding_threads,
        trace=settings.memory.embedding_traced,
        query_int8=settings.memory.embedding_query_int8,
    )
    registry = adapter_registry(
        data_dir
    )  # trained adapters: served by the local provider, /persona
    provider = build_llm_provider(settings, registry)
    usage = UsageStore(db, settings.llm)
    llm = LLM(provider, usage, on_admin_alert=notify_admins)
    summariser = LLMSummariser(llm)
    memory = Memory(
        db,
        embedder,
        settings.memory,
        data_dir / INDEX_DIR,
        summariser=summariser,
        fact_judge=LLMFactJudge(llm),
        tz=ZoneInfo(settings.jobs.timezone),
    )
    lifecycle.add(FunctionService("memory", memory.start, memory.stop))
    for name, check in memory.health_checks().items():
        health.register(name, check)

    # agents; tools: the built-in families here, the jobs package's below, all in one registry
    review = ReviewEngine(llm, settings.review, settings.llm, db)
    personas = PersonaRouter(
        ChatPersonas(db), registry, provider, settings.llm, usage, notify_admins
    )
    tool_loop, tool_sources = build_agent_tools(settings, db, memory)  # to-dos, MCP servers too
    agent = ChatAgent(
        memory,
        llm,
        settings.llm,
        review,
        LLMFactExtractor(llm),
        route=personas,
        db=db,
        tools=tool_loop,
    )
    for name, check in llm_health_checks(provider).items():
        health.register(name, check)

    async def stop_agents() -> None:
        if agent_commands.tool_buttons is not None:
            await agent_commands.tool_buttons.drain()
        await agent.drain()
        await llm.aclose()

    lifecycle.add(FunctionService("agents", stop=stop_agents))
    transcriber = build_transcriber(settings.voice)

    async def stop_voice() -> None:
        await asyncio.to_thread(transcriber.close)  # ends the engine's worker process, if any

    lifecycle.add(FunctionService("voice", stop=stop_voice))

    # tools: MCP servers connect in the background; start() never waits for them
    if mcp_sources(tool_sources):
        from agents.tools.mcp import mcp_health_check  # the SDK: imported only when used

        health.register("mcp", mcp_health_check(mcp_sources(tool_sources)))

    async def start_tools() -> None:
        for source in tool_sources:
            await source.start()

    async def stop_tools() -> None:
        for source in tool_sources:
            await source.stop()

    lifecycle.add(FunctionService("tools", start_tools, stop_tools))

    # the assistant core and its commands
    assistant = Assistant(health, started_at=started_at)
    signer = ButtonSigner(FeedbackStore(db).key())
    memory_commands = MemoryCommands(memory, settings.llm.context_tokens)
    memory_commands.register(assistant)
    agent_commands = AgentCommands(
        agent,
        review,
        usage,
        signer,
        SqliteChatModes(db),
        AnswerDrafts(db),
        edit_window_s=settings.telegram.edit_answer_window_s,
    )
    agent_commands.register(assistant)
    PersonaCommands(personas, settings.llm.persona, settings.llm.provider).register(assistant)
    TodoCommands(TodoStore(db), signer, ZoneInfo(settings.jobs.timezone)).register(assistant)
    documents = DocumentDesk(memory, assistant, fetch_limits(settings.tools))
    documents.register()
    photos = PhotoDesk(
        memory, ImageStore(settings.data_dir / "images"), assistant, llm, settings.media
    )
    memory_commands.after_forget.append(photos.forget_files)

    # jobs, on PTB's JobQueue
    js = settings.jobs
    backend = build_job_queue(settings)
    scheduler = Scheduler(db, backend, js, notify_admins)
    config_file = settings.config_file if settings.config_file.is_file() else None
    backups = BackupService(
        js, data_dir, config_file, __version__, notify_admins, secret_field_paths()
    )
    audit_days = settings.telegram.audit_keep_days

    async def prune_access_audit() -> str:
        removed = await db.run(prune_audit, db, audit_days * 86400.0)
        return f"{removed} access audit row(s) older than {audit_days} days removed"

    backups.housekeeping += [prune_access_audit, scheduler.prune_runs, tool_loop.prune]
    if js.backup_enabled:
        scheduler.register(JobSpec("backup", backups.run, cron=js.backup_cron, timeout_s=3 * 3600))
    else:  # the daily pruning still runs, at the same time
        scheduler.register(JobSpec("housekeeping", backups.housekeep, cron=js.backup_cron))
    register_digest_jobs(
        scheduler,
        js,
        db,
        memory=memory,
        llm=llm,
        notify_admins=notify_admins,
        backup_age=backups.newest_age_hours,
        photo_admins=notify_admins.photo,
    )
    if js.summarize_enabled:
        summarizer = HourlySummarizer(db, memory, summariser, js)
        scheduler.register(
            JobSpec("summarize", summarizer.run, cron=f"{js.summarize_minute} * * * *")
        )
    scheduler.register(
        JobSpec(
            "health",
            HealthWatch(
                health, notify_admins, db, grace_s=js.health_grace_s, started_at=started_at
            ).run,
            every=timedelta(seconds=js.health_interval_s),
            catch_up=False,
        )
    )
    health.register("jobs", scheduler.health_check)
    health.register("backup", backups.health_check)

    deliver_to: dict[str, Send] = {}
    background: set[asyncio.Task[object]] = set()
    loop: asyncio.AbstractEventLoop | None = None

    async def deliver(reminder: Reminder, note: str | None) -> None:
        text = f"⏰ {reminder.text}" + (f"\n{note}" if note else "")  # the note has its brackets
        send = deliver_to.get("send")
        if send is None:
            raise FamiliarError("no channel is up to deliver the reminder")
        with in_topic(reminder.chat_id, reminder.topic):  # where in the chat it was set
            await send(reminder.chat_id, text)

    reminders = Reminders(db, backend, js, deliver, place=topic_of)
    channel = TaskChannel()
    tasks = wire_job_tools(
        settings,
        db,
        backend,
        scheduler,
        reminders,
        tool_loop,
        agent,
        agent_commands,
        deliver_to,
        channel,
    )
    JobCommands(scheduler, reminders, signer, tasks).register(assistant)
    memory_commands.also_forget += [
        tool_loop.forget_user,
        tasks.forget_user,
        reminders.forget_user,
        TodoStore(db).forget_user,
        FeedbackStore(db).forget_user,
        ReviewRuns(db).forget_user,
        photos.forget_files,  # last: the files no memory row names any more
    ]

    def health_now(trigger: str) -> None:
        task = asyncio.create_task(scheduler.run_now("health", trigger=trigger), name="health-now")
        background.add(task)
        task.add_done_callback(background.discard)

    def storage_back() -> None:
        health_now("storage ok")
        if memory.warm_error is not None and storage_fault(memory.warm_error) is not None:
            task = asyncio.create_task(memory.retry_warm(), name="memory-rewarm")
            background.add(task)
            task.add_done_callback(background.discard)

    def storage_changed(fault: str | None) -> None:
        """A write failed for a storage reason, or writing works again (database thread):
        run the health job now, so admins hear once, without waiting for its interval; once
        writing works again, a memory warm-up the fault broke is tried again."""
        if loop is not None:
            if fault is None:
                loop.call_soon_threadsafe(storage_back)
            else:
                loop.call_soon_threadsafe(health_now, "storage fault")

    storage = StorageWatch(
        storage_check(db, data_dir),
        js.storage_probe_s,
        lambda result: health_now(f"storage {result.status.name.lower()}"),
    )

    async def start_jobs() -> None:
        nonlocal loop
        loop = asyncio.get_running_loop()
        db.fault_listeners.append(storage_changed)
        await scheduler.start()
        await reminders.start()
        await tasks.start()
        watch = asyncio.create_task(storage.run(), name="storage-watch")
        background.add(watch)
        watch.add_done_callback(background.discard)
        # A first health snapshot now, for `familiar health`, rather than one interval later.
        first = asyncio.create_task(
            scheduler.run_now("health", trigger="start"), name="health-at-start"
        )
        background.add(first)
        first.add_done_callback(background.discard)

    async def stop_jobs() -> None:
        if storage_changed in db.fault_listeners:
            db.fault_listeners.remove(storage_changed)
        for task in list(background):
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await scheduler.stop()

    lifecycle.add(FunctionService("jobs", start_jobs, stop_jobs))

    # the adapter pipeline: /train, /adapters, the job runner and its worker processes
    training = build_training(
        settings,
        db,
        llm=llm,
        review=review,
        registry=registry,
        embed=embedder.embed,
        assistant=assistant,
        signer=signer,
    )
    lifecycle.add(training.loop)
    return Services(
        assistant,
        memory,
        agent,
        llm,
        scheduler,
        reminders,
        backups,
        notify_admins,
        deliver_to,
        transcriber,
        training,
        tool_sources,
        channel,
        tasks,
        tool_loop.registry,
        documents,
        photos=photos,
    )


def attach_channel(
    services: Services,
    lifecycle: Lifecycle,
    channel: str,
    settings: Settings,
    db: Database,
    health: HealthRegistry,
    *,
    fail: Callable[[FamiliarError], None],
    request_stop: Callable[[], None],
    stdin: TextIO | None,
    stdout: TextIO | None,
) -> None:
    """The channel starts last: it is what lets people in."""
    deliver_to = services.deliver_to
    if channel == "console":
        from bot.console import ConsoleChannel

        console = ConsoleChannel(
            services.assistant,
            request_stop,
            stdin,
            stdout,
            files_dir=Path(settings.data_dir) / "exports",
        )

        async def to_console(chat_id: int, text: str) -> None:
            await console.transport.send(chat_id, Reply(text, markdown=False))

        deliver_to["send"] = to_console
        services.channel.transport = console.transport
        # The console's one person is its admin: notices come whole, as to an admin on
        # Telegram (the log keeps only their first line, "Familiar is degraded", not why).
        from bot.console import CONSOLE_CHAT_ID

        services.notify_admins.admins = [CONSOLE_CHAT_ID]
        services.notify_admins.send = to_console
        if services.training is not None:
            services.training.commands.transport = console.transport
        tg = settings.telegram
        feedback = Feedback(db, tg.feedback_max_age_days, tg.ask_feedback_reason)

        async def install_feedback() -> None:
            await feedback.load_key()
            feedback.install(services.assistant)

        lifecycle.add(FunctionService("feedback", install_feedback, feedback.drain))

        async def invite_elsewhere(msg: Incoming, args: str, transport: Transport) -> Reply:
            return Reply(
                "Invites are for Telegram: run Familiar with a Telegram token, then an "
                "admin's /invite makes a one-time code for a new user.",
                markdown=False,
            )

        services.assistant.commands.replace(
            Command(
                "invite",
                "Make a one-time invite code (admins, Telegram)",
                invite_elsewhere,
                "/invite",
                admin_only=True,
            )
        )
        lifecycle.add(console)
        return
    from bot.telegram.access import Role
    from bot.telegram.channel import TelegramChannel

    telegram = TelegramChannel(
        settings,
        db,
        services.assistant,
        health,
        fail,
        services.transcriber,
        services.documents,
        services.photos,
    )
    deliver_to["send"] = telegram.transport.send_plain
    services.channel.transport = telegram.transport
    access = telegram.access
    services.channel.allowed = lambda user, chat: (
        access.role(user) is not Role.STRANGER and (chat == user or access.group_allowed(chat))
    )
    services.notify_admins.send = telegram.transport.send_plain
    services.notify_admins.send_photo = telegram.transport.send_photo
    if services.training is not None:
        services.training.commands.transport = telegram.transport
    if telegram.voice_retry is not None:  # recordings kept while the engine was down
        services.scheduler.register(
            JobSpec(
                "voice_retry",
                telegram.voice_retry.run,
                every=timedelta(seconds=settings.voice.retry_interval_s),
                catch_up=False,
            )
        )
    lifecycle.add(telegram)
