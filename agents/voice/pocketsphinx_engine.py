"""The offline default engine: CMU pocketsphinx with the en-us model bundled in its PyPI wheel.

Nothing is downloaded: ``pocketsphinx.get_model_path()`` holds the acoustic model, dictionary and
language model. Its own voice-activity detector (``Endpointer``) finds the speech regions: none
means silence (pocketsphinx alone would happily "hear" a word in three seconds of nothing), and
long recordings are cut between regions into chunks of at most ``CHUNK_S`` seconds, each decoded
as one utterance, so memory and search stay bounded however long the note is.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agents.voice.audio import SAMPLE_RATE
from agents.voice.errors import EngineUnavailable
from agents.voice.transcriber import Transcriber

CHUNK_S = 20.0
# Context kept around each speech region: the detector decides late, and clipping the onset of
# the first word costs more accuracy than a little silence does.
PAD_S = 0.4

Region = tuple[float, float]


def speech_regions(pcm: bytes) -> list[Region]:
    """(start, end) seconds of each speech region in 16 kHz 16-bit mono ``pcm``."""
    from pocketsphinx import Endpointer

    ep = Endpointer(sample_rate=SAMPLE_RATE)
    size = ep.frame_bytes
    regions: list[Region] = []
    start: float | None = None
    for offset in range(0, len(pcm), size):
        frame = pcm[offset : offset + size]
        was_in_speech = ep.in_speech
        speech = ep.process(frame) if len(frame) == size else ep.end_stream(frame)
        if speech is not None and not was_in_speech:
            start = ep.speech_start
        if speech is not None and not ep.in_speech and start is not None:
            regions.append((start, ep.speech_end))
            start = None
    if start is not None:  # still talking when the recording ends
        regions.append((start, len(pcm) / 2 / SAMPLE_RATE))
    return regions


def chunks(regions: list[Region], total_s: float, chunk_s: float = CHUNK_S) -> list[Region]:
    """Group speech regions into padded chunks of at most ``chunk_s`` (longer regions are cut)."""
    pieces: list[Region] = []
    for start, end in regions:
        while end - start > chunk_s:
            pieces.append((start, start + chunk_s))
            start += chunk_s
        pieces.append((start, end))
    grouped: list[Region] = []
    for start, end in pieces:
        if grouped and end - grouped[-1][0] <= chunk_s:
            grouped[-1] = (grouped[-1][0], end)
        else:
            grouped.append((start, end))
    return [(max(0.0, s - PAD_S), min(total_s, e + PAD_S)) for s, e in grouped]


class PocketsphinxTranscriber(Transcriber):
    """English speech recognition with pocketsphinx's bundled model (the offline default)."""

    name = "pocketsphinx"

    def _load(self) -> Any:
        if self.settings.language.lower() not in ("en", "en-us", "auto"):
            raise EngineUnavailable(
                f"pocketsphinx only has an English model; voice.language is {self.settings.language!r}.",
                fix="Set FAMILIAR_VOICE__LANGUAGE=en, or use FAMILIAR_VOICE__ENGINE=faster-whisper "
                "with a multilingual model in FAMILIAR_VOICE__MODEL_PATH.",
            )
        try:
            from pocketsphinx import Decoder
        except ImportError:
            raise EngineUnavailable(
                "The pocketsphinx package is not installed (voice.engine = pocketsphinx).",
                fix="pip install pocketsphinx, or set FAMILIAR_VOICE__ENGINE=none.",
            ) from None
        # The default configuration is the bundled en-us model; FATAL keeps its chatter off stderr.
        return Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")

    def _recognise(self, model: Any, samples: np.ndarray, language: str) -> str:
        pcm = (samples * 32767).astype("<i2")
        raw = pcm.tobytes()
        texts = []
        for start, end in chunks(speech_regions(raw), len(pcm) / SAMPLE_RATE):
            model.start_utt()
            model.process_raw(pcm[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)].tobytes(), full_utt=True)
            model.end_utt()
            hyp = model.hyp()
            if hyp is not None and hyp.hypstr:
                texts.append(hyp.hypstr)
        return " ".join(texts)
