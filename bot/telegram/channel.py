"""The Telegram channel service: connect, receive updates durably, hand them to the core.

Receiving is done here rather than with PTB's ``Updater`` because the Updater acknowledges an
update (asks for a higher offset) before it is handled, so a crash loses it. Here each batch
from ``getUpdates`` is written to the SQLite ``Inbox`` first; the next ``getUpdates`` (whose
offset acknowledges the batch) is only sent after that write. Each update is then handled once
per start at least, in order within its chat, and marked done; unhandled ones are replayed at
start, and a redelivered ``update_id`` is ignored. Webhook mode feeds the same inbox and
answers Telegram only after the write.

Telegram unreachable (at start or later): retry with exponential backoff, stay up, health
``degraded``. The inbox unwritable (disk full, read-only): the batch is not acknowledged, each
known sender is told once that the message waits, and the write is retried every few seconds,
so the daemon answers by itself soon after space returns. Token rejected (401): ``fail(TelegramTokenRejected)`` stops the daemon.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
import warnings
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from loguru import logger
from telegram import BotCommand, BotCommandScopeChat
from telegram.error import BadRequest, InvalidToken, NetworkError, RetryAfter, TelegramError
from telegram.ext import AIORateLimiter, ExtBot
from telegram.warnings import PTBUserWarning

from agents.voice import PendingVoice, Transcriber
from agents.voice.tts import build_speaker
from bot.config import Settings
from bot.core.assistant import Assistant
from bot.core.commands import CommandRegistry
from bot.core.documents import DocumentDesk
from bot.core.feedback import Feedback
from bot.core.photos import PhotoDesk
from bot.core.voice_replies import VoiceReplies
from bot.daemon.lifecycle import Service
from bot.errors import ConfigError, FamiliarError, TelegramTokenRejected
from bot.telegram.access import AccessControl
from bot.telegram.bursts import Bursts
from bot.telegram.chat_admins import ChatAdmins
from bot.telegram.dispatch import UpdateDispatcher
from bot.telegram.documents import DocumentReader
from bot.telegram.handlers import BotIdentity, UpdateHandler
from bot.telegram.inbox import Inbox
from bot.telegram.limits import ChatPacer, TokenBucket
from bot.telegram.photos import PhotoReader
from bot.telegram.reach import ReachRequest, TelegramReach
from bot.telegram.reporting import ErrorReporter
from bot.telegram.transport import TelegramTransport, retry_after_seconds
from bot.telegram.unstored import UnstoredNotices
from bot.telegram.voice import VoiceReader, file_base_url
from bot.telegram.voice_retry import VoiceRetry
from memory.db import Database, storage_fault
from memory.health import CheckResult, HealthRegistry, Status

ALLOWED_UPDATES = ["message", "edited_message", "callback_query", "message_reaction"]
STORAGE_RETRY_MAX_S = 5.0  # storage back (space freed): answered within seconds
# getUpdates goes through do_api_request on purpose: it returns the raw JSON that the inbox stores
# (one unreadable update must not block the batch), so PTB's advice to use get_updates is muted.
warnings.filterwarnings(
    "ignore", message=r".*do_api_request\(\"getUpdates", category=PTBUserWarning
)


def menu_commands(registry: CommandRegistry, is_admin: bool) -> list[BotCommand]:
    """The command menu (setMyCommands) from the same registry that feeds /help."""
    return [BotCommand(c.name, c.description[:256]) for c in registry.visible_to(is_admin)]


class Backoff:
    def __init__(self, cap_s: float, first_s: float = 1.0) -> None:
        self.cap_s, self.first_s, self.delay = cap_s, first_s, first_s

    def next(self) -> float:
        delay = self.delay
        self.delay = min(self.delay * 2, self.cap_s)
        return delay * random.uniform(0.8, 1.2)  # jitter: many bots must not retry in step

    def reset(self) -> None:
        self.delay = self.first_s


class TelegramChannel(Service):
    name = "telegram"

    def __init__(
        self,
        settings: Settings,
        db: Database,
        assistant: Assistant,
        health: HealthRegistry,
        fail: Callable[[FamiliarError], None],
        transcriber: Transcriber | None = None,
        documents: DocumentDesk | None = None,
        photos: PhotoDesk | None = None,
    ) -> None:
        self.settings = settings
        self.tg = settings.telegram
        if self.tg.token is None:
            raise TelegramTokenRejected(
                "no Telegram token is configured", "set FAMILIAR_TELEGRAM__TOKEN"
            )
        self.db = db
        self.assistant = assistant
        self.fail = fail
        limiter = (
            AIORateLimiter(overall_max_rate=self.tg.global_max_per_s, max_retries=3)
            if self.tg.global_max_per_s
            else None
        )
        self.reach = TelegramReach()  # whether Telegram answers: the dispatcher's retries ask
        self.bot: ExtBot[Any] = ExtBot(
            self.tg.token.get_secret_value(),
            base_url=self.tg.base_url,
            base_file_url=file_base_url(self.tg.base_url),
            request=ReachRequest(
                self.reach, connection_pool_size=64, read_timeout=15.0, connect_timeout=10.0
            ),
            get_updates_request=ReachRequest(
                self.reach,
                connection_pool_size=2,
                read_timeout=self.tg.poll_timeout_s + 15.0,
                connect_timeout=10.0,
            ),
            rate_limiter=limiter,
        )
        self.inbox = Inbox(db, max_attempts=self.tg.max_attempts)
        self.access = AccessControl(
            db, self.tg.allowed_users, self.tg.admins, self.tg.invite_ttl_h * 3600
        )
        self.feedback = Feedback(db, self.tg.feedback_max_age_days, self.tg.ask_feedback_reason)
        self.transport = TelegramTransport(
            self.bot, ChatPacer(self.tg.chat_send_interval_s), self.tg.edit_interval_s
        )
        self.unstored = UnstoredNotices(self.access, self.transport.send_plain)
        self.reporter = ErrorReporter(
            self.transport.send_plain, self.tg.admins, self.tg.admin_alert_interval_s
        )
        # Recordings the engine could not transcribe wait here; ``voice_retry`` answers them later.
        pending = PendingVoice(settings.data_dir / "voice")
        voice = VoiceReader(self.bot, transcriber, pending) if transcriber else None
        replies = VoiceReplies(db, build_speaker(settings.voice)) if voice else None
        self.handler = UpdateHandler(
            db,
            assistant,
            self.transport,
            self.access,
            self.reporter,
            self._answer_callback,
            TokenBucket(self.tg.user_burst, self.tg.user_per_minute),
            self.tg.refusal_interval_s,
            voice,
            DocumentReader(self.bot, documents) if documents is not None else None,
            replies,
            chat_admin=ChatAdmins(self.bot),
            photos=PhotoReader(self.bot, photos) if photos is not None else None,
            bursts=Bursts(db, self.inbox, self.tg.burst_window_s),
        )
        self._status = (Status.DEGRADED, "connecting to Telegram")
        self._task: asyncio.Task[None] | None = None
        self.dispatcher = UpdateDispatcher(
            db, self.inbox, self.handler, self.bot, self.tg, self._rejected, self.reach
        )
        self._webhook_server: Any = None
        # The scheduled job (registered by the composition root) that answers kept recordings.
        self.voice_retry = (
            VoiceRetry(
                pending,
                transcriber,
                self.transport,
                self.access,
                assistant,
                tz=ZoneInfo(settings.jobs.timezone),
                ready=self._ready,
                chat_turn=self.dispatcher.chat_turn,
                reporter=self.reporter,
                voice_replies=replies,
            )
            if transcriber
            else None
        )
        health.register("telegram", self.check)

    # -- Service ----------------------------------------------------------------------------
    async def start(self) -> None:
        await self.feedback.load_key()
        self.feedback.install(self.assistant)
        await self.db.run(self.access.load)
        self.handler.register_commands()
        pruned = await self.db.run(self.inbox.prune)
        if pruned:
            logger.debug("pruned {} handled inbox rows", pruned)
        self._task = asyncio.create_task(self._run(), name="telegram")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._webhook_server is not None:
            await self._webhook_server.close()
        await self.dispatcher.drain(self.settings.daemon.shutdown_timeout_s / 2)
        if self.handler.photos is not None:
            await self.handler.photos.drain(self.settings.daemon.shutdown_timeout_s / 4)
        for task in list(self.feedback._background):
            task.cancel()
        await self.feedback.drain()
        try:
            await asyncio.wait_for(self.transport.drain(), 2.0)
        except TimeoutError:
            logger.warning("some message edits were not applied before stopping")
        try:
            await self.bot.shutdown()
        except Exception as exc:
            logger.debug("closing the Telegram client: {}", exc)

    def check(self) -> CheckResult:
        status, detail = self._status
        return CheckResult("telegram", status, detail)

    def _ready(self) -> bool:
        """Connected, so who may talk is loaded and a reply can go out."""
        return self._status[0] is Status.HEALTHY

    # -- connecting ---------------------------------------------------------------------------
    def _rejected(self) -> None:
        self._status = (Status.FAILING, "Telegram rejected the bot token")
        logger.error("Telegram rejected the bot token (401)")
        self.fail(
            TelegramTokenRejected(
                "Telegram rejected the bot token (HTTP 401): it is wrong or was revoked",
                "get the token from @BotFather and set FAMILIAR_TELEGRAM__TOKEN "
                "(or the credential 'telegram_token'), then start again",
            )
        )

    def _unreachable(self, exc: BaseException, backoff: Backoff) -> float:
        delay = backoff.next()
        if self._status[0] is not Status.DEGRADED or "unreachable" not in self._status[1]:
            logger.warning("Telegram is unreachable ({}); retrying with backoff", exc)
        self._status = (
            Status.DEGRADED,
            f"Telegram unreachable: {type(exc).__name__}; next try in {delay:.0f} s",
        )
        return delay

    def _connected(self) -> None:
        if self._status[0] is not Status.HEALTHY:
            logger.info("connected to Telegram as @{}", self.handler.me.username)
        self._status = (Status.HEALTHY, f"connected as @{self.handler.me.username}")

    async def _connect(self) -> bool:
        backoff = Backoff(self.tg.retry_max_s)
        while True:
            try:
                await self.bot.initialize()
                self.handler.me = BotIdentity(self.bot.id, self.bot.username or "")
                self._connected()
                return True
            except InvalidToken:
                self._rejected()
                return False
            except RetryAfter as exc:
                await asyncio.sleep(retry_after_seconds(exc))
            except (NetworkError, TelegramError) as exc:
                await asyncio.sleep(self._unreachable(exc, backoff))

    async def _set_commands(self) -> None:
        """Non-essential: a failure is logged and the bot carries on."""
        try:
            await self.bot.set_my_commands(menu_commands(self.assistant.commands, is_admin=False))
            for admin in self.tg.admins:
                await self.bot.set_my_commands(
                    menu_commands(self.assistant.commands, is_admin=True),
                    scope=BotCommandScopeChat(admin),
                )
        except TelegramError as exc:
            logger.warning("setMyCommands failed ({}); the command menu may be out of date", exc)

    async def _run(self) -> None:
        if not await self._connect():
            return
        await self._set_commands()
        try:
            await self.dispatcher.give_up_poisoned()
        except Exception:  # telling about a dropped update must never stop the bot
            logger.exception("could not tell about updates given up")
        pending = await self.db.run(self.inbox.pending)
        if pending:
            logger.info("replaying {} unhandled update(s) from the inbox", len(pending))
        for update_id, payload in pending:
            self.dispatcher.dispatch(update_id, payload)
        if self.tg.mode == "webhook":
            await self._serve_webhook()
        else:
            await self._poll()

    # -- receiving ---------------------------------------------------------------------------
    async def _poll(self) -> None:
        try:  # a webhook left set would make getUpdates fail with a conflict
            await self.bot.delete_webhook()
        except TelegramError as exc:
            logger.debug("deleteWebhook: {}", exc)
        offset: int | None = None
        backoff = Backoff(self.tg.retry_max_s)
        storage_backoff = Backoff(STORAGE_RETRY_MAX_S)
        while True:
            updates: list[dict[str, Any]] = []
            kwargs: dict[str, Any] = {
                "timeout": self.tg.poll_timeout_s,
                "allowed_updates": ALLOWED_UPDATES,
            }
            if offset is not None:
                kwargs["offset"] = offset  # acknowledges everything below it: stored already
            began = time.monotonic()
            try:
                raw = await self.bot.do_api_request(
                    "getUpdates", api_kwargs=kwargs, read_timeout=self.tg.poll_timeout_s + 15.0
                )
                updates = [u for u in raw if isinstance(u, dict)] if isinstance(raw, list) else []
                new = await self.db.run(self.inbox.add, updates) if updates else []
            except InvalidToken:
                self._rejected()
                return
            except RetryAfter as exc:
                await asyncio.sleep(retry_after_seconds(exc))
                continue
            except TelegramError as exc:
                await asyncio.sleep(self._unreachable(exc, backoff))
                continue
            except Exception as exc:  # the inbox could not be written: do not acknowledge
                fault = storage_fault(exc)
                if fault is None:
                    logger.exception("storing updates failed; they will be fetched again")
                    await asyncio.sleep(backoff.next())
                    continue
                logger.error("storing updates failed ({}); they will be fetched again", exc)
                await self.unstored.tell(updates, fault)
                await asyncio.sleep(storage_backoff.next())
                continue
            backoff.reset()
            storage_backoff.reset()
            self._connected()
            ids = [u["update_id"] for u in updates if isinstance(u.get("update_id"), int)]
            if ids:
                offset = max(ids) + 1
            for update_id, payload in new:
                self.dispatcher.dispatch(update_id, payload)
            if not updates and time.monotonic() - began < self.tg.poll_timeout_s / 2:
                await asyncio.sleep(self.tg.poll_idle_s)  # the server does not long-poll

    async def _serve_webhook(self) -> None:
        from bot.telegram.webhook import WebhookServer

        if not self.tg.webhook_url:
            self.fail(
                ConfigError(
                    "webhook mode needs a public URL",
                    "set FAMILIAR_TELEGRAM__WEBHOOK_URL, or FAMILIAR_TELEGRAM__MODE=polling",
                )
            )
            return
        secret = (
            self.tg.webhook_secret.get_secret_value()
            if self.tg.webhook_secret
            else secrets.token_urlsafe(32)
        )
        try:
            server = WebhookServer(
                self.tg.webhook_listen,
                self.tg.webhook_url,
                secret,
                self.receive,
                max_connections=self.tg.webhook_max_connections,
                read_timeout_s=self.tg.webhook_read_timeout_s,
            )
            await server.start()
        except (OSError, ValueError) as exc:  # a bad address, or the port is taken
            self._status = (Status.FAILING, f"webhook cannot listen on {self.tg.webhook_listen}")
            self.fail(
                ConfigError(
                    f"the webhook server cannot listen on {self.tg.webhook_listen!r}: {exc}",
                    "set FAMILIAR_TELEGRAM__WEBHOOK_LISTEN to a free host:port (or stop what holds it)",
                )
            )
            return
        self._webhook_server = server
        backoff = Backoff(self.tg.retry_max_s)
        while True:
            try:
                # drop_pending_updates=False: what Telegram kept while we were away is delivered.
                await self.bot.set_webhook(
                    self.tg.webhook_url,
                    secret_token=secret,
                    allowed_updates=ALLOWED_UPDATES,
                    drop_pending_updates=False,
                )
                self._connected()
                return
            except InvalidToken:
                self._rejected()
                return
            except RetryAfter as exc:
                await asyncio.sleep(retry_after_seconds(exc))
            except BadRequest as exc:  # e.g. not an HTTPS URL, a secret with forbidden characters
                self._status = (Status.FAILING, "Telegram refused the webhook")
                self.fail(
                    ConfigError(
                        f"Telegram refused the webhook: {exc.message}",
                        "check FAMILIAR_TELEGRAM__WEBHOOK_URL (public HTTPS) and FAMILIAR_TELEGRAM__WEBHOOK_SECRET "
                        "(1-256 characters: A-Z, a-z, 0-9, _ and -)",
                    )
                )
                return
            except TelegramError as exc:
                await asyncio.sleep(self._unreachable(exc, backoff))

    async def receive(self, update: dict[str, Any]) -> None:
        """Store one update (webhook); returns once it is durable, then handles it."""
        for update_id, payload in await self.db.run(self.inbox.add, [update]):
            self.dispatcher.dispatch(update_id, payload)

    async def _answer_callback(self, query_id: str, text: str) -> None:
        await self.bot.answer_callback_query(query_id, text=text or None)
