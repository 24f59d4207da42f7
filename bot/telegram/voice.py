"""Voice notes, audio files and video notes in the Telegram channel: download, then transcribe.

``voice_note`` reads what a message says about its recording; ``VoiceReader.read`` downloads it
(``getFile``, then the file URL) and hands it to ``agents.voice.transcribe_voice``, which never
raises for bad input or faults and never blocks the event loop. The handler decides who may be
read at all (a stranger's recording is never downloaded) and answers the transcript like text
(``heard``). A recording the engine could not transcribe is kept in ``PendingVoice`` with its
``Route``; ``bot.telegram.voice_retry`` answers it later the same way.

Files are served beside the Bot API: ``https://api.telegram.org/file/bot<token>/<path>`` for
``https://api.telegram.org/bot<token>/<method>``; the same holds for a local Bot API server and
the test emulator, so the file URL is derived from ``telegram.base_url``.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from datetime import timedelta
from typing import Any

from telegram import Bot, Message
from telegram.warnings import PTBDeprecationWarning

from agents.voice import PendingVoice, Route, Transcriber, VoiceNote, VoiceOutcome, transcribe_voice
from bot.core.types import Incoming


def file_base_url(base_url: str) -> str:
    """The file download URL that goes with a Bot API URL (".../bot" -> ".../file/bot")."""
    head, sep, tail = base_url.rpartition("/bot")
    return f"{head}/file/bot{tail}" if sep else base_url


def _seconds(media: Any) -> float | None:
    # PTB 22 is moving ``duration`` from int to timedelta (PTB_TIMEDELTA); accept either, quietly.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = media.duration
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value) if value is not None else None


def voice_note(message: Message) -> VoiceNote | None:
    """The recording a message carries (voice note, audio file or video note), if any."""
    if message.voice is not None:
        v = message.voice
        return VoiceNote(
            "voice", v.file_id, v.file_unique_id, _seconds(v), v.file_size, v.mime_type
        )
    if message.audio is not None:
        a = message.audio
        return VoiceNote(
            "audio", a.file_id, a.file_unique_id, _seconds(a), a.file_size, a.mime_type
        )
    if message.video_note is not None:
        n = message.video_note
        return VoiceNote("video_note", n.file_id, n.file_unique_id, _seconds(n), n.file_size)
    return None


def heard(incoming: Incoming, outcome: VoiceOutcome, **meta: Any) -> Incoming:
    """The message the assistant answers: the transcript as text, its audio origin in ``meta``."""
    return replace(incoming, text=outcome.text, meta={**incoming.meta, **outcome.meta(), **meta})


class VoiceReader:
    """Downloads a recording through the bot and transcribes it with the one shared transcriber."""

    def __init__(
        self,
        bot: Bot,
        transcriber: Transcriber,
        pending: PendingVoice | None = None,
        fetch_timeout_s: float = 60.0,
    ) -> None:
        self.bot = bot
        self.transcriber = transcriber
        self.pending = pending  # where recordings wait when the engine cannot transcribe them
        self.fetch_timeout_s = fetch_timeout_s

    async def read(self, note: VoiceNote, route: Route | None = None) -> VoiceOutcome:
        """Transcript or a reply for the user (see ``VoiceOutcome``); never raises for faults.

        ``route`` (who sent it, where) is stored with a recording kept for later, so it can be
        answered in the right chat.
        """

        async def fetch() -> bytearray:
            file = await self.bot.get_file(note.file_id)
            return await file.download_as_bytearray()

        return await transcribe_voice(
            note,
            fetch,
            self.transcriber,
            pending=self.pending,
            route=route,
            fetch_timeout_s=self.fetch_timeout_s,
        )
