"""Settings of voice transcription: the ``[voice]`` section (``FAMILIAR_VOICE__*``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

Engine = Literal["pocketsphinx", "faster-whisper", "none"]


class VoiceSettings(BaseModel):
    engine: Engine = Field(
        "pocketsphinx",
        description="Speech-to-text engine: pocketsphinx (offline, bundled English model), "
        "faster-whisper (needs voice.model_path and the 'voice-whisper' extra), or none (voice notes are kept, "
        "and answered if an engine is set within voice.pending_max_age_h).",
    )
    model_path: Path | None = Field(
        None,
        description="Directory of a CTranslate2 Whisper model for engine faster-whisper "
        "(e.g. a converted 'small' or 'base'); nothing is ever downloaded.",
    )
    language: str = Field(
        "en",
        description="Language spoken in voice notes (ISO 639-1). pocketsphinx only ships English; "
        "faster-whisper accepts any Whisper language, or 'auto' to detect it.",
    )
    max_duration_s: float = Field(
        600.0,
        gt=0,
        description="Longest voice note transcribed, in seconds; longer ones are refused with this limit named.",
    )
    max_bytes: int = Field(
        20_000_000,
        gt=0,
        description="Largest audio file accepted, in bytes (Telegram lets bots download at most 20 MB).",
    )
    threads: int = Field(2, ge=1, description="CPU threads the faster-whisper engine may use.")
    ffmpeg: str = Field(
        "ffmpeg",
        description="ffmpeg program used for formats libsndfile cannot read (M4A, MP4 video notes); "
        "without it those are refused with a clear message.",
    )
    pending_max_age_h: float = Field(
        72.0,
        gt=0,
        description="Hours a recording kept while transcription was unavailable waits to be transcribed and "
        "answered; older ones are dropped and the sender is asked to send them again.",
    )
    retry_interval_s: float = Field(
        600.0,
        ge=30,
        description="Seconds between tries to transcribe and answer kept recordings (the voice_retry job).",
    )
    tts_model_path: Path | None = Field(
        None,
        description="A local Piper voice (.onnx, with its .onnx.json beside it) to read answers aloud "
        "with (needs the piper-tts package); unset uses espeak-ng. Nothing is ever downloaded.",
    )
    tts_voice: str = Field(
        "en-us", description="espeak-ng voice for spoken answers (espeak-ng --voices lists them)."
    )
    tts_program: str = Field("espeak-ng", description="The espeak-ng program.")
