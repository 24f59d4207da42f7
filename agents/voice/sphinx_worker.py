"""The pocketsphinx worker process: ``python -m agents.voice.sphinx_worker``.

pocketsphinx's Cython binding holds the GIL for the whole of each call (seconds for a long
utterance); in a thread of the daemon that would freeze the event loop, so the decoder lives in
this separate process, started and loaded once. multiprocessing's spawn would re-import the
caller's ``__main__`` (breaking scripts without a main guard), hence this small pipe protocol:

- the worker writes ``{"ready": true}`` once the model is loaded;
- per request the parent writes a header ``<I f`` (byte count, chunk seconds) and 16 kHz 16-bit
  mono PCM; the worker answers one JSON line ``{"text": ...}`` or ``{"error": ...}``.

Its own voice-activity detector (``Endpointer``) finds the speech regions: none means silence
(pocketsphinx alone "hears" a word in three seconds of nothing), and long recordings are cut
between regions into chunks of at most ``chunk_s`` seconds, each decoded as one utterance, so
memory and search stay bounded however long the note is.
"""

from __future__ import annotations

import json
import sys
from typing import Any, BinaryIO

import numpy as np

from agents.voice.audio import SAMPLE_RATE
from agents.voice.pocketsphinx_engine import HEADER

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


def chunks(regions: list[Region], total_s: float, chunk_s: float) -> list[Region]:
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


def decode(decoder: Any, raw: bytes, chunk_s: float) -> str:
    pcm = np.frombuffer(raw, dtype="<i2")
    texts = []
    for start, end in chunks(speech_regions(raw), len(pcm) / SAMPLE_RATE, chunk_s):
        decoder.start_utt()
        # full_utt: the cepstral mean comes from this chunk as a whole, not a running estimate
        # carried over from the previous recording (more accurate, and independent of order).
        decoder.process_raw(
            pcm[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)].tobytes(), full_utt=True
        )
        decoder.end_utt()
        hyp = decoder.hyp()
        if hyp is not None and hyp.hypstr:
            texts.append(hyp.hypstr)
    return " ".join(texts)


def _answer(out: BinaryIO, message: dict[str, Any]) -> None:
    out.write(json.dumps(message).encode() + b"\n")
    out.flush()


def serve(inp: BinaryIO, out: BinaryIO) -> None:
    from pocketsphinx import Decoder

    # The default configuration is the bundled en-us model; FATAL keeps its chatter off stderr.
    decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
    _answer(out, {"ready": True})
    while True:
        header = inp.read(HEADER.size)
        if len(header) < HEADER.size:
            return  # the parent closed the pipe: shut down
        size, chunk_s = HEADER.unpack(header)
        raw = inp.read(size)
        try:
            _answer(out, {"text": decode(decoder, raw, chunk_s)})
        except Exception as exc:  # report, and stay alive for the next recording
            _answer(out, {"error": f"{type(exc).__name__}: {exc}"})


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
