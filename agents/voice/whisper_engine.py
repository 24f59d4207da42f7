"""The better local engine: faster-whisper (Whisper on CTranslate2) with a model the user provides.

Optional: ``pip install 'familiar[voice-whisper]'`` and a converted model directory in
``voice.model_path`` (for example ``ct2-transformers-converter --model openai/whisper-small
--output_dir whisper-small-ct2 --copy_files tokenizer.json --quantization int8``, done once on
a machine with internet). The model is opened with ``local_files_only`` so nothing is fetched.
faster-whisper cuts long audio into 30-second windows itself, and its bundled Silero VAD skips
silence.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agents.voice.errors import EngineUnavailable
from agents.voice.transcriber import Transcriber

MODEL_FILE = "model.bin"


class FasterWhisperTranscriber(Transcriber):
    """Whisper speech recognition from a local CTranslate2 model directory."""

    name = "faster-whisper"

    def _load(self) -> Any:
        path = self.settings.model_path
        if path is None or not (path / MODEL_FILE).is_file():
            where = "is not set" if path is None else f"({path}) holds no {MODEL_FILE}"
            raise EngineUnavailable(
                f"voice.engine is faster-whisper but voice.model_path {where}.",
                fix="Set FAMILIAR_VOICE__MODEL_PATH to a CTranslate2 Whisper model directory, "
                "or FAMILIAR_VOICE__ENGINE=pocketsphinx.",
            )
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise EngineUnavailable(
                "The faster-whisper package is not installed (voice.engine = faster-whisper).",
                fix="pip install 'familiar[voice-whisper]' (or faster-whisper), "
                "or set FAMILIAR_VOICE__ENGINE=pocketsphinx.",
            ) from None
        try:
            return WhisperModel(
                str(path),
                device="cpu",
                compute_type="int8",
                cpu_threads=self.settings.threads,
                local_files_only=True,
            )
        except Exception as exc:  # CTranslate2 raises RuntimeError/ValueError for a bad model
            raise EngineUnavailable(
                f"The Whisper model in {path} (voice.model_path) cannot be loaded: {exc}",
                fix="Point FAMILIAR_VOICE__MODEL_PATH at a complete CTranslate2 Whisper model.",
            ) from None

    def _recognise(self, model: Any, samples: np.ndarray, language: str) -> str:
        segments, _info = model.transcribe(
            samples,
            language=None if language == "auto" else language,
            beam_size=1,
            vad_filter=True,
            condition_on_previous_text=False,
        )
        # ``segments`` is a generator: the work happens while it is consumed, here in the thread.
        return " ".join(segment.text.strip() for segment in segments)
