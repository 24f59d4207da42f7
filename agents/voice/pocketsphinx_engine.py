"""The offline default engine: CMU pocketsphinx with the en-us model bundled in its PyPI wheel.

Nothing is downloaded: ``pocketsphinx.get_model_path()`` holds the acoustic model, dictionary and
language model. The decoder runs in a worker process (``agents.voice.sphinx_worker``, which
explains why and holds the voice-activity detection and chunking); this class starts it once,
lazily, and talks to it over pipes from the transcriber's thread.
"""

from __future__ import annotations

import importlib.util
import json
import struct
import subprocess
import sys
from typing import Any

import numpy as np

from agents.voice.errors import EngineUnavailable, VoiceError
from agents.voice.transcriber import Transcriber

CHUNK_S = 20.0
# Request header to the worker: PCM byte count, chunk length in seconds.
HEADER = struct.Struct("<If")


class PocketsphinxTranscriber(Transcriber):
    """English speech recognition with pocketsphinx's bundled model (the offline default)."""

    name = "pocketsphinx"
    chunk_s = CHUNK_S

    def _load(self) -> Any:
        if self.settings.language.lower() not in ("en", "en-us", "auto"):
            raise EngineUnavailable(
                f"pocketsphinx only has an English model; voice.language is {self.settings.language!r}.",
                fix="Set FAMILIAR_VOICE__LANGUAGE=en, or use FAMILIAR_VOICE__ENGINE=faster-whisper "
                "with a multilingual model in FAMILIAR_VOICE__MODEL_PATH.",
            )
        if importlib.util.find_spec("pocketsphinx") is None:
            raise EngineUnavailable(
                "The pocketsphinx package is not installed (voice.engine = pocketsphinx).",
                fix="pip install pocketsphinx, or set FAMILIAR_VOICE__ENGINE=none.",
            )
        worker = subprocess.Popen(
            [sys.executable, "-m", "agents.voice.sphinx_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            if not _reply(worker).get("ready"):
                raise VoiceError("worker did not report ready")
        except (VoiceError, ValueError) as exc:
            worker.kill()
            worker.wait()
            raise EngineUnavailable(
                f"pocketsphinx cannot load its model ({exc}).",
                fix="Reinstall it: pip install --force-reinstall pocketsphinx.",
            ) from None
        return worker

    def _recognise(self, model: Any, samples: np.ndarray, language: str) -> str:
        raw = (samples * 32767).astype("<i2").tobytes()
        try:
            model.stdin.write(HEADER.pack(len(raw), self.chunk_s) + raw)
            model.stdin.flush()
            answer = _reply(model)
        except (OSError, VoiceError):
            self.close()  # the worker died (killed, out of memory): a new one starts next time
            raise VoiceError(
                "The speech recogniser stopped unexpectedly; please try again."
            ) from None
        if "error" in answer:
            raise VoiceError(f"The speech recogniser failed: {answer['error']}")
        return str(answer["text"])

    def _unload(self, model: Any) -> None:
        try:
            model.stdin.close()  # the worker exits when its input ends
            model.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            model.kill()
            model.wait()


def _reply(worker: subprocess.Popen[bytes]) -> dict[str, Any]:
    assert worker.stdout is not None
    line = worker.stdout.readline()
    if not line:
        worker.wait()
        raise VoiceError(f"worker exited with status {worker.returncode}")
    return dict(json.loads(line))
