"""The one error handler: log the traceback with the update id, tell the user briefly with a
short reference, and tell the admins at most once per error kind per interval. An update given
up after repeated crashes (the inbox's poison limit), or whose answer Telegram kept refusing, is
told once to its sender and the admins."""

from __future__ import annotations

import secrets
import traceback
from collections.abc import Awaitable, Callable

from loguru import logger

from bot.telegram.limits import Throttle

Notify = Callable[[int, str], Awaitable[None]]


def gave_up_notice(attempts: int) -> str:
    return (
        "Sorry, I could not answer one of your messages: I stopped while handling it "
        f"{attempts} times, so I gave up on it. Please send it again, perhaps worded differently."
    )


def refused_notice(attempts: int) -> str:
    return (
        "Sorry, I could not answer one of your messages: Telegram did not take my answer in "
        f"{attempts} tries, so I gave up on it. Please send it again, perhaps worded differently."
    )


def error_kind(exc: BaseException) -> str:
    """The exception type and where it was raised: one kind per bug, not per message."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else "?"
    return f"{type(exc).__name__} at {where}"


class ErrorReporter:
    def __init__(self, notify: Notify, admins: list[int], alert_interval_s: float = 600.0) -> None:
        self.notify = notify
        self.admins = list(admins)
        self.alerts = Throttle(alert_interval_s)

    async def report(self, exc: BaseException, update_id: int | None, chat_id: int | None) -> str:
        """Handle one failure; returns the reference shown to the user."""
        ref = secrets.token_hex(3)
        kind = error_kind(exc)
        logger.opt(exception=exc).error("update {} failed (ref {}): {}", update_id, ref, kind)
        if chat_id is not None:
            await self._safe(
                chat_id, f"Sorry, something went wrong (error {ref}). It has been logged."
            )
        if self.admins and self.alerts.allow(kind):
            text = f"⚠️ {kind} while handling update {update_id} (ref {ref}): {str(exc)[:300]}"
            for admin in self.admins:
                if admin != chat_id:
                    await self._safe(admin, text)
        return ref

    async def _safe(self, chat_id: int, text: str) -> None:
        try:
            await self.notify(chat_id, text)
        except Exception as exc:  # the reporter must never raise
            logger.warning("could not send an error notice to chat {}: {}", chat_id, exc)

    async def gave_up(
        self,
        update_id: int,
        attempts: int,
        chat_id: int | None,
        user_id: int | None,
        tell_sender: bool = True,
        refused: str | None = None,
        stranger: bool = False,
    ) -> None:
        """An update whose every start ended in a crash or kill, or (``refused``: the last
        error) whose answer Telegram would not take while it answered other calls, is dropped:
        say so, once. ``tell_sender`` False: a stranger, or one told in the cut-off answer's
        own message; ``stranger``: the admins hear that the sender was not told."""
        how = f"Telegram refused its answer ({refused})" if refused else "started"
        logger.error(
            "update {} dropped: {} {} times (chat {}, user {})",
            update_id,
            how,
            attempts,
            chat_id,
            user_id,
        )
        if chat_id is not None and tell_sender:
            notice = refused_notice if refused else gave_up_notice
            await self._safe(chat_id, notice(attempts))
        why = (
            f"Telegram did not take its answer in {attempts} tries ({refused[:200]}), though "
            "it answered other calls meanwhile"
            if refused
            else f"it was started {attempts} times and the daemon stopped or crashed each time "
            "before it was handled"
        )
        told = (
            "The sender is not an allowed user and was not told."
            if stranger
            else "The sender could not be told."
            if chat_id is None
            else "The sender was told."
        )
        text = (
            f"⚠️ Dropped update {update_id} (chat {chat_id}, user {user_id}): {why}. {told} "
            f"The log around 'update {update_id}' shows why."
        )
        for admin in self.admins:
            await self._safe(admin, text)
