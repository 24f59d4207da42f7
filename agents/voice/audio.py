"""Decode an audio file (bytes or path) to 16 kHz mono float32 samples, within size/length limits.

libsndfile (through ``soundfile``, whose wheels bundle it with Ogg/Opus, Vorbis, FLAC and MP3)
reads Telegram voice notes and most audio files; ``soxr`` resamples. Formats libsndfile cannot
read (M4A/AAC audio files, MP4 video notes) go through an ``ffmpeg`` program when one is
installed. Audio is read and resampled in blocks, so a long file never sits in memory at 48 kHz.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from agents.voice.errors import AudioDecodeError, AudioTooLarge

SAMPLE_RATE = 16_000
# Below this there is nothing to transcribe: a header with a few samples is a broken file.
MIN_DURATION_S = 0.1
BLOCK_S = 10.0
# ffmpeg stops decoding this far past the duration limit: enough to know a recording is too
# long without decoding all of a 2-hour file.
_PAST_LIMIT_S = 1.0


@dataclass(frozen=True)
class Audio:
    """Mono float32 samples in [-1, 1] at ``sample_rate``."""

    samples: np.ndarray
    sample_rate: int
    source_format: str

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def load_audio(
    source: Path | str | bytes | bytearray,
    *,
    max_bytes: int,
    max_duration_s: float,
    ffmpeg: str = "ffmpeg",
    sample_rate: int = SAMPLE_RATE,
) -> Audio:
    """Decode ``source``; raise ``AudioTooLarge`` or ``AudioDecodeError`` with a clear message."""
    data = bytes(source) if isinstance(source, bytes | bytearray | memoryview) else None
    path = None if data is not None else Path(source)  # type: ignore[arg-type]
    size = len(data) if data is not None else _size(path)  # type: ignore[arg-type]
    if size > max_bytes:
        raise AudioTooLarge(
            f"The audio file is {size / 1e6:.1f} MB; the limit (voice.max_bytes) is {max_bytes / 1e6:.1f} MB.",
            fix="Send a shorter recording, or raise FAMILIAR_VOICE__MAX_BYTES.",
        )
    if size == 0:
        raise AudioDecodeError("The audio file is empty.", fix="Record the message again.")
    try:
        handle = sf.SoundFile(io.BytesIO(data) if data is not None else str(path))
    except sf.LibsndfileError as exc:
        audio = _via_ffmpeg(data, path, ffmpeg, max_duration_s, sample_rate, exc)
    else:
        with handle:
            audio = _read_blocks(handle, max_duration_s, sample_rate)
    if audio.duration_s < MIN_DURATION_S:
        raise AudioDecodeError(
            "The audio file holds no audio (it may be truncated).", fix="Record the message again."
        )
    return audio


def too_long(duration_s: float, max_duration_s: float, *, at_least: bool = False) -> AudioTooLarge:
    """The error for a recording over the limit; ``at_least`` when decoding stopped at ``duration_s``."""
    length = f"longer than {_clock(max_duration_s)}" if at_least else f"{_clock(duration_s)} long"
    return AudioTooLarge(
        f"The recording is {length}; the limit (voice.max_duration_s) is {_clock(max_duration_s)}.",
        fix="Send a shorter recording, or raise FAMILIAR_VOICE__MAX_DURATION_S.",
    )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise AudioDecodeError(f"Cannot read the audio file {path}: {exc.strerror}.") from None


def _read_blocks(handle: sf.SoundFile, max_duration_s: float, rate: int) -> Audio:
    source_rate = handle.samplerate
    if (
        handle.frames / source_rate > max_duration_s
    ):  # known from the header: refuse before decoding
        raise too_long(handle.frames / source_rate, max_duration_s)
    resampler = soxr.ResampleStream(source_rate, rate, 1, dtype="float32")
    parts: list[np.ndarray] = []
    read = 0
    try:
        for block in handle.blocks(int(BLOCK_S * source_rate), dtype="float32", always_2d=True):
            read += len(block)
            if read / source_rate > max_duration_s:  # a header can understate the length
                raise too_long(read / source_rate, max_duration_s)
            parts.append(resampler.resample_chunk(block.mean(axis=1)))
        parts.append(resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
    except sf.LibsndfileError as exc:
        raise AudioDecodeError(
            f"The audio file is corrupt ({exc.error_string}).", fix="Record the message again."
        ) from None
    samples = np.clip(np.concatenate(parts), -1.0, 1.0).astype(np.float32, copy=False)
    return Audio(samples, rate, f"{handle.format}/{handle.subtype}")


def _via_ffmpeg(
    data: bytes | None,
    path: Path | None,
    ffmpeg: str,
    max_duration_s: float,
    rate: int,
    cause: sf.LibsndfileError,
) -> Audio:
    program = shutil.which(ffmpeg)
    if program is None:
        if "not recognised" in cause.error_string.lower():
            raise AudioDecodeError(
                "This audio format cannot be read here (OGG/Opus, WAV, FLAC and MP3 can; "
                f"M4A and video notes need ffmpeg, and no ffmpeg program was found as {ffmpeg!r}).",
                fix="Install ffmpeg (apt-get install ffmpeg) or set FAMILIAR_VOICE__FFMPEG to its path.",
            ) from None
        raise AudioDecodeError(
            f"The audio file is corrupt or truncated ({cause.error_string}).",
            fix="Record the message again.",
        ) from None
    with tempfile.TemporaryDirectory(prefix="familiar-voice-") as tmp:
        if (
            data is not None
        ):  # MP4/M4A keep their index (moov) at the end: ffmpeg must seek, so no pipe
            path = Path(tmp) / "input"
            path.write_bytes(data)
        path = path.resolve()  # type: ignore[union-attr]
        done = _run_ffmpeg(program, path, max_duration_s, rate)
    if done.returncode != 0 or not done.stdout:
        raise _ffmpeg_failure(done.stderr.decode(errors="replace").replace(f"{path}: ", ""))
    samples = np.frombuffer(done.stdout[: len(done.stdout) // 4 * 4], dtype="<f4").astype(
        np.float32
    )
    duration_s = len(samples) / rate
    if duration_s > max_duration_s:
        # ffmpeg stopped at the cap (-t), so past it only "longer than" is known, not the length.
        raise too_long(
            duration_s, max_duration_s, at_least=duration_s >= max_duration_s + _PAST_LIMIT_S - 0.05
        )
    return Audio(np.clip(samples, -1.0, 1.0), rate, "ffmpeg")


def _run_ffmpeg(
    program: str, path: Path, max_duration_s: float, rate: int
) -> subprocess.CompletedProcess[bytes]:
    """Decode the first audio stream of ``path`` to mono float32 at ``rate`` on stdout.

    The video track of a video note is never decoded: only the first audio stream is mapped
    (``-vn`` says the same to any reader of the command). ``path`` is absolute, so a name with a
    leading dash or a colon is never read as an option or a protocol. The timeout is generous
    (AAC decodes hundreds of times faster than real time) but bounded, so a pathological file
    cannot hold a worker thread for ever.
    """
    cmd = [program, "-nostdin", "-hide_banner", "-v", "error", "-i", str(path),
           "-map", "0:a:0", "-vn", "-t", f"{max_duration_s + _PAST_LIMIT_S:g}",
           "-ac", "1", "-ar", str(rate), "-f", "f32le", "pipe:1"]  # fmt: skip
    timeout_s = 30.0 + max_duration_s / 5
    try:
        return subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:  # run() has killed it already
        raise AudioDecodeError(
            f"Decoding the audio file with ffmpeg took over {timeout_s:.0f} s and was stopped.",
            fix="Send it as a voice note, or as OGG, MP3 or WAV.",
        ) from None
    except OSError as exc:  # found on PATH but not runnable: a broken install or a wrong path
        raise AudioDecodeError(
            f"The ffmpeg program {program} could not be run ({exc.strerror}).",
            fix="Reinstall ffmpeg (apt-get install ffmpeg) or set FAMILIAR_VOICE__FFMPEG to a working one.",
        ) from None


_FFMPEG_PREFIX = re.compile(r"^\[[^\]]* @ 0x[0-9a-f]+\] ")  # "[mov,mp4,m4a,... @ 0x55b7...] "


def _ffmpeg_failure(stderr: str) -> AudioDecodeError:
    """An error saying why ffmpeg failed (its input path already cut out), without addresses."""
    if "matches no streams" in stderr:  # -map 0:a:0 found nothing: a silent video, a picture
        return AudioDecodeError(
            "The file has no sound track, so there is nothing to transcribe.",
            fix="Record it again with sound.",
        )
    lines = [_FFMPEG_PREFIX.sub("", line).strip() for line in stderr.splitlines()]
    reasons = list(dict.fromkeys(line for line in lines if line))  # in order, each once
    detail = "; ".join(reasons[:2])[:200] or "no audio came out"
    return AudioDecodeError(
        f"The audio file is corrupt or in an unsupported format ({detail}).",
        fix="Send it as a voice note, or as OGG, MP3 or WAV.",
    )


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return (
        f"{minutes}:{secs:02d}"
        if minutes < 60
        else f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"
    )
