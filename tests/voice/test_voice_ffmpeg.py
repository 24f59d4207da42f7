"""The ffmpeg route: M4A (AAC) audio files and MP4 video notes, decoded by a real ffmpeg.

Speech is synthesised with espeak-ng and encoded by ffmpeg the way phones and Telegram do:
AAC in an M4A, and a square H.264 + AAC MP4 (a video note). Both are left with their index
(moov) at the end of the file, as ffmpeg writes by default, so they cannot be read from a pipe.
"""

from __future__ import annotations

import asyncio
import shutil
import stat
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from agents.voice import AudioDecodeError, AudioTooLarge, Transcriber
from agents.voice.audio import load_audio
from tests.conftest import require_tool
from tests.voice.conftest import Synth, word_recall

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.requires_tool("ffmpeg", "it decodes M4A and MP4")
LIMITS = {"max_bytes": 20_000_000, "max_duration_s": 600.0}
SENTENCE = "please call my mother tomorrow morning"


def ffmpeg(*args: str) -> None:
    subprocess.run(
        [FFMPEG or "ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True, timeout=60
    )


def encode_m4a(wav: Path, out: Path) -> bytes:
    ffmpeg("-i", str(wav), "-c:a", "aac", "-b:a", "48k", str(out))
    return out.read_bytes()


def encode_video_note(wav: Path | None, out: Path, seconds: float = 2.0) -> bytes:
    """A Telegram-like video note: square black H.264 video with the speech as AAC (or no sound)."""
    video = ["-f", "lavfi", "-i", f"color=c=black:s=64x64:r=10:d={seconds}"]
    audio = ["-i", str(wav), "-c:a", "aac", "-b:a", "48k", "-shortest"] if wav else []
    ffmpeg(
        *video, *audio, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(out)
    )
    return out.read_bytes()


def envelope(samples: np.ndarray, rate: int) -> np.ndarray:
    """Loudness per 20 ms: where the words are, whatever the codec did to the waveform."""
    frame = rate // 50
    usable = len(samples) // frame * frame
    return np.sqrt((samples[:usable].reshape(-1, frame) ** 2).mean(axis=1))


def same_speech(decoded: np.ndarray, original: np.ndarray, rate: int) -> float:
    """Best correlation of the two loudness envelopes within 100 ms of shift (codec delay)."""
    a, b = envelope(decoded, rate), envelope(original, rate)
    n = min(len(a), len(b)) - 5
    return max(float(np.corrcoef(a[s : s + n], b[:n])[0, 1]) for s in range(5))


@pytest.fixture(scope="module")
def speech(synth: Synth, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The sentence as 16 kHz samples, an M4A and a video note (encoded once for the module)."""
    require_tool("ffmpeg", "it encodes the test files")
    samples, rate = synth(SENTENCE)
    folder = tmp_path_factory.mktemp("ffmpeg-speech")
    wav = folder / "speech.wav"
    sf.write(wav, samples, rate, subtype="PCM_16")
    return {
        "samples": soxr.resample(samples, rate, 16_000).astype(np.float32),
        "m4a": encode_m4a(wav, folder / "speech.m4a"),
        "mp4": encode_video_note(wav, folder / "note.mp4", seconds=len(samples) / rate + 1),
    }


@needs_ffmpeg
def test_m4a_becomes_16k_mono_with_the_same_speech(speech: dict) -> None:
    m4a, original = speech["m4a"], speech["samples"]
    assert m4a[4:8] == b"ftyp" and b"mp4a" in m4a  # really AAC in an MP4 container
    audio = load_audio(m4a, **LIMITS)
    assert audio.source_format == "ffmpeg"
    assert (
        audio.sample_rate == 16_000
        and audio.samples.ndim == 1
        and audio.samples.dtype == np.float32
    )
    assert audio.duration_s == pytest.approx(len(original) / 16_000, abs=0.15)
    assert same_speech(audio.samples, original, 16_000) > 0.9


@needs_ffmpeg
def test_video_note_gives_its_sound_track(speech: dict) -> None:
    mp4, original = speech["mp4"], speech["samples"]
    assert b"avc1" in mp4 and b"mp4a" in mp4  # H.264 video and AAC audio, as Telegram sends
    audio = load_audio(mp4, **LIMITS)
    assert audio.sample_rate == 16_000
    assert audio.duration_s == pytest.approx(len(original) / 16_000, abs=0.15)
    assert same_speech(audio.samples, original, 16_000) > 0.9


@needs_ffmpeg
def test_m4a_is_transcribed_by_the_offline_default(speech: dict, sphinx: Transcriber) -> None:
    transcript = sphinx.transcribe_sync(speech["m4a"])
    assert word_recall(SENTENCE, transcript.text) >= 0.6, transcript.text


@needs_ffmpeg
def test_video_note_is_transcribed_without_blocking_the_event_loop(
    speech: dict, sphinx: Transcriber, tmp_path: Path
) -> None:
    async def main() -> tuple[float, str]:
        gaps: list[float] = []
        task = asyncio.create_task(sphinx.transcribe(speech["mp4"]))
        last = time.perf_counter()
        while not task.done():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
        return max(gaps), (await task).text

    longest_gap, text = asyncio.run(main())
    assert word_recall(SENTENCE, text) >= 0.6, text
    assert longest_gap < 0.25, f"the event loop stalled for {longest_gap:.2f} s"


@needs_ffmpeg
def test_a_file_name_like_an_option_or_a_protocol_is_read_as_a_file(
    speech: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "-y:note.m4a").write_bytes(speech["m4a"])
    monkeypatch.chdir(tmp_path)
    assert load_audio(Path("-y:note.m4a"), **LIMITS).duration_s > 2.0


@needs_ffmpeg
@pytest.mark.parametrize(
    "name, cut",
    [("truncated download", lambda d: d[: len(d) // 2]), ("header only", lambda d: d[:64])],
)
def test_corrupt_m4a_gets_a_clear_error(speech: dict, name: str, cut) -> None:
    with pytest.raises(AudioDecodeError) as caught:
        load_audio(cut(speech["m4a"]), **LIMITS)
    message = str(caught.value)
    assert "corrupt" in message and "moov atom not found" in message, message
    assert "familiar-voice-" not in message and "0x" not in message  # no temp paths or addresses
    assert "OGG" in caught.value.fix


@needs_ffmpeg
def test_video_note_without_sound_says_so(tmp_path: Path) -> None:
    silent = encode_video_note(None, tmp_path / "silent.mp4")
    with pytest.raises(AudioDecodeError, match="no sound track"):
        load_audio(silent, **LIMITS)


@needs_ffmpeg
@pytest.mark.parametrize(
    "limit_s, says",
    [
        (2.0, "is 0:03 long"),  # 2.6 s of speech, within the 1 s ffmpeg decodes past the limit
        (1.0, "is longer than 0:01"),  # ffmpeg stopped at 2 s: the full length is not known
    ],
)
def test_duration_limit_stops_ffmpeg_and_names_the_setting(
    speech: dict, limit_s: float, says: str
) -> None:
    assert 2.2 < len(speech["samples"]) / 16_000 < 2.9  # the sentence these limits are chosen for
    with pytest.raises(AudioTooLarge) as caught:
        load_audio(speech["m4a"], max_bytes=20_000_000, max_duration_s=limit_s)
    assert says in str(caught.value) and "voice.max_duration_s" in str(caught.value)
    assert "FAMILIAR_VOICE__MAX_DURATION_S" in caught.value.fix


@needs_ffmpeg
def test_size_limit_is_checked_before_ffmpeg_runs(speech: dict) -> None:
    with pytest.raises(AudioTooLarge, match="voice.max_bytes"):
        load_audio(speech["mp4"], max_bytes=len(speech["mp4"]) - 1, max_duration_s=600.0)


def test_an_ffmpeg_that_cannot_run_names_the_setting(tmp_path: Path) -> None:
    broken = tmp_path / "ffmpeg"
    broken.write_bytes(b"\x7fELF not really a program")  # executable bit, but no valid image
    broken.chmod(broken.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(AudioDecodeError, match="could not be run") as caught:
        load_audio(b"\x00\x00\x00\x20ftypM4A " + bytes(500), **LIMITS, ffmpeg=str(broken))
    assert "FAMILIAR_VOICE__FFMPEG" in caught.value.fix
