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
from agents.summarise import LLMSummariser
from agents.usage import UsageStore
from agents.voice import Transcriber, build_transcriber
from bot import __version__
from bot.config import Settings
from bot.core.agent_commands import AgentCommands
from bot.core.assistant import Assistant
from bot.core.chat_modes import SqliteChatModes
from bot.core.commands import Command
from bot.core.feedback import Feedback, FeedbackStore
from bot.core.job_commands import JobCommands
from bot.core.memory_commands import MemoryCommands
from bot.core.personas import ChatPersonas, PersonaCommands, PersonaRouter
from bot.core.signing import ButtonSigner
from bot.core.transport import Transport
from bot.core.types import Incoming, Reply
from bot.daemon.lifecycle import FunctionService, Lifecycle
from bot.daemon.training import Training, adapter_registry, build_llm_provider, build_training
from jobs.backup_job import BackupService
from jobs.digest import register_digest_jobs
from jobs.health import HealthWatch
from jobs.reminders import Reminder, Reminders
from jobs.scheduler import JobQueueBackend, JobSpec, Scheduler
from jobs.summarize import HourlySummarizer
from memory.db import Database
from memory.embedder import make_embedder
from memory.errors import FamiliarError
from memory.health import HealthRegistry
from memory.service import Memory

INDEX_DIR = "index"
Send = Callable[[int, str], Awaitable[None]]


@dataclass
class AdminNotifier:
    """Sends a line to every admin through whichever channel is up; logs it in any case."""

    admins: list[int]
    send: Send | None = None
    sent: list[str] = field(default_factory=list)

    async def __call__(self, text: str) -> None:
        logger.warning("admin notice: {}", text.splitlines()[0][:200] if text else "")
        self.sent.append(text)
        if self.send is None:
            return
        for admin in self.admins:
            try:
                await self.send(admin, text)
            except Exception:  # one unreachable admin must not stop the others
                logger.opt(exception=True).warning("could not notify admin {}", admin)


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


def build_job_queue(settings: Settings):  # type: ignore[no-untyped-def]
    """PTB's JobQueue (the process's one APScheduler), on an Application that never polls."""
    from telegram.ext import Application

    token = settings.telegram.token.get_secret_value() if settings.telegram.token else "0:console"
    app = Application.builder().token(token).updater(None).build()
    assert app.job_queue is not None, "python-telegram-bot was installed without [job-queue]"
    app.job_queue.scheduler.configure(timezone=ZoneInfo(settings.jobs.timezone))
    return app.job_queue


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

    # agents
    review = ReviewEngine(llm, settings.review, settings.llm, db)
    personas = PersonaRouter(
        ChatPersonas(db), registry, provider, settings.llm, usage, notify_admins
    )
    agent = ChatAgent(
        memory, llm, settings.llm, review, LLMFactExtractor(llm), route=personas, db=db
    )
    for name, check in llm_health_checks(provider).items():
        health.register(name, check)

    async def stop_agents() -> None:
        await agent.drain()
        await llm.aclose()

    lifecycle.add(FunctionService("agents", stop=stop_agents))
    transcriber = build_transcriber(settings.voice)

    async def stop_voice() -> None:
        await asyncio.to_thread(transcriber.close)  # ends the engine's worker process, if any

    lifecycle.add(FunctionService("voice", stop=stop_voice))

    # the assistant core and its commands
    assistant = Assistant(health, started_at=started_at)
    signer = ButtonSigner(FeedbackStore(db).key())
    MemoryCommands(memory, settings.llm.context_tokens).register(assistant)
    AgentCommands(agent, review, usage, signer, SqliteChatModes(db)).register(assistant)
    PersonaCommands(personas, settings.llm.persona, settings.llm.provider).register(assistant)

    # jobs, on PTB's JobQueue
    js = settings.jobs
    backend = JobQueueBackend(build_job_queue(settings))
    scheduler = Scheduler(db, backend, js, notify_admins)
    config_file = settings.config_file if settings.config_file.is_file() else None
    backups = BackupService(js, data_dir, config_file, __version__, notify_admins)
    if js.backup_enabled:
        scheduler.register(JobSpec("backup", backups.run, cron=js.backup_cron, timeout_s=3 * 3600))
    register_digest_jobs(
        scheduler,
        js,
        db,
        memory=memory,
        llm=llm,
        notify_admins=notify_admins,
        backup_age=backups.newest_age_hours,
    )
    if js.summarize_enabled:
        summarizer = HourlySummarizer(db, memory, summariser, js)
        scheduler.register(
            JobSpec("summarize", summarizer.run, cron=f"{js.summarize_minute} * * * *")
        )
    scheduler.register(
        JobSpec(
            "health",
            HealthWatch(health, notify_admins, db).run,
            every=timedelta(seconds=js.health_interval_s),
            catch_up=False,
        )
    )
    health.register("jobs", scheduler.health_check)
    health.register("backup", backups.health_check)

    deliver_to: dict[str, Send] = {}
    background: set[asyncio.Task[object]] = set()

    async def deliver(reminder: Reminder, note: str | None) -> None:
        text = f"⏰ {reminder.text}" + (f"\n({note})" if note else "")
        send = deliver_to.get("send")
        if send is None:
            raise FamiliarError("no channel is up to deliver the reminder")
        await send(reminder.chat_id, text)

    reminders = Reminders(db, backend, js, deliver)
    JobCommands(scheduler, reminders, signer).register(assistant)

    async def start_jobs() -> None:
        await scheduler.start()
        await reminders.start()
        # A first health snapshot now, for `familiar health`, rather than one interval later.
        first = asyncio.create_task(
            scheduler.run_now("health", trigger="start"), name="health-at-start"
        )
        background.add(first)
        first.add_done_callback(background.discard)

    async def stop_jobs() -> None:
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
        services.notify_admins.send = None  # the console user sees the log and /status
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
    from bot.telegram.channel import TelegramChannel

    telegram = TelegramChannel(settings, db, services.assistant, health, fail, services.transcriber)
    deliver_to["send"] = telegram.transport.send_plain
    services.notify_admins.send = telegram.transport.send_plain
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
