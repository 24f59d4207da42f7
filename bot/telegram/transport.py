"""The Telegram ``Transport``: replies as HTML messages with inline buttons, through PTB.

- Markdown is converted to Telegram HTML; when Telegram rejects the entities the same text is
  sent plain.
- Text over Telegram's limit is split (``formatting.split_markdown``); buttons go under the last
  message. Editing a split message edits its parts in place, sends only the new ones, and deletes
  the ones a shorter text no longer needs (blanks them where Telegram will not delete).
- Sends are paced per chat (``ChatPacer``); ``RetryAfter`` is waited out and the call repeated,
  so a reply is delayed, never dropped.
- Edits of one message are coalesced to at most one per ``edit_interval_s``: an edit that comes
  too soon replaces the pending one and returns at once; ``drain()`` applies what is pending.
- ``typing`` is best-effort: its failure is logged and ignored.
- In a group with topics, what is sent while an update from a topic is handled goes into that
  topic (``TOPIC``); edits need none (a message stays where it is).
- ``send_document`` uploads bytes as a file (``sendDocument``), paced and retried like a message;
  a chat Telegram will not let the bot write to (403) raises ``ChatUnreachable``.

The bookkeeping per message stays bounded over the daemon's life: a pending edit and its
flusher are dropped once applied, edit times once they no longer hold an edit back, and the
part ids of split messages are kept for the ``max_tracked`` most recently sent or edited
messages only. Editing an older split message edits its first part and sends the rest anew.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import timedelta
from typing import Any, TypeVar

from loguru import logger
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Message
from telegram.constants import ChatAction, ParseMode
from telegram.error import BadRequest, Forbidden, RetryAfter, TelegramError

from bot.core.transport import ChatUnreachable, Transport
from bot.core.types import Reply, SentMessage
from bot.telegram.formatting import markdown_to_html, split_markdown
from bot.telegram.limits import ChatPacer

T = TypeVar("T")
# The forum topic of the update being handled, as (chat id, topic id): what the bot sends to that
# chat while handling it goes into the topic, not the group's General one. ``UpdateHandler`` sets
# it for the update's handling; a task started meanwhile (typing, a 🔁 answer) inherits it.
TOPIC: ContextVar[tuple[int, int] | None] = ContextVar("telegram_topic", default=None)


def topic_of(chat_id: int) -> int | None:
    """The topic a message to ``chat_id`` goes into now (None: the chat itself)."""
    current = TOPIC.get()
    return current[1] if current is not None and current[0] == chat_id else None


@contextmanager
def in_topic(chat_id: int, topic: int | None) -> Iterator[None]:
    """What is sent to ``chat_id`` within goes into ``topic`` (a reminder set in one)."""
    mark = TOPIC.set((chat_id, topic) if topic is not None else None)
    try:
        yield
    finally:
        TOPIC.reset(mark)


Key = tuple[int, int]  # (chat id, message id)
MAX_RETRY_AFTER_TRIES = 5
CAPTION_LIMIT = 1024  # Telegram's, for a document's caption
UPLOAD_TIMEOUT_S = 120.0  # up to 50 MB through a slow uplink
MAX_TRACKED = 4096  # split messages whose parts we remember: far more than are still being edited


def retry_after_seconds(exc: RetryAfter) -> float:
    value: Any = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def keyboard(reply: Reply) -> InlineKeyboardMarkup | None:
    if not reply.buttons:
        return None
    return InlineKeyboardMarkup(
        [
            [InlineKeyboardButton(b.label, callback_data=b.data) for b in row]
            for row in reply.buttons
        ]
    )


def _not_modified(exc: BadRequest) -> bool:
    return "not modified" in exc.message.lower()


class TelegramTransport(Transport):
    def __init__(
        self,
        bot: Bot,
        pacer: ChatPacer,
        edit_interval_s: float = 1.0,
        split_limit: int = 4000,
        max_tracked: int = MAX_TRACKED,
    ) -> None:
        self.bot = bot
        self.pacer = pacer
        self.edit_interval_s = edit_interval_s
        self.split_limit = split_limit
        self.max_tracked = max_tracked
        # Parts of a split message after its first, keyed by the first; least recently used
        # first, so the oldest is what goes when there are more than ``max_tracked``.
        self._parts: OrderedDict[Key, list[int]] = OrderedDict()
        # When each message was last edited, oldest first: only the entries younger than
        # ``edit_interval_s`` hold an edit back, the older ones are dropped as we go.
        self._last_edit: OrderedDict[Key, float] = OrderedDict()
        self._pending: dict[Key, Reply] = {}
        self._flushers: dict[Key, asyncio.Task[None]] = {}

    # -- calls with pacing and RetryAfter -------------------------------------------------
    async def _call(self, chat_id: int, fn: Callable[[], Awaitable[T]]) -> T:
        lock = await self.pacer.wait(chat_id)
        try:
            for attempt in range(1, MAX_RETRY_AFTER_TRIES + 1):
                try:
                    return await fn()
                except RetryAfter as exc:
                    if attempt == MAX_RETRY_AFTER_TRIES:
                        raise
                    delay = retry_after_seconds(exc)
                    logger.warning(
                        "Telegram asked to wait {:.0f} s (chat {}); waiting", delay, chat_id
                    )
                    await asyncio.sleep(delay)
            raise AssertionError("unreachable")
        finally:
            self.pacer.sent(chat_id)
            lock.release()

    async def _send_one(self, chat_id: int, text: str, markdown: bool, markup: Any) -> Message:
        topic = topic_of(chat_id)
        if markdown:
            try:
                return await self._call(
                    chat_id,
                    lambda: self.bot.send_message(
                        chat_id,
                        markdown_to_html(text),
                        parse_mode=ParseMode.HTML,
                        reply_markup=markup,
                        message_thread_id=topic,
                    ),
                )
            except BadRequest as exc:
                logger.info(
                    "Telegram rejected the formatting ({}); sending plain text", exc.message
                )
        return await self._call(
            chat_id,
            lambda: self.bot.send_message(
                chat_id, text, reply_markup=markup, message_thread_id=topic
            ),
        )

    async def _edit_one(
        self, chat_id: int, message_id: int, text: str, markdown: bool, markup: Any
    ) -> None:
        try:
            if markdown:
                try:
                    await self._call(
                        chat_id,
                        lambda: self.bot.edit_message_text(
                            markdown_to_html(text),
                            chat_id=chat_id,
                            message_id=message_id,
                            parse_mode=ParseMode.HTML,
                            reply_markup=markup,
                        ),
                    )
                    return
                except BadRequest as exc:
                    if _not_modified(exc):
                        return
                    logger.info(
                        "Telegram rejected the formatting ({}); editing as plain text", exc.message
                    )
            await self._call(
                chat_id,
                lambda: self.bot.edit_message_text(
                    text, chat_id=chat_id, message_id=message_id, reply_markup=markup
                ),
            )
        except BadRequest as exc:
            if not _not_modified(exc):
                raise

    # -- Transport ---------------------------------------------------------------------------
    async def send(self, chat_id: int, reply: Reply) -> SentMessage:
        chunks = split_markdown(reply.text or " ", self.split_limit)
        ids: list[int] = []
        for i, chunk in enumerate(chunks):
            markup = keyboard(reply) if i == len(chunks) - 1 else None
            message = await self._send_one(chat_id, chunk, reply.markdown, markup)
            ids.append(message.message_id)
        if len(ids) > 1:
            self._remember_parts((chat_id, ids[0]), ids[1:])
        return SentMessage(chat_id, ids[0])

    async def edit(self, message: SentMessage, reply: Reply) -> None:
        key = (message.chat_id, message.message_id)
        wait = self._last_edit.get(key, 0.0) + self.edit_interval_s - time.monotonic()
        if wait > 0 or key in self._flushers:
            self._pending[key] = reply
            if key not in self._flushers:
                self._flushers[key] = asyncio.create_task(
                    self._flush_later(message, max(wait, 0.0))
                )
            return
        await self._apply_edit(message, reply)

    async def _flush_later(self, message: SentMessage, delay: float) -> None:
        key = (message.chat_id, message.message_id)
        try:
            # An edit that comes while one is being applied finds this flusher and leaves its
            # reply pending: loop (each in its turn) until none is left, or it would be lost.
            while True:
                await asyncio.sleep(delay)
                reply = self._pending.pop(key, None)
                if reply is None:
                    return
                try:
                    await self._apply_edit(message, reply)
                except Exception:
                    logger.exception("a delayed edit of message {} failed", message.message_id)
                delay = self.edit_interval_s
        finally:
            self._flushers.pop(key, None)
            self._pending.pop(key, None)  # only left when cancelled: nobody would apply it

    async def _apply_edit(self, message: SentMessage, reply: Reply) -> None:
        key = (message.chat_id, message.message_id)
        self._edited_now(key)
        chunks = split_markdown(reply.text or " ", self.split_limit)
        ids = [message.message_id] + self._parts.get(key, [])
        for i, chunk in enumerate(chunks):
            markup = keyboard(reply) if i == len(chunks) - 1 else None
            if i < len(ids):
                # A part that is no longer last loses its buttons: say so explicitly (an empty
                # keyboard) rather than rely on an omitted reply_markup removing them.
                markup = markup or InlineKeyboardMarkup([])
                await self._edit_one(message.chat_id, ids[i], chunk, reply.markdown, markup)
            else:
                sent = await self._send_one(message.chat_id, chunk, reply.markdown, markup)
                ids.append(sent.message_id)
        # A shorter text needs fewer parts: the old trailing ones must not stay behind, stale.
        for part in ids[len(chunks) :]:
            await self._remove_part(message.chat_id, part)
        if len(chunks) > 1:
            self._remember_parts(key, ids[1 : len(chunks)])
        else:
            self._parts.pop(key, None)

    async def _remove_part(self, chat_id: int, message_id: int) -> None:
        """Delete a part no longer needed; where Telegram will not (too old, already gone), blank it."""
        try:
            await self._call(chat_id, lambda: self.bot.delete_message(chat_id, message_id))
        except TelegramError as exc:
            logger.debug(
                "could not delete part {} in chat {} ({}); blanking it", message_id, chat_id, exc
            )
            try:
                await self._edit_one(chat_id, message_id, "⋯", False, InlineKeyboardMarkup([]))
            except TelegramError as exc2:
                logger.warning("a stale part {} stays in chat {}: {}", message_id, chat_id, exc2)

    def _remember_parts(self, key: Key, parts: list[int]) -> None:
        self._parts[key] = parts
        self._parts.move_to_end(key)
        while len(self._parts) > self.max_tracked:
            self._parts.popitem(last=False)

    def _edited_now(self, key: Key) -> None:
        now = time.monotonic()
        self._last_edit[key] = now
        self._last_edit.move_to_end(key)
        if key in self._parts:  # an edited message is a recent one
            self._parts.move_to_end(key)
        expired = now - self.edit_interval_s
        while self._last_edit and (
            len(self._last_edit) > self.max_tracked
            or next(iter(self._last_edit.values())) <= expired
        ):
            self._last_edit.popitem(last=False)

    async def settle(self, chat_id: int) -> None:
        while flushers := [t for (chat, _), t in self._flushers.items() if chat == chat_id]:
            await asyncio.gather(*flushers, return_exceptions=True)

    async def drain(self) -> None:
        """Apply every edit still waiting for its turn."""
        while self._flushers:
            await asyncio.gather(*list(self._flushers.values()), return_exceptions=True)

    async def typing(self, chat_id: int) -> None:
        try:
            await self.bot.send_chat_action(
                chat_id, ChatAction.TYPING, message_thread_id=topic_of(chat_id)
            )
        except TelegramError as exc:  # non-essential: never stops a reply
            logger.debug("sendChatAction failed in chat {}: {}", chat_id, exc)

    async def send_document(
        self, chat_id: int, data: bytes, filename: str, caption: str = ""
    ) -> None:
        try:
            await self._call(
                chat_id,
                lambda: self.bot.send_document(
                    chat_id,
                    data,
                    filename=filename,
                    caption=caption[:CAPTION_LIMIT] or None,
                    write_timeout=UPLOAD_TIMEOUT_S,
                    message_thread_id=topic_of(chat_id),
                ),
            )
        except Forbidden as exc:  # never started the bot, or blocked it
            raise ChatUnreachable(f"Telegram refused chat {chat_id}: {exc.message}") from exc
        except BadRequest as exc:
            if "chat not found" not in exc.message.lower():
                raise
            raise ChatUnreachable(f"Telegram refused chat {chat_id}: {exc.message}") from exc

    async def send_voice(self, chat_id: int, data: bytes, caption: str = "") -> None:
        await self._call(
            chat_id,
            lambda: self.bot.send_voice(
                chat_id,
                voice=data,
                caption=caption[:CAPTION_LIMIT] or None,
                write_timeout=UPLOAD_TIMEOUT_S,
                message_thread_id=topic_of(chat_id),
            ),
        )

    async def send_photo(self, chat_id: int, data: bytes, caption: str = "") -> None:
        await self._call(
            chat_id,
            lambda: self.bot.send_photo(
                chat_id,
                photo=data,
                caption=caption[:CAPTION_LIMIT] or None,
                write_timeout=UPLOAD_TIMEOUT_S,
                message_thread_id=topic_of(chat_id),
            ),
        )

    async def send_plain(self, chat_id: int, text: str) -> None:
        """A short notice outside the answer path (refusals, errors); failures are logged."""
        try:
            await self._send_one(chat_id, text, False, None)
        except TelegramError as exc:
            logger.warning("could not send a notice to chat {}: {}", chat_id, exc)
