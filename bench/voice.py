"""Voice transcription benchmark: real-time factor and word error rate of each available engine.

Speech is synthesised with espeak-ng (en-us, 150 wpm) and encoded to OGG/Opus 48 kHz like a
Telegram voice note; each engine transcribes it end to end (Opus decoding and resampling
included). Real-time factor = seconds of compute per second of audio (lower is better; < 1 is
faster than real time). WER = word edits / reference words over the whole set.

    .venv/bin/python bench/voice.py [--cores 2] [--whisper-model DIR] [--long-repeats 3]

faster-whisper is measured only when it is installed and --whisper-model names a CTranslate2
Whisper model directory (nothing is downloaded).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.voice import Transcriber, VoiceSettings, build_transcriber  # noqa: E402

SENTENCES = [
    "please call my mother tomorrow morning",
    "i want to buy some milk and bread",
    "send me the report before the meeting",
    "the children are playing in the garden",
    "we need to go to the store",
    "my friend lives in a small house",
    "remind me to read the book tonight",
    "what time is the train to london",
    "the weather is nice today",
    "can you help me write a letter",
]


def speak(text: str) -> tuple[np.ndarray, int]:
    wav = subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", "150", "--stdout", text], capture_output=True, check=True
    ).stdout
    samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return soxr.resample(samples, rate, 48_000), 48_000


def opus(samples: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="OGG", subtype="OPUS")
    return buffer.getvalue()


def word_edits(reference: list[str], hypothesis: list[str]) -> int:
    """Levenshtein distance over words (a dozen lines; not worth a dependency for a benchmark)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i]
        for j, hyp in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp)))
        previous = current
    return previous[-1]


def normalise(text: str) -> list[str]:
    return "".join(c for c in text.lower() if c.isalnum() or c in " '").split()


def worker_cpu_s(transcriber: Transcriber) -> float:
    """CPU seconds used so far by the engine's worker process (pocketsphinx), 0 for in-process engines."""
    pid = getattr(transcriber.model(), "pid", None)
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def cpu_s(transcriber: Transcriber) -> float:
    return time.process_time() + worker_cpu_s(transcriber)


def measure(
    name: str,
    transcriber: Transcriber,
    notes: list[bytes],
    long_note: bytes,
    repeats: int,
    show: int,
) -> None:
    started = time.perf_counter()
    transcriber.model()
    load_s = time.perf_counter() - started
    transcriber.transcribe_sync(notes[0])  # first call pays one-off costs (caches, page faults)
    compute = audio = 0.0
    edits = words = 0
    cpu_before = cpu_s(transcriber)
    for i, (sentence, note) in enumerate(zip(SENTENCES, notes, strict=True)):
        t = transcriber.transcribe_sync(note)
        compute += t.compute_s
        audio += t.duration_s
        edits += word_edits(sentence.split(), normalise(t.text))
        words += len(sentence.split())
        if i < show:
            print(f"    {sentence!r:45} -> {t.text!r}")
    cpu_short = cpu_s(transcriber) - cpu_before
    cpu_before = cpu_s(transcriber)
    long = transcriber.transcribe_sync(long_note)
    cpu_long = cpu_s(transcriber) - cpu_before
    reference = " ".join(SENTENCES * repeats).split()
    long_wer = word_edits(reference, normalise(long.text)) / len(reference)
    print(f"  {name}: load {load_s:.2f} s")
    print(
        f"    short notes ({len(notes)}, {audio:.1f} s of audio): RTF wall {compute / audio:.3f}, "
        f"RTF cpu {cpu_short / audio:.3f}, WER {edits / words:.1%}"
    )
    print(
        f"    long note ({long.duration_s:.0f} s): RTF wall {long.real_time_factor:.3f}, "
        f"RTF cpu {cpu_long / long.duration_s:.3f}, WER {long_wer:.1%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--cores", type=int, default=2, help="CPU cores to pin this process (and its workers) to."
    )
    parser.add_argument(
        "--whisper-model", type=Path, help="CTranslate2 Whisper model directory for faster-whisper."
    )
    parser.add_argument(
        "--long-repeats",
        type=int,
        default=3,
        help="Times the sentence set repeats in the long note.",
    )
    parser.add_argument(
        "--show", type=int, default=4, help="Example transcripts printed per engine."
    )
    args = parser.parse_args()
    if shutil.which("espeak-ng") is None:
        sys.exit("espeak-ng is needed to synthesise the speech: apt-get install espeak-ng")
    available = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, available[: args.cores])  # inherited by the pocketsphinx worker process
    print(
        f"cores: {len(os.sched_getaffinity(0))} of {os.cpu_count()}, load average {os.getloadavg()[0]:.1f} "
        f"(wall RTF suffers when other work shares the cores; cpu RTF counts this process and its worker)"
    )
    print(f"{len(SENTENCES)} sentences, espeak-ng en-us 150 wpm, OGG/Opus 48 kHz")

    spoken = [speak(s) for s in SENTENCES]
    notes = [opus(samples, rate) for samples, rate in spoken]
    pause = np.zeros(48_000, dtype=np.float32)
    long_note = opus(
        np.concatenate(
            [part for samples, _ in spoken for part in (samples, pause)] * args.long_repeats
        ),
        48_000,
    )

    engines: list[tuple[str, VoiceSettings | None, str]] = [("pocketsphinx", VoiceSettings(), "")]
    if importlib.util.find_spec("faster_whisper") is None:
        engines.append(
            ("faster-whisper", None, "not installed (pip install 'familiar[voice-whisper]')")
        )
    elif args.whisper_model is None:
        engines.append(("faster-whisper", None, "no --whisper-model directory given"))
    else:
        engines.append(
            (
                "faster-whisper",
                VoiceSettings(
                    engine="faster-whisper",
                    model_path=args.whisper_model,
                    threads=args.cores,
                    max_duration_s=3600,
                ),
                "",
            )
        )
    for name, settings, why_not in engines:
        if settings is None:
            print(f"  {name}: skipped, {why_not}")
            continue
        transcriber = build_transcriber(settings.model_copy(update={"max_duration_s": 3600}))
        try:
            measure(name, transcriber, notes, long_note, args.long_repeats, args.show)
        finally:
            transcriber.close()


if __name__ == "__main__":
    main()
