"""Spoken answers: /voice on makes a voice note get a voice note back, after the text answer.

The handler runs with the emulator serving the recording, pocketsphinx transcribing it and
espeak-ng speaking the answer; the recording transport keeps what was sent.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from agents.voice import Transcriber
from agents.voice.tts import EspeakSpeaker, Speaker, SpeechError
from bot.core.voice_replies import VoiceReplies
from tests.telegram.conftest import SENTENCE, Emulator
from tests.telegram.helpers import ALLOWED, message, voice_message
from tests.telegram.test_voice import VoiceRig
from tests.voice.conftest import word_recall

pytestmark = pytest.mark.requires_tool(
    "espeak-ng", "it speaks the replies and the test voice notes"
)


class BrokenSpeaker(Speaker):
    name = "broken"

    def synthesise(self, text: str) -> tuple[np.ndarray, int]:
        raise SpeechError("the speech engine crashed")


def make_rig(
    tmp_path: Path, emulator: Emulator, sphinx: Transcriber, speaker: Speaker, token: str
) -> VoiceRig:
    rig = VoiceRig(tmp_path, emulator, sphinx, token)
    rig.rig.handler.voice_replies = VoiceReplies(rig.rig.db, speaker)
    rig.rig.handler.register_commands()
    return rig


def test_voice_on_answers_a_voice_note_with_text_then_speech(
    tmp_path: Path, emulator: Emulator, sphinx: Transcriber, speech: bytes
) -> None:
    rig = make_rig(tmp_path, emulator, sphinx, EspeakSpeaker(), "9101:replies")
    size = rig.put("v1", speech)
    rig.run(
        voice_message(ALLOWED, "v1", size, update_id=1),  # off by default: text only
        message(ALLOWED, "/voice on", update_id=2),
        voice_message(ALLOWED, "v1", size, update_id=3),
        message(ALLOWED, "/voice off", update_id=4),
        voice_message(ALLOWED, "v1", size, update_id=5),
    )
    transport = rig.rig.transport
    assert len(transport.voices) == 1
    chat, audio, _ = transport.voices[0]
    assert chat == ALLOWED
    assert sf.info(io.BytesIO(audio)).samplerate == 48_000
    # What was spoken is the answer the text showed (the rig's answerer: "answer to: <heard>").
    spoken = sphinx.transcribe_sync(audio).text
    assert word_recall(SENTENCE, spoken) >= 0.6, spoken
    answers = [t for t in transport.texts if t.startswith("answer to: ")]
    assert len(answers) == 3
    assert any("with a voice note as well (espeak-ng)" in t for t in transport.texts)
    assert any(t == "I'll answer voice notes in text only." for t in transport.texts)


def test_a_failed_voice_leaves_the_text_answer_standing(
    tmp_path: Path, emulator: Emulator, sphinx: Transcriber, speech: bytes
) -> None:
    rig = make_rig(tmp_path, emulator, sphinx, BrokenSpeaker(), "9102:replies")
    size = rig.put("v2", speech)
    rig.run(message(ALLOWED, "/voice on", update_id=1), voice_message(ALLOWED, "v2", size, 2))
    transport = rig.rig.transport
    assert transport.voices == []
    assert transport.texts[-1].startswith("answer to: ")


def test_voice_without_arguments_says_the_state(
    tmp_path: Path, emulator: Emulator, sphinx: Transcriber
) -> None:
    rig = make_rig(tmp_path, emulator, sphinx, EspeakSpeaker(), "9103:replies")
    rig.run(message(ALLOWED, "/voice", update_id=1))
    assert rig.rig.transport.texts == ["Spoken answers are off here. Usage: /voice on|off"]


def test_the_answer_capture_passes_files_through() -> None:
    """A file sent while an answer is captured (an /export during a voice chat) reaches the
    channel; the base Transport would refuse it."""
    from bot.core.transport import RecordingTransport
    from bot.core.voice_replies import AnswerCapture

    inner = RecordingTransport()
    asyncio.run(AnswerCapture(inner).send_document(5, b"{}", "memory.json", "yours"))
    assert inner.files == [(5, "memory.json", b"{}")] and inner.captions == ["yours"]
