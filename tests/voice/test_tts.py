"""Text to speech: espeak-ng to OGG/Opus, checked by ear with the project's own recogniser."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import soundfile as sf
from typer.testing import CliRunner

from agents.voice import Transcriber
from agents.voice.tts import EspeakSpeaker, PiperSpeaker, SpeechError, speakable
from tests.voice.conftest import word_recall

# pocketsphinx hears espeak-ng's robotic voice poorly on many sentences; these everyday ones it
# can hear, so a loss of speech in synthesis or encoding (rate, channels, Opus) shows as a drop.
SENTENCES = ["please call my mother tomorrow morning", "i will be home late tonight"]

needs_espeak = pytest.mark.requires_tool("espeak-ng", "it is the default text-to-speech engine")


@needs_espeak
def test_spoken_text_is_heard_back_by_our_speech_recognition(sphinx: Transcriber) -> None:
    speaker = EspeakSpeaker()
    heard = []
    for sentence in SENTENCES:
        audio = speaker.voice_note_sync(sentence)
        info = sf.info(io.BytesIO(audio))
        assert (info.format, info.subtype, info.samplerate, info.channels) == (
            "OGG",
            "OPUS",
            48_000,
            1,
        )
        heard.append(sphinx.transcribe_sync(audio).text)
    assert word_recall(" ".join(SENTENCES), " ".join(heard)) >= 0.6, heard


def test_only_the_words_are_read_aloud() -> None:
    text = "**Done.** See [the docs](https://example.com/x) or https://a.example\n```py\nx = 1\n```"
    assert speakable(text) == "Done. See the docs or (code left out)"
    long = "One sentence here. " * 300
    cut = speakable(long, max_chars=100)
    assert len(cut) <= 100 and cut.endswith(".")


def test_missing_engines_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(SpeechError, match="no-such-tts is not installed"):
        EspeakSpeaker(program="no-such-tts").voice_note_sync("hello")
    with pytest.raises(SpeechError, match="no Piper voice at"):
        PiperSpeaker(tmp_path / "missing.onnx").voice_note_sync("hello")
    with pytest.raises(SpeechError, match="nothing to say"):
        EspeakSpeaker().voice_note_sync("  https://example.com  ")


@needs_espeak
def test_familiar_speak_writes_a_voice_note(tmp_path: Path) -> None:
    from bot.cli import app

    out = tmp_path / "hello.ogg"
    result = CliRunner().invoke(app, ["speak", "good morning", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"to {out}" in result.output
    samples, rate = sf.read(out)
    assert rate == 48_000 and len(samples) > rate * 0.3  # some speech, not an empty file
