"""Handling stored updates: each once, in order within its chat, a few chats at a time.

``TelegramChannel`` receives updates (polling or webhook) and writes them to the ``Inbox``; it
hands each stored update to ``UpdateDispatcher.dispatch``. The dispatcher runs it under the
chat's turn lock (so a chat's updates, and late voice answers, are handled one at a time) and a
global concurrency bound, marks it done in the inbox, and retries it with backoff while
Telegram is unreachable, still holding the chat's turn (its later updates wait: order kept);
those retries do not count toward the poison limit while Telegram really is away (no Bot API
call got an answer since the update's previous connection failure: ``TelegramReach``), so an
outage of any length loses no message. Once Telegram answers other calls and this update
still cannot get through, its tries count, and at the limit it is given up, its sender (never
a stranger) and the admins told.
An update whose handling hit a storage fault (the disk filled, the directory turned read-only:
after its message was stored, before its answer was) stays pending and is tried again every few
seconds, the sender told once why; once storage works it is finished as a replay (the stored
turn is not stored twice, an answer already streamed is finished in its own message).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from loguru import logger
from telegram import Update
from telegram.error import InvalidToken, NetworkError, RetryAfter, TimedOut
from telegram.ext import ExtBot

from bot.core.agent_commands import STOP_PREFIX
from bot.core.drafts import AnswerDrafts
from bot.core.types import Incoming, Reply, Sender
from bot.settings import TelegramSettings
from bot.telegram.access import Role
from bot.telegram.handlers import UpdateHandler
from bot.telegram.inbox import Inbox, chat_key, sender_of
from bot.telegram.reach import TelegramReach
from bot.telegram.reporting import gave_up_notice
from bot.telegram.transport import retry_after_seconds
from bot.telegram.unstored import unfinished_notice
from memory.db import Database, storage_fault

STORAGE_RETRY_MAX_S = 5.0  # storage back (space freed): the update is finished within seconds


def telegram_absent(exc: BaseException) -> bool:
    """Telegram's absence, not the update's fault, so not counted toward the poison limit (a
    connection failure only while Telegram answers nothing else: ``UpdateDispatcher``): flood
    control, or a connection refused, reset or cut (PTB raises ``NetworkError`` from the HTTP
    library's transport error). A timeout may be the update's own (an upload that never ends),
    and a ``NetworkError`` from Telegram's answer (413 "file too large", a 5xx) is about this
    request: those count, or one bad update would hold its chat's turn for ever."""
    if isinstance(exc, RetryAfter):
        return True
    return (
        isinstance(exc, NetworkError)
        and not isinstance(exc, TimedOut)
        and isinstance(exc.__cause__, httpx.TransportError)
        and not isinstance(exc.__cause__, httpx.TimeoutException)
    )


def is_stop_press(payload: dict[str, Any]) -> bool:
    """A press of an answer's ⏹ Stop (``bot.core.agent_commands``): handled at once, outside
    the chat's turn, which the answer it stops holds. Its signature is checked by the handler."""
    query = payload.get("callback_query")
    data = query.get("data") if isinstance(query, dict) else None
    return isinstance(data, str) and data.startswith(f"{STOP_PREFIX}:")


class UpdateDispatcher:
    def __init__(
        self,
        db: Database,
        inbox: Inbox,
        handler: UpdateHandler,
        bot: ExtBot[Any],
        tg: TelegramSettings,
        on_rejected: Callable[[], None],
        reach: TelegramReach | None = None,
    ) -> None:
        self.db = db
        self.inbox = inbox
        self.handler = handler
        self.bot = bot
        self.tg = tg
        self.on_rejected = on_rejected
        self.tasks: set[asyncio.Task[None]] = set()
        self._in_flight: set[int] = set()
        self._chat_locks: dict[int, tuple[asyncio.Lock, int]] = {}
        self._sem = asyncio.Semaphore(tg.max_concurrent_updates)
        self.drafts = AnswerDrafts(db)
        self.reach = reach or TelegramReach()  # without one: Telegram never seen answering
        # update id -> when its latest try failed to reach Telegram (a connection failure)
        self._unreached: dict[int, float] = {}

    async def drain(self, grace: float) -> None:
        """Let updates in hand finish briefly; the rest stay pending in the inbox for next start."""
        if self.tasks:
            _, left = await asyncio.wait(list(self.tasks), timeout=grace)
            for task in left:
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)

    async def give_up_poisoned(self) -> int:
        """At start: drop the updates started too often (each start died), telling the sender
        (unless a stranger) and the admins once. Returns how many were dropped."""
        dropped = await self.db.run(self.inbox.give_up)
        for update_id, attempts, payload in dropped:
            chat_id = chat_key(payload) or None
            user_id = sender_of(payload)
            allowed = user_id is not None and self.handler.access.role(user_id) is not Role.STRANGER
            # Said in the cut-off answer's own message where there is one, else in a new one.
            tell = allowed and not await self._mark_cut_off(payload, attempts)
            await self.handler.reporter.gave_up(
                update_id, attempts, chat_id, user_id, tell, stranger=not allowed
            )
        return len(dropped)

    async def _mark_cut_off(self, payload: dict[str, Any], attempts: int) -> bool:
        """An answer left half-streamed by the crashes gets the notice in its place."""
        message = payload.get("message")
        if not isinstance(message, dict) or not isinstance(message.get("message_id"), int):
            return False
        chat_id = chat_key(payload)
        msg = Incoming(chat_id, Sender(0), "", message["message_id"], channel="telegram")
        draft = await self.drafts.get(msg)
        if draft is None or draft.done:
            return False
        try:
            await self.handler.transport.edit(
                draft.sent, Reply("⚠️ " + gave_up_notice(attempts), markdown=False)
            )
        except Exception as exc:  # the notice then goes as a message of its own
            logger.warning("could not mark the cut-off answer in chat {}: {}", chat_id, exc)
            return False
        await self.drafts.finished(msg, draft.sent)
        return True

    def dispatch(self, update_id: int, payload: dict[str, Any], delay: float = 0.0) -> None:
        if update_id in self._in_flight:
            return
        self._in_flight.add(update_id)
        task = asyncio.create_task(
            self._process(update_id, payload, delay), name=f"update-{update_id}"
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _process(self, update_id: int, payload: dict[str, Any], delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        try:
            # A retry (Telegram unreachable) keeps the chat's turn: its later updates wait, so
            # they are answered in order and never reach the model merged with this one. A Stop
            # press does not wait: it is for the answer holding the turn.
            stop = is_stop_press(payload)
            turn = contextlib.nullcontext() if stop else self.chat_turn(chat_key(payload))
            async with turn:
                storage_wait, told, count = 1.0, False, True
                away_wait = min(1.0, self.tg.retry_max_s)
                while True:
                    try:
                        async with contextlib.nullcontext() if stop else self._sem:
                            again = await self._handle(update_id, payload, count)
                        retry = None
                        if again is not None:
                            # Telegram away (refused, reset): not the update's fault, not counted.
                            delay, count = again
                            if not count:
                                delay, away_wait = (
                                    max(delay, away_wait),
                                    min(away_wait * 2, self.tg.retry_max_s),
                                )
                            retry = delay
                    except Exception as exc:
                        fault = storage_fault(exc)
                        if fault is None:
                            raise
                        # Not a start that died: the poison limit must not drop it at a restart.
                        count = False
                        logger.error("update {}: {}; trying again shortly", update_id, fault)
                        if not told:
                            told = await self._tell_unfinished(payload, fault)
                        retry, storage_wait = (
                            storage_wait,
                            min(storage_wait * 2, STORAGE_RETRY_MAX_S),
                        )
                    if retry is None:
                        break
                    await asyncio.sleep(retry)
        finally:
            self._in_flight.discard(update_id)
            self._unreached.pop(update_id, None)

    def _counts(self, update_id: int, exc: BaseException) -> bool:
        """Whether this failed try's successor counts toward the poison limit. Flood control
        never does; a connection failure does only once Telegram answered some call since
        this update's previous connection failure (then it is away for this update alone)."""
        if isinstance(exc, RetryAfter):
            return False
        if not telegram_absent(exc):
            return True
        previous = self._unreached.get(update_id)
        self._unreached[update_id] = self.reach.clock()
        return previous is not None and self.reach.answered_since(previous)

    async def _tell_unfinished(self, payload: dict[str, Any], fault: str) -> bool:
        """Tell the sender (never a stranger) once why the answer is late; whether it was said."""
        chat_id, user_id = chat_key(payload), sender_of(payload)
        if user_id is None or self.handler.access.role(user_id) is Role.STRANGER:
            return True  # nobody to tell
        try:
            await self.handler.transport.send(
                chat_id, Reply(unfinished_notice(fault), markdown=False, no_feedback=True)
            )
        except Exception as exc:  # Telegram away as well: said at the next try
            logger.warning("could not tell chat {} its answer is late: {}", chat_id, exc)
            return False
        return True

    @contextlib.asynccontextmanager
    async def chat_turn(self, key: int) -> AsyncIterator[None]:
        """Hold the chat's lock: its updates (and late voice answers) are handled one at a time."""
        lock, users = self._chat_locks.get(key, (asyncio.Lock(), 0))
        self._chat_locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._chat_locks[key]
            if users <= 1:
                del self._chat_locks[key]
            else:
                self._chat_locks[key] = (lock, users - 1)

    async def _handle(
        self, update_id: int, payload: dict[str, Any], count: bool = True
    ) -> tuple[float, bool] | None:
        """Handle one update; returns (a delay, whether the next try counts toward the poison
        limit) when it should be tried again (Telegram unreachable or timing out). ``count``:
        this try counts (not a retry after a storage fault or Telegram's absence)."""
        if count:
            attempts = await self.db.run(self.inbox.begin, update_id)
        else:
            attempts = await self.db.run(self.inbox.attempts, update_id)
        try:
            update = Update.de_json(payload, self.bot)
        except Exception:
            logger.exception("update {} cannot be read; dropping it", update_id)
            await self.db.run(self.inbox.finish, update_id, "failed")
            return None
        try:
            await self.handler.handle(update)
        except InvalidToken:
            self.on_rejected()
            return None
        except (NetworkError, RetryAfter) as exc:
            counts = self._counts(update_id, exc)
            if not counts or attempts < self.tg.max_attempts:
                delay = min(self.tg.retry_max_s, 2.0**attempts)
                if isinstance(exc, RetryAfter):
                    delay = retry_after_seconds(exc)
                logger.warning("update {}: Telegram unreachable ({}); retrying", update_id, exc)
                return delay, counts
            await self.db.run(self.inbox.finish, update_id, "failed")
            user_id = sender_of(payload)
            stranger = user_id is None or self.handler.access.role(user_id) is Role.STRANGER
            await self.handler.reporter.gave_up(
                update_id, attempts, chat_key(payload), user_id, not stranger, str(exc), stranger
            )
            return None
        await self.db.run(self.inbox.finish, update_id)
        return None
