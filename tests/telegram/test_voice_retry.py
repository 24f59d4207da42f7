"""Kept voice notes are answered once the engine works again (the ``voice_retry`` job).

The engine is the real offline one (pocketsphinx) behind a switch: ``down`` makes loading fail
with ``EngineUnavailable``, as a missing model does; ``crashes`` makes the next recognitions
fail as a crashed worker does. Speech is synthesised with espeak-ng. The handler test downloads
the note from the Telegram emulator; the channel test runs the real ``TelegramChannel`` against
it, so the note, the promise, the transcript line and the answer all travel through the Bot API.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from telegram.error import Forbidden, NetworkError

from agents.voice import (
    EngineUnavailable,
    PendingVoice,
    Route,
    Transcriber,
    VoiceNote,
    VoiceSettings,
)
from bot.config import load_settings
from bot.core.assistant import Assistant
from bot.core.schema import migrations
from bot.core.transport import RecordingTransport, Transport
from bot.core.types import Incoming, Reply, SentMessage
from bot.telegram.channel import TelegramChannel
from bot.telegram.reporting import ErrorReporter
from bot.telegram.voice_retry import VoiceRetry, local_when
from memory.db import Database
from memory.health import HealthRegistry
from tests.telegram.conftest import SENTENCE, Emulator
from tests.telegram.helpers import ADMIN, ALLOWED, CountingAnswerer, Rig, build_rig, voice_message
from tests.telegram.test_voice import VoiceRig
from tests.voice.conftest import to_opus, word_recall

STRANGER = 4242
KEPT = (
    "⚠️ I cannot transcribe voice messages right now: The speech model is missing. "
    "I kept the recording and will transcribe and answer it as soon as I can."
)
TRANSCRIBED = re.compile(r"🗣 Your voice message from \d\d:\d\d, transcribed now: (.+)")

pytestmark = pytest.mark.requires_tool("espeak-ng", "it speaks the test voice notes")


class SwitchableEngine(Transcriber):
    """pocketsphinx that can be missing (``down``) or crash on the next ``crashes`` recordings."""

    name = "pocketsphinx"

    def __init__(self, inner: Transcriber, settings: VoiceSettings | None = None) -> None:
        super().__init__(settings or inner.settings)
        self.inner = inner
        self.down = True
        self.crashes = 0
        self.recognised = 0

    def _load(self) -> Any:
        if self.down:
            raise EngineUnavailable("The speech model is missing.", fix="Install it again.")
        return self.inner.model()

    def _recognise(self, model: Any, samples: np.ndarray, language: str) -> str:
        if self.crashes:
            self.crashes -= 1
            raise RuntimeError("the recogniser's worker died")
        self.recognised += 1
        return self.inner._recognise(model, samples, language)


class FlakyTransport(RecordingTransport):
    """Records what is sent; raises ``error`` instead while it is set (Telegram away, blocked)."""

    def __init__(self) -> None:
        super().__init__()
        self.error: Exception | None = None

    async def send(self, chat_id: int, reply: Reply) -> SentMessage:
        if self.error is not None:
            raise self.error
        return await super().send(chat_id, reply)


@pytest.fixture
def engine(sphinx: Transcriber) -> SwitchableEngine:
    return SwitchableEngine(sphinx)


def retry_for(rig: Rig, pending: PendingVoice, engine: Transcriber, **kw: Any) -> VoiceRetry:
    return VoiceRetry(pending, engine, rig.transport, rig.handler.access, rig.assistant, **kw)


def keep(
    pending: PendingVoice, data: bytes, route: Route, unique: str, at: datetime | None = None
) -> Path:
    path = pending.keep(VoiceNote("voice", f"id-{unique}", unique, 3.0), data, route, now=at)
    assert path is not None
    return path


def private(user_id: int, message_id: int = 1) -> Route:
    return Route(chat_id=user_id, user_id=user_id, sender_name="Ann", message_id=message_id)


def test_when_is_said_in_local_time() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    kept = datetime(2024, 3, 3, 13, 5, tzinfo=UTC)  # 14:05 in Berlin (UTC+1 in March)
    assert local_when(kept, datetime(2024, 3, 3, 20, 0, tzinfo=UTC), berlin) == "14:05"
    assert local_when(kept, datetime(2024, 3, 5, 9, 0, tzinfo=UTC), berlin) == "3 Mar 14:05"
    assert local_when(kept, datetime(2025, 1, 2, 9, 0, tzinfo=UTC), berlin) == "3 Mar 2024 14:05"
    # 23:30 UTC is already the next day in Berlin: "today" is decided in local time.
    late = datetime(2024, 3, 3, 23, 30, tzinfo=UTC)
    assert local_when(late, datetime(2024, 3, 4, 8, 0, tzinfo=UTC), berlin) == "00:30"


def test_kept_note_is_transcribed_and_answered_once_the_engine_is_back(
    tmp_path: Path, emulator: Emulator, engine: SwitchableEngine, speech: bytes
) -> None:
    voice = VoiceRig(tmp_path, emulator, engine, "71:voice-retry")
    pending = voice.reader.pending
    assert pending is not None
    voice.run(voice_message(ALLOWED, "v1", voice.put("v1", speech), update_id=11))
    rig = voice.rig
    assert rig.transport.texts == [KEPT] and rig.answerer.seen == []
    [kept] = pending.list()
    assert kept.route == Route(ALLOWED, ALLOWED, "U", False, 11, False)

    turns: list[tuple[int, int, int]] = []  # (chat, messages sent on entering, on leaving)

    @contextlib.asynccontextmanager
    async def chat_turn(chat_id: int) -> AsyncIterator[None]:
        entered = len(rig.transport.sent)
        yield
        turns.append((chat_id, entered, len(rig.transport.sent)))

    engine.down = False
    retry = retry_for(rig, pending, engine, chat_turn=chat_turn)
    assert asyncio.run(retry.run()) == "1 answered"

    [seen] = rig.answerer.seen
    assert word_recall(SENTENCE, seen.text) >= 0.6, seen.text
    _, line, answer = rig.transport.texts
    match = TRANSCRIBED.fullmatch(line)
    assert match and match.group(1) == seen.text
    assert answer == f"answer to: {seen.text}"
    assert (seen.chat_id, seen.sender.id, seen.message_id, seen.channel) == (
        ALLOWED,
        ALLOWED,
        11,
        "telegram",
    )
    assert seen.meta["from_audio"] is True and seen.meta["file_id"] == "v1"
    assert (
        seen.meta["engine"] == "pocketsphinx" and seen.meta["kept_at"] == kept.kept_at.isoformat()
    )
    assert turns == [(ALLOWED, 2, 3)]  # the answer was given inside the chat's turn
    assert pending.list() == [] and list(pending.dir.iterdir()) == []
    assert len(voice.fetched()) == 2  # downloaded once; the retry read the kept file
    assert asyncio.run(retry.run()) is None  # nothing left: nothing said twice
    assert len(rig.transport.sent) == 3


def test_engine_still_down_keeps_everything(
    tmp_path: Path, engine: SwitchableEngine, speech: bytes
) -> None:
    rig = build_rig(tmp_path)
    pending = PendingVoice(tmp_path / "voice")
    paths = [
        keep(pending, speech, private(ALLOWED), "a"),
        keep(pending, speech, private(ADMIN), "b"),
    ]
    assert asyncio.run(retry_for(rig, pending, engine).run()) == "2 waiting (engine unavailable)"
    assert rig.transport.sent == [] and rig.answerer.seen == []
    assert [r.path for r in pending.list()] == paths


def test_too_old_recordings_are_dropped_with_a_request_to_send_again(
    tmp_path: Path, sphinx: Transcriber, speech: bytes
) -> None:
    rig = build_rig(tmp_path)
    pending = PendingVoice(tmp_path / "voice")
    engine = SwitchableEngine(sphinx, VoiceSettings(pending_max_age_h=48))
    keep(pending, speech, private(ALLOWED), "old", at=datetime(2020, 3, 3, 13, 5, tzinfo=UTC))
    keep(pending, speech, private(ALLOWED), "two-days", at=datetime.now(UTC) - timedelta(hours=49))
    recent = keep(
        pending, speech, private(ALLOWED), "recent", at=datetime.now(UTC) - timedelta(hours=47)
    )
    retry = retry_for(rig, pending, engine, tz=ZoneInfo("Europe/Berlin"))
    # Expiry does not wait for the engine: the down engine only holds back the recent one.
    assert asyncio.run(retry.run()) == "2 expired, 1 waiting (engine unavailable)"
    first, second = rig.transport.texts
    assert (
        first
        == "⚠️ I could not transcribe your voice message from 3 Mar 2020 14:05 in time. Please send it again."
    )
    assert (
        second.startswith("⚠️ I could not transcribe your voice message from ")
        and "Please send it again." in second
    )
    assert [r.path for r in pending.list()] == [recent]


def test_someone_no_longer_allowed_is_dropped_silently(
    tmp_path: Path, engine: SwitchableEngine, speech: bytes
) -> None:
    rig = build_rig(tmp_path)
    pending = PendingVoice(tmp_path / "voice")
    keep(pending, speech, private(STRANGER), "stranger")
    keep(pending, speech, Route(chat_id=-500, user_id=ALLOWED, is_group=True), "group-off")
    older = pending.dir / "voice-from-an-older-version.ogg"  # no sidecar: nobody to answer
    older.write_bytes(speech)
    engine.down = False
    assert asyncio.run(retry_for(rig, pending, engine).run()) == "2 dropped"
    assert rig.transport.sent == [] and rig.answerer.seen == [] and engine.recognised == 0
    assert [r.path for r in pending.list()] == [older]  # unrouted: left for `familiar transcribe`


def test_unreadable_and_silent_recordings_are_answered_as_such(
    tmp_path: Path, engine: SwitchableEngine
) -> None:
    rig = build_rig(tmp_path)
    pending = PendingVoice(tmp_path / "voice")
    keep(pending, b"OggS" + bytes(range(256)) * 8, private(ALLOWED), "corrupt")
    keep(
        pending, to_opus(np.zeros(48_000 * 2, dtype=np.float32), 48_000), private(ALLOWED), "quiet"
    )
    engine.down = False
    assert asyncio.run(retry_for(rig, pending, engine).run()) == "1 unreadable, 1 heard nothing"
    corrupt, quiet = rig.transport.texts
    assert re.fullmatch(
        r"⚠️ I could not read your voice message from \d\d:\d\d: .+ Please send it again\.", corrupt
    )
    assert str(pending.dir) not in corrupt  # the user is not shown where files live
    assert re.fullmatch(
        r"🤷 I heard nothing in your voice message from \d\d:\d\d\. Was the microphone muted\? "
        r"Please send it again\.",
        quiet,
    )
    assert rig.answerer.seen == [] and pending.list() == []


def test_a_crash_keeps_that_recording_and_the_round_goes_on(
    tmp_path: Path, engine: SwitchableEngine, speech: bytes
) -> None:
    rig = build_rig(tmp_path)
    pending = PendingVoice(tmp_path / "voice")
    first = keep(
        pending, speech, private(ALLOWED, 1), "first", at=datetime.now(UTC) - timedelta(minutes=2)
    )
    keep(pending, speech, private(ADMIN, 2), "second", at=datetime.now(UTC) - timedelta(minutes=1))
    engine.down, engine.crashes = False, 1
    retry = retry_for(rig, pending, engine)
    assert asyncio.run(retry.run()) == "1 failed, 1 answered"
    assert [m.chat_id for m in rig.answerer.seen] == [ADMIN]
    assert rig.answerer.seen[0].sender.is_admin  # the role is read now, not from the sidecar
    assert [r.path for r in pending.list()] == [first]
    assert asyncio.run(retry.run()) == "1 answered"  # the next round gets it
    assert [m.chat_id for m in rig.answerer.seen] == [ADMIN, ALLOWED] and pending.list() == []


def test_telegram_away_keeps_the_recordings_and_a_blocked_chat_drops_them(
    tmp_path: Path, engine: SwitchableEngine, speech: bytes
) -> None:
    rig = build_rig(tmp_path)
    rig.transport = transport = FlakyTransport()
    pending = PendingVoice(tmp_path / "voice")
    paths = [
        keep(pending, speech, private(ALLOWED), "a"),
        keep(pending, speech, private(ADMIN), "b"),
    ]
    engine.down = False
    retry = retry_for(rig, pending, engine)

    transport.error = NetworkError("httpx.ConnectError: all connection attempts failed")
    assert asyncio.run(retry.run()) == "2 waiting (Telegram unreachable)"
    assert engine.recognised == 1  # the round stopped at the first failed send
    assert [r.path for r in pending.list()] == paths

    transport.error = Forbidden("Forbidden: bot was blocked by the user")
    assert asyncio.run(retry.run()) == "2 undeliverable"
    assert pending.list() == [] and transport.sent == [] and rig.answerer.seen == []


def test_a_failing_answer_is_reported_and_not_repeated(
    tmp_path: Path, engine: SwitchableEngine, speech: bytes
) -> None:
    rig = build_rig(tmp_path)

    async def broken(msg: Incoming, transport: Transport) -> None:
        raise RuntimeError("the model went away")

    rig.assistant.answer_text = broken
    pending = PendingVoice(tmp_path / "voice")
    keep(pending, speech, private(ALLOWED), "a")
    engine.down = False

    async def notify(chat_id: int, text: str) -> None:
        await rig.transport.send(chat_id, Reply(text, markdown=False))

    retry = retry_for(rig, pending, engine, reporter=ErrorReporter(notify, [ADMIN]))
    assert asyncio.run(retry.run()) == "1 answered"
    line, sorry, alert = rig.transport.sent
    assert line[0] == ALLOWED and TRANSCRIBED.fullmatch(line[1].text)
    assert sorry[0] == ALLOWED and sorry[1].text.startswith("Sorry, something went wrong (error ")
    assert alert[0] == ADMIN and "RuntimeError" in alert[1].text
    assert pending.list() == []  # the transcript was shown: not shown again next round


def test_nothing_is_tried_before_the_channel_is_connected(
    tmp_path: Path, engine: SwitchableEngine, speech: bytes
) -> None:
    rig = build_rig(tmp_path)
    pending = PendingVoice(tmp_path / "voice")
    path = keep(pending, speech, private(ALLOWED), "a")
    engine.down = False
    retry = retry_for(rig, pending, engine, ready=lambda: False)
    assert asyncio.run(retry.run()) == "the channel is not connected yet; nothing tried"
    assert (
        engine.recognised == 0
        and rig.transport.sent == []
        and [r.path for r in pending.list()] == [path]
    )


@pytest.mark.filterwarnings(
    "ignore:.*do_api_request:UserWarning"
)  # the channel's own filter, reset by pytest
def test_the_channel_keeps_a_note_and_its_job_answers_it(
    tmp_path: Path,
    emulator: Emulator,
    engine: SwitchableEngine,
    speech: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token, ann = "72:voice-retry-channel", 5301
    monkeypatch.setenv("FAMILIAR_TELEGRAM__TOKEN", token)
    monkeypatch.setenv("FAMILIAR_TELEGRAM__BASE_URL", emulator.base_url)
    monkeypatch.setenv("FAMILIAR_TELEGRAM__ALLOWED_USERS", str(ann))
    monkeypatch.setenv("FAMILIAR_TELEGRAM__POLL_IDLE_S", "0.05")
    monkeypatch.setenv("FAMILIAR_TELEGRAM__CHAT_SEND_INTERVAL_S", "0.05")
    settings = load_settings(data_dir=tmp_path / "data")
    db = Database.open(tmp_path / "bot.db", [migrations])
    health = HealthRegistry()
    assistant = Assistant(health)
    answerer = CountingAnswerer()
    assistant.answer_text = answerer
    emulator.put_file(token, "n1", speech)

    async def texts_when(n: int) -> list[str]:
        for _ in range(150):
            found = [m["message"]["text"] for m in emulator.bot_messages(token, ann)]
            if len(found) >= n:
                return found
            await asyncio.sleep(0.1)
        return found

    async def scenario() -> tuple[list[str], list[str], str | None]:
        channel = TelegramChannel(settings, db, assistant, health, lambda exc: None, engine)
        assert channel.voice_retry is not None
        await channel.start()
        try:
            emulator.say_voice(token, ann, "n1", len(speech))
            promised = await texts_when(1)
            engine.down = False
            output = await channel.voice_retry.run()
            answered = await texts_when(3)
        finally:
            await channel.stop()
        return promised, answered, output

    promised, answered, output = asyncio.run(scenario())
    db.close()
    assert promised == [KEPT]
    assert output == "1 answered"
    line = TRANSCRIBED.fullmatch(answered[1])
    assert line and word_recall(SENTENCE, line.group(1)) >= 0.6, answered
    assert answered[2] == f"answer to: {line.group(1)}"
    assert [m.text for m in answerer.seen] == [line.group(1)] and answerer.seen[0].meta[
        "from_audio"
    ]
    assert list((tmp_path / "data" / "voice").iterdir()) == []


def test_no_retry_job_without_a_transcriber(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAMILIAR_TELEGRAM__TOKEN", "1:x")
    db = Database.open(tmp_path / "bot.db", [migrations])
    health = HealthRegistry()
    channel = TelegramChannel(
        load_settings(data_dir=tmp_path), db, Assistant(health), health, lambda exc: None
    )
    assert channel.voice_retry is None and channel.handler.voice is None
    db.close()


def test_a_late_answer_is_spoken_too_where_voice_is_on(
    tmp_path: Path, emulator: Emulator, engine: SwitchableEngine, speech: bytes
) -> None:
    from agents.voice.tts import EspeakSpeaker
    from bot.core.voice_replies import VoiceReplies

    voice = VoiceRig(tmp_path, emulator, engine, "72:voice-retry")
    pending = voice.reader.pending
    assert pending is not None
    replies = VoiceReplies(voice.rig.db, EspeakSpeaker())
    asyncio.run(replies.db.run(replies._set, ALLOWED, True))  # /voice on, as the command stores it
    voice.run(voice_message(ALLOWED, "v2", voice.put("v2", speech), update_id=12))
    engine.down = False
    retry = retry_for(voice.rig, pending, engine, voice_replies=replies)
    assert asyncio.run(retry.run()) == "1 answered"
    assert voice.rig.transport.texts[-1].startswith("answer to: ")
    [(chat, audio, _)] = voice.rig.transport.voices
    assert chat == ALLOWED and audio[:4] == b"OggS"
