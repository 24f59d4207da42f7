"""The transcriber interface: audio in, ``Transcript`` out, never blocking the event loop.

A ``Transcriber`` decodes the audio (``agents.voice.audio``), loads its engine once, lazily, on
first use, and recognises speech in a worker thread. Engines implement two methods:

- ``_load()``: build the recogniser (slow: a model read from disk); raise ``EngineUnavailable``
  naming the setting to fix when the engine or its model is missing;
- ``_recognise(model, samples, language)``: 16 kHz mono float32 samples in, text out;
- optionally ``_unload(model)``, called by ``close()`` (the composition root calls it at shutdown).

One recognition runs at a time per transcriber: the engines are stateful and CPU-bound, and on
a small machine running two at once only makes both slower.
"""

from __future__ import annotations

import asyncio
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.voice.audio import load_audio
from agents.voice.settings import VoiceSettings


@dataclass(frozen=True)
class Transcript:
    """What was heard. ``text`` is "" when the recording held no speech (see ``heard_nothing``)."""

    text: str
    duration_s: float
    engine: str
    language: str
    compute_s: float

    @property
    def heard_nothing(self) -> bool:
        return not self.text.strip()

    @property
    def real_time_factor(self) -> float:
        """Seconds of compute per second of audio (decoding included)."""
        return self.compute_s / self.duration_s if self.duration_s else 0.0


class Transcriber(ABC):
    """Turns a recording into text with one engine; see the module docstring for the contract."""

    name: str = "abstract"

    def __init__(self, settings: VoiceSettings) -> None:
        self.settings = settings
        self._model: Any = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()

    @abstractmethod
    def _load(self) -> Any:
        """Build the engine's recogniser; raise EngineUnavailable if it cannot be."""

    @abstractmethod
    def _recognise(self, model: Any, samples: np.ndarray, language: str) -> str:
        """Recognise speech in 16 kHz mono float32 ``samples``; "" when there is none."""

    async def transcribe(self, source: Path | str | bytes | bytearray) -> Transcript:
        """Decode and transcribe ``source`` (a path or the file's bytes) in a worker thread."""
        return await asyncio.to_thread(self.transcribe_sync, source)

    async def warm_up(self) -> None:
        """Load the engine now (in a thread) rather than on the first voice note."""
        await asyncio.to_thread(self.model)

    def model(self) -> Any:
        """The engine's recogniser, loaded on first use (thread-safe, loaded once)."""
        with self._load_lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    def close(self) -> None:
        """Release the engine (a worker process, a model in memory); it reloads if used again."""
        with self._load_lock:
            model, self._model = self._model, None
        if model is not None:
            self._unload(model)

    def _unload(self, model: Any) -> None:
        """Engines holding more than memory (a process) release it here."""
        del model  # by default, dropping the reference is enough

    def transcribe_sync(self, source: Path | str | bytes | bytearray) -> Transcript:
        """Blocking form of ``transcribe``, for the CLI, benchmarks and worker threads."""
        started = time.perf_counter()
        s = self.settings
        audio = load_audio(
            source, max_bytes=s.max_bytes, max_duration_s=s.max_duration_s, ffmpeg=s.ffmpeg
        )
        model = self.model()
        with self._run_lock:
            text = self._recognise(model, audio.samples, s.language)
        return Transcript(
            text=" ".join(text.split()),
            duration_s=audio.duration_s,
            engine=self.name,
            language=s.language,
            compute_s=time.perf_counter() - started,
        )
