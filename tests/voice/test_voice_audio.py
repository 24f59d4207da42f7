"""Decoding: OGG/Opus voice notes, WAV, and the broken files people really send."""

from __future__ import annotations

import io
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from agents.voice import AudioDecodeError, AudioTooLarge
from agents.voice.audio import load_audio

LIMITS = {"max_bytes": 20_000_000, "max_duration_s": 600.0}


def tone(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def encode(samples: np.ndarray, rate: int, fmt: str, subtype: str) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


def test_opus_voice_note_becomes_16k_mono_with_its_pitch() -> None:
    data = encode(tone(2.0, 48_000), 48_000, "OGG", "OPUS")
    audio = load_audio(data, **LIMITS)
    assert audio.sample_rate == 16_000
    assert audio.samples.ndim == 1 and audio.samples.dtype == np.float32
    assert audio.duration_s == pytest.approx(2.0, abs=0.05)
    assert audio.source_format == "OGG/OPUS"
    assert dominant_hz(audio.samples, 16_000) == pytest.approx(440, abs=2)


def test_stereo_wav_from_a_path_is_mixed_to_mono(tmp_path: Path) -> None:
    left, right = tone(1.5, 44_100, 300), tone(1.5, 44_100, 300)
    path = tmp_path / "note.wav"
    sf.write(path, np.stack([left, right], axis=1), 44_100, subtype="PCM_16")
    audio = load_audio(path, **LIMITS)
    assert audio.duration_s == pytest.approx(1.5, abs=0.01)
    assert audio.source_format == "WAV/PCM_16"
    assert dominant_hz(audio.samples, 16_000) == pytest.approx(300, abs=2)
    assert np.abs(audio.samples).max() == pytest.approx(0.5, abs=0.02)


def test_bytearray_from_a_download_is_accepted() -> None:
    data = bytearray(encode(tone(1.0, 16_000), 16_000, "WAV", "PCM_16"))
    assert load_audio(data, **LIMITS).duration_s == pytest.approx(1.0, abs=0.01)


def test_truncated_opus_keeps_what_arrived() -> None:
    data = encode(tone(4.0, 48_000), 48_000, "OGG", "OPUS")
    audio = load_audio(data[: len(data) // 2], **LIMITS)
    assert 0.5 < audio.duration_s < 3.5  # some of it, not all of it, and no error


@pytest.mark.parametrize(
    "name, data, says",
    [
        ("garbage", b"this is not audio at all " * 40, "cannot be read here"),
        ("opus header only", encode(tone(1.0, 48_000), 48_000, "OGG", "OPUS")[:60], "corrupt"),
        (
            "wav header only",
            encode(tone(1.0, 16_000), 16_000, "WAV", "PCM_16")[:60],
            "holds no audio",
        ),
        ("empty", b"", "empty"),
    ],
    # By name: an Ogg stream's serial number is random, so the bytes differ from run to run
    # (and between the processes of a parallel run, which must collect the same tests).
    ids=["garbage", "opus header only", "wav header only", "empty"],
)
def test_broken_files_get_a_clear_error(name: str, data: bytes, says: str) -> None:
    with pytest.raises(AudioDecodeError) as caught:
        load_audio(data, **LIMITS, ffmpeg="/nonexistent/ffmpeg")
    assert says in str(caught.value), name


def test_unknown_format_without_ffmpeg_says_how_to_fix() -> None:
    with pytest.raises(AudioDecodeError) as caught:
        load_audio(b"\x00\x00\x00\x20ftypM4A " + bytes(500), **LIMITS, ffmpeg="/nonexistent/ffmpeg")
    assert "ffmpeg" in str(caught.value) and "FAMILIAR_VOICE__FFMPEG" in caught.value.fix


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(AudioDecodeError, match="nope.ogg"):
        load_audio(tmp_path / "nope.ogg", **LIMITS)


def test_size_limit_is_named_before_decoding() -> None:
    data = encode(tone(1.0, 16_000), 16_000, "WAV", "PCM_16")
    with pytest.raises(AudioTooLarge) as caught:
        load_audio(data, max_bytes=1000, max_duration_s=600)
    assert "voice.max_bytes" in str(caught.value) and "MAX_BYTES" in caught.value.fix


def test_duration_limit_is_named() -> None:
    data = encode(tone(5.0, 48_000), 48_000, "OGG", "OPUS")
    with pytest.raises(AudioTooLarge) as caught:
        load_audio(data, max_bytes=20_000_000, max_duration_s=2)
    assert "voice.max_duration_s" in str(caught.value)
    assert "0:05" in str(caught.value) and "0:02" in str(caught.value)


def fake_ffmpeg(tmp_path: Path, body: str) -> str:
    """A stand-in for ffmpeg honouring its command line: the input file, -ar, f32le on stdout."""
    script = tmp_path / "ffmpeg"
    script.write_text(f"#!{sys.executable}\nimport sys, struct, os\nargs = sys.argv[1:]\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_formats_libsndfile_cannot_read_go_through_ffmpeg(tmp_path: Path) -> None:
    # Writes one second of 0.25 at the -ar rate, after checking it was handed a real input file.
    ffmpeg = fake_ffmpeg(
        tmp_path,
        "src = args[args.index('-i') + 1]\n"
        "assert os.path.getsize(src) > 0 and '-vn' in args and args[args.index('-ac') + 1] == '1'\n"
        "rate = int(args[args.index('-ar') + 1])\n"
        "sys.stdout.buffer.write(struct.pack('<f', 0.25) * rate)",
    )
    audio = load_audio(b"\x00\x00\x00\x20ftypM4A " + bytes(500), **LIMITS, ffmpeg=ffmpeg)
    assert audio.source_format == "ffmpeg"
    assert audio.duration_s == pytest.approx(1.0)
    assert np.allclose(audio.samples, 0.25)


def test_ffmpeg_failure_is_reported_with_its_reason(tmp_path: Path) -> None:
    ffmpeg = fake_ffmpeg(tmp_path, "sys.stderr.write('moov atom not found\\n'); sys.exit(1)")
    with pytest.raises(AudioDecodeError, match="moov atom not found"):
        load_audio(b"\x00\x00\x00\x20ftypM4A " + bytes(500), **LIMITS, ffmpeg=ffmpeg)


@pytest.mark.skipif(os.name != "posix", reason="uses a script as the ffmpeg program")
def test_ffmpeg_output_over_the_duration_limit_is_refused(tmp_path: Path) -> None:
    ffmpeg = fake_ffmpeg(tmp_path, "sys.stdout.buffer.write(struct.pack('<f', 0.1) * 16000 * 4)")
    with pytest.raises(AudioTooLarge, match="voice.max_duration_s"):
        load_audio(
            b"\x00\x00\x00\x20ftypM4A " + bytes(500),
            max_bytes=10**6,
            max_duration_s=3,
            ffmpeg=ffmpeg,
        )
