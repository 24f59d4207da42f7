"""The voice path a channel calls: download a voice note, transcribe it, say what to tell the user.

The channel (Telegram) hands over what it knows from the update (``VoiceNote``) and a coroutine
that downloads the file; ``transcribe_voice`` never raises for bad input or faults: it returns a
``VoiceOutcome`` with either a transcript to treat as the user's typed message, or a reply to send
instead. When the engine is missing or broken the recording is kept in ``pending`` with its
``Route`` (who sent it, where), and the user is told it will be answered once transcribed: a
scheduled job (``bot.telegram.voice_retry``) keeps that promise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from agents.voice.audio import too_long
from agents.voice.errors import (
    AudioDecodeError,
    AudioTooLarge,
    EngineUnavailable,
    FetchError,
    VoiceError,
)
from agents.voice.transcriber import Transcriber, Transcript
from agents.voice.types import Route, VoiceNote
from memory.context import AUDIO_MARK

if TYPE_CHECKING:
    from agents.voice.pending import PendingVoice

HEARD_NOTHING = "🤷 I heard nothing in that recording. Was the microphone muted? Please try again."
WILL_ANSWER = " I kept the recording and will transcribe and answer it as soon as I can."
SEND_AGAIN = " Please send it again later."
CONTEXT_MARK = AUDIO_MARK.strip()  # memory marks earlier voice turns of the history the same way


@dataclass(frozen=True)
class VoiceOutcome:
    """Either ``transcript`` (answer it like typed text) or ``reply`` (send it; store nothing)."""

    note: VoiceNote
    transcript: Transcript | None = None
    reply: str | None = None
    error: VoiceError | None = None
    kept_path: Path | None = None

    @property
    def ok(self) -> bool:
        return self.transcript is not None and not self.transcript.heard_nothing

    @property
    def text(self) -> str:
        """The transcript, the text to store and answer ("" unless ``ok``)."""
        return self.transcript.text if self.ok and self.transcript else ""

    def heard_line(self) -> str:
        """Shown to the user above the answer, so they see what was understood."""
        return f"🗣 I heard: {self.text}"

    def meta(self) -> dict[str, Any]:
        """What the stored user message should carry about its audio origin."""
        t = self.transcript
        return {
            "from_audio": True,
            "audio_kind": self.note.kind,
            "file_id": self.note.file_id,
            "file_unique_id": self.note.file_unique_id,
            "duration_s": round(t.duration_s, 2) if t else self.note.duration_s,
            "engine": t.engine if t else None,
            "language": t.language if t else None,
        }


def for_context(text: str) -> str:
    """A transcript as the model should see it: marked as heard, not typed."""
    return f"{CONTEXT_MARK} {text}"


async def transcribe_voice(
    note: VoiceNote,
    fetch: Callable[[], Awaitable[bytes | bytearray]],
    transcriber: Transcriber,
    *,
    pending: PendingVoice | None = None,
    route: Route | None = None,
    fetch_timeout_s: float = 60.0,
) -> VoiceOutcome:
    """Download (``fetch``) and transcribe one recording; never raises for bad input or faults.

    When the engine is unavailable or fails, the recording is kept in ``pending`` (with ``route``,
    so it can be answered later); the reply promises an answer only if it was kept with a route.
    """
    s = transcriber.settings
    try:
        # Refuse what the update already shows is too big, before spending the download on it.
        if note.size is not None and note.size > s.max_bytes:
            raise AudioTooLarge(
                f"The audio file is {note.size / 1e6:.1f} MB; the limit (voice.max_bytes) is {s.max_bytes / 1e6:.1f} MB."
            )
        if note.duration_s is not None and note.duration_s > s.max_duration_s:
            raise too_long(note.duration_s, s.max_duration_s)
    except AudioTooLarge as exc:
        return VoiceOutcome(note, reply=f"⚠️ {exc}", error=exc)

    try:
        data = bytes(await asyncio.wait_for(fetch(), fetch_timeout_s))
    except Exception as exc:  # network, Telegram API, timeout: all mean "send it again"
        logger.warning(
            "voice note {} could not be downloaded: {}", note.file_id, type(exc).__name__
        )
        error: VoiceError = FetchError(
            f"I could not download the recording ({type(exc).__name__})."
        )
        return VoiceOutcome(
            note, reply="⚠️ I could not download your recording. Please send it again.", error=error
        )

    try:
        transcript = await transcriber.transcribe(data)
    except EngineUnavailable as exc:
        kept = await _keep(note, data, pending, route)
        logger.error("voice transcription unavailable: {}", exc.explain())
        later = WILL_ANSWER if kept and route else SEND_AGAIN
        return VoiceOutcome(
            note,
            reply=f"⚠️ I cannot transcribe voice messages right now: {exc}{later}",
            error=exc,
            kept_path=kept,
        )
    except (AudioDecodeError, AudioTooLarge) as exc:  # the recording itself: the user can act
        return VoiceOutcome(note, reply=f"⚠️ {exc}", error=exc)
    except (
        Exception
    ) as exc:  # an engine fault (a crashed worker, a bug) must not cost the recording
        if not isinstance(exc, VoiceError):
            logger.opt(exception=exc).error("voice transcription failed for {}", note.file_id)
        kept = await _keep(note, data, pending, route)
        failure = (
            exc
            if isinstance(exc, VoiceError)
            else VoiceError(f"Transcription failed ({type(exc).__name__}).")
        )
        later = WILL_ANSWER if kept and route else " Please send it again."
        return VoiceOutcome(
            note,
            reply=f"⚠️ Something went wrong while transcribing.{later}",
            error=failure,
            kept_path=kept,
        )
    if transcript.heard_nothing:
        return VoiceOutcome(note, transcript=transcript, reply=HEARD_NOTHING)
    return VoiceOutcome(note, transcript=transcript)


async def _keep(
    note: VoiceNote, data: bytes, pending: PendingVoice | None, route: Route | None
) -> Path | None:
    if pending is None:
        return None
    return await asyncio.to_thread(pending.keep, note, data, route)
