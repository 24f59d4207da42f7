"""The channel's voice path: a voice note served by a local HTTP server, downloaded, transcribed.

The fetch coroutine is what the Telegram channel passes (there: ``File.download_as_bytearray``);
here it is a real HTTP download from 127.0.0.1 with httpx, the client python-telegram-bot uses.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from agents.voice import (
    AudioDecodeError,
    AudioTooLarge,
    EngineUnavailable,
    FetchError,
    PendingVoice,
    Route,
    Transcriber,
    VoiceNote,
    VoiceSettings,
    build_transcriber,
    for_context,
    transcribe_voice,
)
from agents.voice.handler import CONTEXT_MARK, HEARD_NOTHING, WILL_ANSWER
from tests.voice.conftest import Synth, to_opus, word_recall

SENTENCE = "please call my mother tomorrow morning"


class FileServer:
    """Serves ``files`` by path on 127.0.0.1; counts requests; ``/slow/...`` answers late."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                if self.path.startswith("/slow/"):
                    time.sleep(1.0)
                body = outer.files.get(self.path.removeprefix("/slow"))
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "audio/ogg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def fetcher(self, path: str) -> Callable[[], Awaitable[bytes]]:
        async def fetch() -> bytes:
            async with httpx.AsyncClient() as client:
                response = await client.get(self.url + path)
                response.raise_for_status()
                return response.content

        return fetch


@pytest.fixture
def server() -> Iterator[FileServer]:
    srv = FileServer()
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


ROUTE = Route(chat_id=100, user_id=100, sender_name="Ann", message_id=7)


def note(**kw: Any) -> VoiceNote:
    return VoiceNote(
        **({"kind": "voice", "file_id": "AwACAgQ-file", "file_unique_id": "AgAD7x"} | kw)
    )


def test_voice_note_is_downloaded_and_transcribed(
    server: FileServer, synth: Synth, sphinx: Transcriber, tmp_path: Path
) -> None:
    samples, rate = synth(SENTENCE)
    server.files["/voice.ogg"] = to_opus(samples, rate)
    outcome = asyncio.run(
        transcribe_voice(
            note(duration_s=3, size=len(server.files["/voice.ogg"])),
            server.fetcher("/voice.ogg"),
            sphinx,
            pending=PendingVoice(tmp_path / "kept"),
            route=ROUTE,
        )
    )
    assert outcome.ok and outcome.reply is None and outcome.error is None
    assert word_recall(SENTENCE, outcome.text) >= 0.6, outcome.text
    assert outcome.heard_line() == f"🗣 I heard: {outcome.text}"
    meta = outcome.meta()
    assert meta["from_audio"] is True and meta["audio_kind"] == "voice"
    assert meta["file_id"] == "AwACAgQ-file" and meta["file_unique_id"] == "AgAD7x"
    assert meta["engine"] == "pocketsphinx" and meta["duration_s"] == pytest.approx(
        len(samples) / rate, abs=0.05
    )
    assert for_context(outcome.text).startswith(CONTEXT_MARK) and outcome.text in for_context(
        outcome.text
    )
    assert not (tmp_path / "kept").exists()  # transcribed recordings are not kept
    assert server.requests == 1


def test_silence_gets_i_heard_nothing(server: FileServer, sphinx: Transcriber) -> None:
    server.files["/quiet.ogg"] = to_opus(np.zeros(48_000 * 2, dtype=np.float32), 48_000)
    outcome = asyncio.run(transcribe_voice(note(), server.fetcher("/quiet.ogg"), sphinx))
    assert not outcome.ok and outcome.text == ""
    assert outcome.reply == HEARD_NOTHING and "heard nothing" in outcome.reply
    assert outcome.transcript is not None and outcome.transcript.heard_nothing


def test_failed_download_is_a_clear_reply(
    server: FileServer, sphinx: Transcriber, tmp_path: Path
) -> None:
    outcome = asyncio.run(
        transcribe_voice(
            note(), server.fetcher("/gone.ogg"), sphinx, pending=PendingVoice(tmp_path), route=ROUTE
        )
    )
    assert not outcome.ok and isinstance(outcome.error, FetchError)
    assert outcome.reply and "could not download" in outcome.reply
    assert "HTTPStatusError" in str(outcome.error)
    assert list(tmp_path.iterdir()) == []


def test_slow_download_times_out(server: FileServer, sphinx: Transcriber) -> None:
    server.files["/v.ogg"] = b"x"
    outcome = asyncio.run(
        transcribe_voice(note(), server.fetcher("/slow/v.ogg"), sphinx, fetch_timeout_s=0.2)
    )
    assert isinstance(outcome.error, FetchError) and "TimeoutError" in str(outcome.error)


def test_corrupt_file_is_a_clear_reply_and_not_kept(
    server: FileServer, sphinx: Transcriber, tmp_path: Path
) -> None:
    server.files["/bad.ogg"] = b"OggS" + bytes(300)
    outcome = asyncio.run(
        transcribe_voice(
            note(), server.fetcher("/bad.ogg"), sphinx, pending=PendingVoice(tmp_path), route=ROUTE
        )
    )
    assert isinstance(outcome.error, AudioDecodeError)
    assert outcome.reply and "corrupt" in outcome.reply
    assert list(tmp_path.iterdir()) == []


def test_declared_limits_refuse_before_downloading(server: FileServer, sphinx: Transcriber) -> None:
    server.files["/long.ogg"] = b"never fetched"
    limits = VoiceSettings(max_duration_s=60, max_bytes=1_000_000)
    small = build_transcriber(limits)
    long_note = asyncio.run(
        transcribe_voice(note(duration_s=7200), server.fetcher("/long.ogg"), small)
    )
    big_note = asyncio.run(
        transcribe_voice(note(size=5_000_000), server.fetcher("/long.ogg"), small)
    )
    assert isinstance(long_note.error, AudioTooLarge) and "voice.max_duration_s" in str(
        long_note.reply
    )
    assert "2:00:00" in str(long_note.reply) and "1:00" in str(long_note.reply)
    assert isinstance(big_note.error, AudioTooLarge) and "voice.max_bytes" in str(big_note.reply)
    assert server.requests == 0


def test_engine_unavailable_keeps_the_recording_and_promises_an_answer(
    server: FileServer, synth: Synth, tmp_path: Path
) -> None:
    data = to_opus(*synth(SENTENCE))
    server.files["/voice.ogg"] = data
    off = build_transcriber(VoiceSettings(engine="none"))
    pending = PendingVoice(tmp_path / "kept")
    outcome = asyncio.run(
        transcribe_voice(
            note(duration_s=3), server.fetcher("/voice.ogg"), off, pending=pending, route=ROUTE
        )
    )
    assert isinstance(outcome.error, EngineUnavailable) and not outcome.ok
    assert outcome.reply == (
        "⚠️ I cannot transcribe voice messages right now: Voice transcription is turned off "
        "(voice.engine = none). I kept the recording and will transcribe and answer it as soon as I can."
    )
    assert outcome.kept_path == tmp_path / "kept" / "chat100-voice-AgAD7x.ogg"
    assert outcome.kept_path.read_bytes() == data
    # The audio and its sidecar, and no temporary file left behind.
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == [
        "chat100-voice-AgAD7x.ogg",
        "chat100-voice-AgAD7x.ogg.json",
    ]
    [kept] = pending.list()
    assert kept.route == ROUTE and kept.note == note(duration_s=3)


def test_no_promise_when_nothing_was_kept(server: FileServer, synth: Synth, tmp_path: Path) -> None:
    server.files["/voice.ogg"] = to_opus(*synth("hello there"))
    off = build_transcriber(VoiceSettings(engine="none"))
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the keep directory should be")
    for pending in (None, PendingVoice(blocked)):
        outcome = asyncio.run(
            transcribe_voice(
                note(), server.fetcher("/voice.ogg"), off, pending=pending, route=ROUTE
            )
        )
        assert outcome.kept_path is None
        assert outcome.reply and outcome.reply.endswith("Please send it again later.")
        assert WILL_ANSWER.strip() not in outcome.reply and "kept" not in outcome.reply
    # Kept without a route (nobody to answer): kept for `familiar transcribe`, but no promise.
    unrouted = asyncio.run(
        transcribe_voice(
            note(), server.fetcher("/voice.ogg"), off, pending=PendingVoice(tmp_path / "kept")
        )
    )
    assert unrouted.kept_path == tmp_path / "kept" / "voice-AgAD7x.ogg"
    assert (
        unrouted.reply and "kept" not in unrouted.reply and "send it again later" in unrouted.reply
    )


class ExplodingTranscriber(Transcriber):
    """An engine with a bug: loads fine, fails on every recording."""

    name = "exploding"

    def _load(self) -> Any:
        return object()

    def _recognise(self, model: Any, samples: np.ndarray, language: str) -> str:
        raise RuntimeError("segfault avoided, barely")


def test_engine_bug_is_contained_and_keeps_the_recording(
    server: FileServer, synth: Synth, tmp_path: Path
) -> None:
    server.files["/a.mp3"] = to_opus(*synth("hello there"))
    audio = note(kind="audio", mime_type="audio/mpeg", file_unique_id=None, file_id="BQAC/../x")
    outcome = asyncio.run(
        transcribe_voice(
            audio,
            server.fetcher("/a.mp3"),
            ExplodingTranscriber(VoiceSettings()),
            pending=PendingVoice(tmp_path),
            route=ROUTE,
        )
    )
    assert outcome.reply == (
        "⚠️ Something went wrong while transcribing. I kept the recording and will "
        "transcribe and answer it as soon as I can."
    )
    assert "RuntimeError" in str(outcome.error)
    assert (
        outcome.kept_path == tmp_path / "chat100-audio-BQAC____x.mp3"
    )  # the id cannot escape the directory
