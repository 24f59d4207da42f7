"""Choose the transcriber that ``voice.engine`` names; engines import their libraries lazily."""

from __future__ import annotations

from typing import Any

import numpy as np

from agents.voice.errors import EngineUnavailable
from agents.voice.pocketsphinx_engine import PocketsphinxTranscriber
from agents.voice.settings import VoiceSettings
from agents.voice.transcriber import Transcriber
from agents.voice.whisper_engine import FasterWhisperTranscriber


class DisabledTranscriber(Transcriber):
    """``voice.engine = none``: every recording is refused as "not transcribed", and kept."""

    name = "none"

    def _load(self) -> Any:
        raise EngineUnavailable(
            "Voice transcription is turned off (voice.engine = none).",
            fix="Set FAMILIAR_VOICE__ENGINE=pocketsphinx (offline, English) or faster-whisper.",
        )

    def _recognise(self, model: Any, samples: np.ndarray, language: str) -> str:  # pragma: no cover
        raise AssertionError("never loaded")


ENGINES: dict[str, type[Transcriber]] = {
    "pocketsphinx": PocketsphinxTranscriber,
    "faster-whisper": FasterWhisperTranscriber,
    "none": DisabledTranscriber,
}


def build_transcriber(settings: VoiceSettings) -> Transcriber:
    """The configured engine, not yet loaded (it loads on first use or ``warm_up()``)."""
    return ENGINES[settings.engine](settings)
