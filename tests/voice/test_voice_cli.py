"""``familiar transcribe FILE``: prints the transcript, or one clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import typer
from typer.testing import CliRunner

from bot.cli.voice import transcribe_command
from tests.voice.conftest import Synth, to_opus, word_recall

SENTENCE = "please call my mother tomorrow morning"


def cli() -> typer.Typer:
    # Registered by bot/cli/app.py as `familiar transcribe`; mounted alone here so the test does not
    # depend on that wiring.
    app = typer.Typer()
    app.command("transcribe")(transcribe_command)
    app.command("other")(lambda: None)  # two commands keep "transcribe" a sub-command
    return app


def test_prints_the_transcript_of_a_voice_note(synth: Synth, tmp_path: Path) -> None:
    path = tmp_path / "note.ogg"
    path.write_bytes(to_opus(*synth(SENTENCE)))
    result = CliRunner().invoke(cli(), ["transcribe", str(path), "--verbose"])
    assert result.exit_code == 0, result.output
    assert "engine pocketsphinx" in result.stderr
    assert word_recall(SENTENCE, result.stdout) >= 0.6, result.stdout


def test_silence_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "quiet.wav"
    sf.write(path, np.zeros(16_000 * 2, dtype=np.float32), 16_000)
    result = CliRunner().invoke(cli(), ["transcribe", str(path)])
    assert result.exit_code == 1 and "no speech heard" in result.stderr and result.stdout == ""


def test_corrupt_file_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.ogg"
    path.write_bytes(b"OggS" + bytes(100))
    result = CliRunner().invoke(cli(), ["transcribe", str(path)])
    assert (
        result.exit_code == 2 and result.stderr.startswith("error: ") and "corrupt" in result.stderr
    )
    assert "Traceback" not in result.output


def test_engine_override_names_the_missing_setting(tmp_path: Path) -> None:
    path = tmp_path / "quiet.wav"
    sf.write(path, np.zeros(16_000, dtype=np.float32), 16_000)
    result = CliRunner().invoke(cli(), ["transcribe", str(path), "--engine", "faster-whisper"])
    assert (
        result.exit_code == 2
        and "voice.model_path" in result.stderr
        and "FAMILIAR_VOICE__MODEL_PATH" in result.stderr
    )
