"""Fixtures of the voice tests: speech synthesised with espeak-ng, encoded like Telegram does.

Speech is made in the test (no recordings are stored): espeak-ng's American voice at 150 words a
minute, resampled to 48 kHz and encoded to OGG/Opus, the format of a Telegram voice note.
"""

from __future__ import annotations

import io
import subprocess
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import soundfile as sf
import soxr

from agents.voice import Transcriber, VoiceSettings, build_transcriber
from tests.conftest import require_tool

Synth = Callable[[str], tuple[np.ndarray, int]]


def word_recall(expected: str, heard: str) -> float:
    """Share of the expected words that were heard (each heard word counts once)."""
    remaining = heard.lower().split()
    found = 0
    for word in expected.lower().split():
        if word in remaining:
            remaining.remove(word)
            found += 1
    return found / len(expected.split())


def to_opus(samples: np.ndarray, rate: int) -> bytes:
    """OGG/Opus at 48 kHz mono, as Telegram voice notes are."""
    buffer = io.BytesIO()
    sf.write(buffer, soxr.resample(samples, rate, 48_000), 48_000, format="OGG", subtype="OPUS")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def synth() -> Synth:
    """Speak a sentence: (float32 mono samples, sample rate)."""
    espeak = require_tool("espeak-ng", "it synthesises the test speech")

    def speak(text: str) -> tuple[np.ndarray, int]:
        wav = subprocess.run(
            [espeak, "-v", "en-us", "-s", "150", "--stdout", text],
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout
        samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
        return samples, rate

    return speak


@pytest.fixture(scope="session")
def sphinx() -> Iterator[Transcriber]:
    """The offline default engine, loaded once for the session (its worker process ends after)."""
    transcriber = build_transcriber(VoiceSettings())
    yield transcriber
    transcriber.close()
