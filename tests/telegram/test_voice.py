"""Voice notes in the Telegram channel: downloaded through getFile, transcribed, answered as text.

Speech is synthesised in the test with espeak-ng and encoded to OGG/Opus as Telegram clients do;
the bytes are served by the emulator (its ``/putFile`` hook, then ``getFile`` and the
``/file/bot<token>/<path>`` download, as Telegram serves them) and transcribed by the offline
default (pocketsphinx). The handler tests use the real ``UpdateHandler`` with a PTB ``Bot``
pointed at the emulator; the end-to-end test runs the daemon with the real anthropic provider
against the stub model server, and reads the stored transcript from its database.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import numpy as np
import pytest
from telegram import Bot, Update

from agents.voice import PendingVoice, Transcriber
from agents.voice.handler import CONTEXT_MARK, HEARD_NOTHING
from bot.telegram.handlers import SLOW_DOWN
from bot.telegram.limits import TokenBucket
from bot.telegram.voice import VoiceReader, file_base_url
from tests.stubs.anthropic_stub import Reply as StubReply
from tests.stubs.anthropic_stub import llm_stub
from tests.telegram.conftest import SENTENCE, Emulator
from tests.telegram.helpers import ALLOWED, Rig, build_rig, message, voice_message
from tests.voice.conftest import to_opus, word_recall

STRANGER = 4242

pytestmark = pytest.mark.requires_tool("espeak-ng", "it speaks the test voice notes")


def test_file_url_sits_beside_the_bot_api_url() -> None:
    assert file_base_url("https://api.telegram.org/bot") == "https://api.telegram.org/file/bot"
    assert (
        file_base_url("http://127.0.0.1:8081/bot{token}/")
        == "http://127.0.0.1:8081/file/bot{token}/"
    )


class VoiceRig:
    """A handler with a voice reader whose bot talks to the emulator under its own token."""

    def __init__(
        self, tmp_path: Path, emulator: Emulator, transcriber: Transcriber, token: str
    ) -> None:
        self.emulator, self.token = emulator, token
        self.bot = Bot(
            token, base_url=emulator.base_url, base_file_url=file_base_url(emulator.base_url)
        )
        self.reader = VoiceReader(self.bot, transcriber, PendingVoice(tmp_path / "kept"))
        self.rig: Rig = build_rig(tmp_path, voice=self.reader)

    def run(self, *payloads: dict) -> None:
        async def go() -> None:
            async with self.bot:  # one event loop for the bot's HTTP client
                for payload in payloads:
                    await self.rig.handler.handle(Update.de_json(payload, self.bot))

        asyncio.run(go())

    def put(self, file_id: str, data: bytes) -> int:
        self.emulator.put_file(self.token, file_id, data)
        return len(data)

    def fetched(self) -> list[str]:
        return [r.get("fileId") or r.get("path") for r in self.emulator.file_requests(self.token)]


@pytest.fixture
def voice_rig(
    tmp_path: Path, emulator: Emulator, sphinx: Transcriber, request: pytest.FixtureRequest
) -> VoiceRig:
    return VoiceRig(tmp_path, emulator, sphinx, f"7{abs(hash(request.node.name)) % 10**8}:voice")


def test_a_voice_note_is_downloaded_transcribed_and_answered_like_text(
    voice_rig: VoiceRig, speech: bytes
) -> None:
    size = voice_rig.put("v1", speech)
    voice_rig.run(voice_message(ALLOWED, "v1", size, update_id=11))

    [seen] = voice_rig.rig.answerer.seen
    assert word_recall(SENTENCE, seen.text) >= 0.6, seen.text
    assert seen.meta["from_audio"] is True and seen.meta["file_id"] == "v1"
    assert seen.meta["audio_kind"] == "voice" and seen.meta["engine"] == "pocketsphinx"
    assert seen.meta["update_id"] == 11 and 2.0 < seen.meta["duration_s"] < 4.0
    heard, answer = voice_rig.rig.transport.texts[:2]
    assert heard == f"🗣 I heard: {seen.text}"
    assert answer == f"answer to: {seen.text}"
    # getFile, then the download from the path it named: nothing else was fetched.
    assert voice_rig.fetched()[0] == "v1" and voice_rig.fetched()[1].startswith("voice/")
    assert len(voice_rig.fetched()) == 2


def test_a_strangers_voice_is_never_downloaded(voice_rig: VoiceRig, speech: bytes) -> None:
    size = voice_rig.put("s1", speech)
    voice_rig.run(voice_message(STRANGER, "s1", size))
    assert voice_rig.fetched() == []
    assert voice_rig.rig.answerer.seen == []
    assert "private assistant" in voice_rig.rig.transport.texts[0]
    assert voice_rig.rig.count("access_audit") == 1


def test_a_rate_limited_voice_is_not_downloaded(voice_rig: VoiceRig, speech: bytes) -> None:
    voice_rig.rig.handler.bucket = TokenBucket(1, 0.001)
    size = voice_rig.put("r1", speech)
    voice_rig.run(
        message(ALLOWED, "hello", update_id=1), voice_message(ALLOWED, "r1", size, update_id=2)
    )
    assert voice_rig.fetched() == []
    assert [m.text for m in voice_rig.rig.answerer.seen] == ["hello"]
    assert voice_rig.rig.transport.texts[-1] == SLOW_DOWN


def test_faults_get_a_clear_reply_and_reach_nothing(voice_rig: VoiceRig) -> None:
    silence = to_opus(np.zeros(48_000 * 2, dtype=np.float32), 48_000)
    corrupt = b"OggS" + bytes(range(256)) * 8
    sizes = {"quiet": voice_rig.put("quiet", silence), "bad": voice_rig.put("bad", corrupt)}
    voice_rig.run(
        voice_message(ALLOWED, "quiet", sizes["quiet"], update_id=1),
        voice_message(ALLOWED, "bad", sizes["bad"], update_id=2),
        voice_message(ALLOWED, "missing", 1000, update_id=3),  # getFile fails: never registered
        voice_message(
            ALLOWED, "huge", 50_000_000, update_id=4
        ),  # over voice.max_bytes: not fetched
        voice_message(
            ALLOWED, "long", 1000, duration=7200, update_id=5
        ),  # over voice.max_duration_s
    )
    quiet, bad, missing, huge, long = voice_rig.rig.transport.texts
    assert quiet == HEARD_NOTHING
    assert bad.startswith("⚠️") and "audio" in bad.lower()
    assert "could not download" in missing
    assert "limit (voice.max_bytes)" in huge
    assert "voice.max_duration_s" in long
    assert voice_rig.rig.answerer.seen == []
    assert "huge" not in voice_rig.fetched() and "long" not in voice_rig.fetched()


def _final_texts(emulator: Emulator, token: str, chat: int, answer: str) -> tuple[str, str]:
    """The heard line and the answer, once the streamed answer's last edit has landed."""
    deadline = time.monotonic() + 10
    while True:
        texts = [m["message"]["text"] for m in emulator.bot_messages(token, chat)]
        if (len(texts) >= 2 and texts[1] == answer) or time.monotonic() > deadline:
            assert len(texts) >= 2, texts
            return texts[0], texts[1]
        time.sleep(0.1)


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_the_daemon_stores_the_transcript_from_audio_and_answers_it(
    emulator, daemon, speech: bytes
) -> None:
    ann, eve = 5101, 5102
    with llm_stub() as stub:
        stub.script(StubReply("I will remind you to call her."))
        env = {
            "FAMILIAR_LLM__PROVIDER": "anthropic",
            "ANTHROPIC_BASE_URL": stub.url,
            "ANTHROPIC_API_KEY": "test",
        }
        run, token = daemon(env_extra=env, allowed_users=str(ann))
        emulator.put_file(token, "eve-note", speech)
        emulator.put_file(token, "ann-note", speech)
        emulator.say_voice(token, eve, "eve-note", len(speech), name="Eve")
        emulator.say_voice(token, ann, "ann-note", len(speech))

        rows = run.wait_for(
            "SELECT role, text, meta FROM messages ORDER BY id", lambda r: len(r) >= 2, 60
        )
        heard, answer = _final_texts(emulator, token, ann, "I will remind you to call her.")
        bodies = stub.bodies()

    assert heard.startswith("🗣 I heard: ")
    transcript = heard.removeprefix("🗣 I heard: ")
    assert word_recall(SENTENCE, transcript) >= 0.6, transcript
    assert answer == "I will remind you to call her."
    (role, text, meta), (answer_role, answer_text, _) = rows[:2]
    assert (role, text, answer_role, answer_text) == ("user", transcript, "assistant", answer)
    meta = json.loads(meta)
    assert (
        meta["from_audio"] is True
        and meta["file_id"] == "ann-note"
        and meta["engine"] == "pocketsphinx"
    )
    # The model saw the transcript marked as heard, not typed; memory keeps the plain words.
    last_user = bodies[0]["messages"][-1]["content"]
    last_text = last_user if isinstance(last_user, str) else " ".join(b["text"] for b in last_user)
    assert last_text == f"{CONTEXT_MARK} {transcript}"
    # The stranger was refused and their recording never fetched.
    assert emulator.wait_bot_messages(token, eve, 1)
    assert all(r.get("fileId") != "eve-note" for r in emulator.file_requests(token))
