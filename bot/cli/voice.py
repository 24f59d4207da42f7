"""``familiar transcribe FILE`` prints what the voice engine hears; ``familiar speak TEXT --out F``
writes what the text-to-speech engine says.

Useful to check the engine setup (model path, language) and to transcribe recordings kept when
transcription was unavailable. Registered by ``bot/cli/app.py`` as a top-level command.
"""

from __future__ import annotations

from pathlib import Path

import typer

from memory.errors import FamiliarError

FILE_ARG = typer.Argument(
    ..., help="Audio file: OGG/Opus voice note, WAV, FLAC, MP3 (M4A/MP4 need ffmpeg)."
)
ENGINE_OPT = typer.Option(None, "--engine", help="Engine to use instead of voice.engine.")
MODEL_OPT = typer.Option(None, "--model-path", help="Model directory instead of voice.model_path.")
LANGUAGE_OPT = typer.Option(None, "--language", help="Language instead of voice.language.")
VERBOSE_OPT = typer.Option(
    False, "--verbose", "-v", help="Also print duration, engine and real-time factor."
)


def transcribe_command(
    file: Path = FILE_ARG,
    engine: str | None = ENGINE_OPT,
    model_path: Path | None = MODEL_OPT,
    language: str | None = LANGUAGE_OPT,
    verbose: bool = VERBOSE_OPT,
) -> None:
    """Transcribe an audio file with the configured voice engine and print the text."""
    from agents.voice import VoiceSettings, build_transcriber
    from bot.config import load_settings

    try:
        # Until bot/config.py composes the [voice] section, the defaults apply.
        voice = getattr(load_settings(), "voice", None) or VoiceSettings.model_validate({})
        overrides = {"engine": engine, "model_path": model_path, "language": language}
        voice = voice.model_validate(
            voice.model_dump() | {k: v for k, v in overrides.items() if v is not None}
        )
        transcriber = build_transcriber(voice)
        try:
            transcript = transcriber.transcribe_sync(file)
        finally:
            transcriber.close()
    except FamiliarError as exc:
        typer.echo(f"error: {exc.explain()}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except ValueError as exc:  # a bad --engine: pydantic names the allowed values
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if verbose:
        typer.echo(
            f"# {transcript.duration_s:.1f} s of audio, engine {transcript.engine}, "
            f"real-time factor {transcript.real_time_factor:.2f}",
            err=True,
        )
    if transcript.heard_nothing:
        typer.echo("(no speech heard)", err=True)
        raise typer.Exit(1)
    typer.echo(transcript.text)


SPEAK_TEXT = typer.Argument(..., help="What to say.")
SPEAK_OUT = typer.Option(
    ..., "--out", "-o", help="Where to write the voice note (OGG/Opus, as Telegram sends them)."
)


def speak_command(text: str = SPEAK_TEXT, out: Path = SPEAK_OUT) -> None:
    """Speak TEXT with the configured text-to-speech engine into an OGG/Opus file."""
    from agents.voice.tts import build_speaker
    from bot.config import load_settings

    try:
        speaker = build_speaker(load_settings().voice)
        data = speaker.voice_note_sync(text)
    except FamiliarError as exc:
        typer.echo(f"error: {exc.explain()}", err=True)
        raise typer.Exit(exc.exit_code) from None
    out.write_bytes(data)
    typer.echo(f"wrote {len(data):,} bytes of speech ({speaker.name}) to {out}")
