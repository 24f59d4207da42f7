"""Offline transcription of voice notes, audio files and video notes.

Build one transcriber from the ``[voice]`` settings with ``build_transcriber`` and hand it to the
channel; the channel calls ``transcribe_voice`` for each voice update. Recordings that could not
be transcribed wait in a ``PendingVoice`` directory until the engine works again.
"""

from agents.voice.engines import build_transcriber
from agents.voice.errors import (
    AudioDecodeError,
    AudioTooLarge,
    EngineUnavailable,
    FetchError,
    VoiceError,
)
from agents.voice.handler import VoiceOutcome, for_context, transcribe_voice
from agents.voice.pending import PendingRecording, PendingVoice
from agents.voice.settings import VoiceSettings
from agents.voice.transcriber import Transcriber, Transcript
from agents.voice.types import Route, VoiceNote

__all__ = [
    "AudioDecodeError",
    "AudioTooLarge",
    "EngineUnavailable",
    "FetchError",
    "PendingRecording",
    "PendingVoice",
    "Route",
    "Transcriber",
    "Transcript",
    "VoiceError",
    "VoiceNote",
    "VoiceOutcome",
    "VoiceSettings",
    "build_transcriber",
    "for_context",
    "transcribe_voice",
]
