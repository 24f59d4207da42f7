"""Keeps the promise made when a voice note could not be transcribed: answer it once we can.

``transcribe_voice`` keeps a recording the engine could not do (not installed, turned off,
crashed) in ``PendingVoice`` with its ``Route`` and tells the user it will be answered.
``VoiceRetry.run`` is a scheduled job (``voice_retry``, every ``voice.retry_interval_s``); each
round walks the routed recordings, oldest first:

- older than ``voice.pending_max_age_h``: the user is asked to send it again, and it goes;
- its sender (or its group) is no longer allowed: it goes, silently (logged);
- otherwise it is transcribed. The engine still unavailable ends the round with everything
  kept; an unreadable recording, or one with no speech, is answered as such and goes; words
  are shown ("🗣 Your voice message from 14:05, transcribed now: ...") and answered by the
  assistant exactly as a fresh voice note is (``voice.heard``), under the chat's turn lock.

A recording goes once its transcript is shown, before the assistant answers, so it is never
answered twice. Telegram unreachable ends the round and keeps what is left; Telegram refusing
the chat for good (blocked, chat gone) drops the recording; anything unexpected is logged and
the recording kept for the next round: one bad recording never stops the others.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from loguru import logger
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter

from agents.voice import (
    AudioDecodeError,
    AudioTooLarge,
    EngineUnavailable,
    PendingRecording,
    PendingVoice,
    Route,
    Transcriber,
    VoiceOutcome,
)
from bot.core.assistant import Assistant
from bot.core.transport import Transport
from bot.core.types import Incoming, Reply, Sender
from bot.core.voice_replies import VoiceReplies
from bot.telegram.access import AccessControl, Role
from bot.telegram.handlers import typing_shown
from bot.telegram.reporting import ErrorReporter
from bot.telegram.voice import heard

ChatTurn = Callable[[int], AbstractAsyncContextManager[Any]]
EXPIRED = "⚠️ I could not transcribe your voice message from {when} in time. Please send it again."
UNREADABLE = "⚠️ I could not read your voice message from {when}: {error} Please send it again."
SILENT = "🤷 I heard nothing in your voice message from {when}. Was the microphone muted? Please send it again."
TRANSCRIBED = "🗣 Your voice message from {when}, transcribed now: {text}"


def local_when(kept_at: datetime, now: datetime, tz: tzinfo) -> str:
    """When a recording was sent, as the user would say it: "14:05", or "3 Mar 14:05" another day."""
    local, today = kept_at.astimezone(tz), now.astimezone(tz)
    if local.date() == today.date():
        return f"{local:%H:%M}"
    year = f" {local.year}" if local.year != today.year else ""
    return f"{local.day} {local:%b}{year} {local:%H:%M}"


def _no_turn(chat_id: int) -> AbstractAsyncContextManager[Any]:
    return contextlib.nullcontext()


class VoiceRetry:
    """The ``voice_retry`` job: transcribe and answer kept recordings (see the module docstring)."""

    def __init__(
        self,
        pending: PendingVoice,
        transcriber: Transcriber,
        transport: Transport,
        access: AccessControl,
        assistant: Assistant,
        *,
        tz: tzinfo = UTC,
        ready: Callable[[], bool] = lambda: True,
        chat_turn: ChatTurn = _no_turn,
        reporter: ErrorReporter | None = None,
        voice_replies: VoiceReplies | None = None,
    ) -> None:
        self.pending = pending
        self.transcriber = transcriber
        self.transport = transport
        self.access = access
        self.assistant = assistant
        self.tz = tz
        self.ready = ready  # False until the channel is connected (and has loaded who is allowed)
        self.chat_turn = chat_turn  # the channel's per-chat lock: no answer overtakes a live one
        self.reporter = reporter
        self.voice_replies = voice_replies  # /voice on: the late answer is spoken too

    @property
    def max_age(self) -> timedelta:
        return timedelta(hours=self.transcriber.settings.pending_max_age_h)

    async def run(self) -> str | None:
        """One round over the kept recordings; returns what it did (the job run's output)."""
        if not self.ready():
            return "the channel is not connected yet; nothing tried"
        waiting = [r for r in await asyncio.to_thread(self.pending.list) if r.routed]
        if not waiting:
            return None
        done: Counter[str] = Counter()
        for i, recording in enumerate(waiting):
            try:
                done[await self._one(recording)] += 1
            except EngineUnavailable as exc:
                logger.info(
                    "voice retry: transcription is still unavailable ({}); {} recording(s) wait",
                    exc,
                    len(waiting) - i,
                )
                done["waiting (engine unavailable)"] += len(waiting) - i
                break
            except (BadRequest, Forbidden) as exc:  # the user blocked the bot, the chat is gone
                logger.warning(
                    "voice retry: Telegram refused chat {} ({}); dropping {}",
                    _chat(recording),
                    exc,
                    recording.path.name,
                )
                await asyncio.to_thread(self.pending.remove, recording)
                done["undeliverable"] += 1
            except (NetworkError, RetryAfter) as exc:
                logger.warning(
                    "voice retry: Telegram is unreachable ({}); {} recording(s) wait",
                    exc,
                    len(waiting) - i,
                )
                done["waiting (Telegram unreachable)"] += len(waiting) - i
                break
            except Exception as exc:  # one bad recording must not stop the others
                logger.opt(exception=exc).error(
                    "voice retry failed for {}; kept for the next round", recording.path.name
                )
                done["failed"] += 1
        return ", ".join(f"{n} {what}" for what, n in done.items())

    async def _one(self, recording: PendingRecording) -> str:
        """Settle one recording, or raise to leave it for the next round; returns what happened."""
        route, note = recording.route, recording.note
        assert route is not None and note is not None  # run() only hands over routed recordings
        now = datetime.now(UTC)
        when = local_when(recording.kept_at, now, self.tz)
        if now - recording.kept_at > self.max_age:
            await self._tell(route.chat_id, EXPIRED.format(when=when))
            await asyncio.to_thread(self.pending.remove, recording)
            return "expired"
        if not self._allowed(route):
            logger.info(
                "voice retry: user {} may no longer talk to me in chat {}; dropping {}",
                route.user_id,
                route.chat_id,
                recording.path.name,
            )
            await asyncio.to_thread(self.pending.remove, recording)
            return "dropped"
        data = await asyncio.to_thread(recording.path.read_bytes)
        try:
            transcript = await self.transcriber.transcribe(data)
        except (AudioDecodeError, AudioTooLarge) as exc:
            await self._tell(route.chat_id, UNREADABLE.format(when=when, error=exc))
            await asyncio.to_thread(self.pending.remove, recording)
            return "unreadable"
        outcome = VoiceOutcome(note, transcript=transcript)
        if not outcome.ok:
            await self._tell(route.chat_id, SILENT.format(when=when))
            await asyncio.to_thread(self.pending.remove, recording)
            return "heard nothing"
        await self._tell(route.chat_id, TRANSCRIBED.format(when=when, text=outcome.text))
        # Shown, so gone before the answer: a failing answer must not show the transcript again.
        await asyncio.to_thread(self.pending.remove, recording)
        await self._answer(route, outcome, recording)
        return "answered"

    def _allowed(self, route: Route) -> bool:
        if self.access.role(route.user_id) is Role.STRANGER:
            return False
        return not route.is_group or self.access.group_allowed(route.chat_id)

    async def _tell(self, chat_id: int, text: str) -> None:
        await self.transport.send(chat_id, Reply(text, markdown=False))

    async def _answer(
        self, route: Route, outcome: VoiceOutcome, recording: PendingRecording
    ) -> None:
        """Hand the transcript to the assistant as ``UpdateHandler._answer_voice`` does."""
        sender = Sender(
            route.user_id, route.sender_name, self.access.role(route.user_id) is Role.ADMIN
        )
        base = Incoming(
            route.chat_id,
            sender,
            "",
            message_id=route.message_id,
            is_group=route.is_group,
            channel="telegram",
            forwarded_from=route.forwarded_from,
        )
        message = heard(base, outcome, kept_at=recording.kept_at.isoformat())
        try:
            async with self.chat_turn(route.chat_id), typing_shown(self.transport, route.chat_id):
                if self.voice_replies is None:
                    await self.assistant.handle(message, self.transport)
                else:
                    await self.voice_replies.answer(message, self.assistant, self.transport)
        except (NetworkError, RetryAfter, Forbidden):
            raise
        except Exception as exc:  # as for a fresh message: the user hears of it, admins are told
            if self.reporter is None:
                raise
            await self.reporter.report(exc, None, route.chat_id)


def _chat(recording: PendingRecording) -> int | None:
    return recording.route.chat_id if recording.route else None
