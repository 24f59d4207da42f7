"""Text to speech, offline: an answer read aloud as a Telegram voice note (OGG/Opus, 48 kHz mono).

Two engines behind one interface (``Speaker``): espeak-ng (the default; a system program the
Makefile's ``system-deps`` installs, as the voice tests need it anyway), and Piper when
``voice.tts_model_path`` names a local Piper voice (an ``.onnx`` file with its ``.onnx.json``),
through the ``piper-tts`` package. Nothing is ever downloaded. Encoding to OGG/Opus is
libsndfile's (through soundfile), after resampling to 48 kHz with soxr.
"""

from __future__ import annotations

import asyncio
import io
import re
import shutil
import subprocess
import wave
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from agents.voice.errors import VoiceError
from agents.voice.settings import VoiceSettings

OPUS_RATE = 48_000


class SpeechError(VoiceError):
    """Speech could not be synthesised (engine missing, model unreadable, engine failed)."""


class Speaker(ABC):
    name = "abstract"

    @abstractmethod
    def synthesise(self, text: str) -> tuple[np.ndarray, int]:
        """Float32 mono samples and their sample rate for ``text`` (blocking)."""

    def voice_note_sync(self, text: str) -> bytes:
        """``text`` spoken, as OGG/Opus bytes for ``sendVoice`` (blocking)."""
        text = speakable(text)
        if not text:
            raise SpeechError("there is nothing to say", "give some words to speak")
        samples, rate = self.synthesise(text)
        return to_ogg_opus(samples, rate)

    async def voice_note(self, text: str) -> bytes:
        return await asyncio.to_thread(self.voice_note_sync, text)


def speakable(text: str, max_chars: int = 2_000) -> str:
    """What is worth reading aloud: no Markdown marks, links or code, at most ``max_chars``."""
    text = re.sub(r"```.*?```", " (code left out) ", text, flags=re.DOTALL)
    text = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", text)  # [label](url) -> label
    text = re.sub(r"https?://\S+", " ", text)
    text = re.sub(r"[*_`#>|~]+", " ", text)
    text = " ".join(text.split())
    if len(text) > max_chars:
        cut = text.rfind(". ", 0, max_chars)
        text = text[: cut + 1 if cut > max_chars // 2 else max_chars]
    return text


def to_ogg_opus(samples: np.ndarray, rate: int) -> bytes:
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim > 1:
        samples = samples.mean(axis=1)
    if rate != OPUS_RATE:
        samples = soxr.resample(samples, rate, OPUS_RATE)
    buffer = io.BytesIO()
    sf.write(buffer, samples, OPUS_RATE, format="OGG", subtype="OPUS")
    return buffer.getvalue()


class EspeakSpeaker(Speaker):
    name = "espeak-ng"

    def __init__(self, program: str = "espeak-ng", voice: str = "en-us", wpm: int = 150) -> None:
        self.program, self.voice, self.wpm = program, voice, wpm

    def synthesise(self, text: str) -> tuple[np.ndarray, int]:
        program = shutil.which(self.program)
        if program is None:
            raise SpeechError(
                f"{self.program} is not installed",
                "install it (make system-deps, or apt-get install espeak-ng)",
            )
        try:
            out = subprocess.run(
                [program, "-v", self.voice, "-s", str(self.wpm), "--stdout", "--", text],
                capture_output=True,
                check=True,
                timeout=120,
            )
            samples, rate = sf.read(io.BytesIO(out.stdout), dtype="float32")
        except subprocess.CalledProcessError as exc:
            message = exc.stderr.decode(errors="replace").strip()[:200]
            raise SpeechError(
                f"espeak-ng failed: {message}", "check voice.tts_voice names an espeak-ng voice"
            ) from exc
        except (subprocess.TimeoutExpired, sf.LibsndfileError, OSError) as exc:
            raise SpeechError(f"espeak-ng failed ({type(exc).__name__})") from exc
        return samples, int(rate)


class PiperSpeaker(Speaker):
    name = "piper"

    def __init__(self, model_path: Path) -> None:
        self.model_path = Path(model_path)
        self._voice: object | None = None

    def _load(self) -> object:
        if self._voice is None:
            if not self.model_path.is_file():
                raise SpeechError(
                    f"no Piper voice at {self.model_path}",
                    "set voice.tts_model_path to a local .onnx voice, or unset it for espeak-ng",
                )
            try:
                from piper import PiperVoice  # type: ignore[import-not-found]
            except ImportError as exc:
                raise SpeechError(
                    "piper-tts is not installed", "pip install piper-tts, or unset tts_model_path"
                ) from exc
            try:
                self._voice = PiperVoice.load(str(self.model_path))
            except Exception as exc:  # onnxruntime and the voice's JSON fail in many ways
                raise SpeechError(f"the Piper voice could not be loaded: {exc}") from exc
        return self._voice

    def synthesise(self, text: str) -> tuple[np.ndarray, int]:
        voice = self._load()
        buffer = io.BytesIO()
        try:
            with wave.open(buffer, "wb") as wav:
                write = getattr(voice, "synthesize_wav", None) or voice.synthesize  # type: ignore[attr-defined]
                write(text, wav)
            buffer.seek(0)
            samples, rate = sf.read(buffer, dtype="float32")
        except Exception as exc:
            raise SpeechError(f"Piper failed: {exc}") from exc
        return samples, int(rate)


def build_speaker(settings: VoiceSettings) -> Speaker:
    """Piper when ``voice.tts_model_path`` is set, else espeak-ng."""
    if settings.tts_model_path is not None:
        return PiperSpeaker(settings.tts_model_path)
    return EspeakSpeaker(settings.tts_program, settings.tts_voice)
