"""End to end: ⏹ Stop under an answer being written. The real daemon against the Telegram
emulator, the real anthropic SDK against the stub streaming a long answer slowly: the asker's
press stops it at once (not after it, as the chat's turn would have it), the text so far stays
marked stopped, nothing is kept as an answer, the model is not asked again, and the chat carries
on. Who may press, and the three-pass status line: ``tests/test_stop_answers.py``."""

from __future__ import annotations

import time

import pytest

from tests.stubs.anthropic_stub import Reply as StubReply
from tests.stubs.anthropic_stub import llm_stub
from tests.telegram.test_e2e_tools import _buttons, _env, _wait_text

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ANN = 501
LONG = " ".join(f"word{i}" for i in range(300))  # 100 chunks of three words


def _stop_button(emulator, token: str, chat: int) -> tuple[dict, dict]:
    """The message being written and its Stop button, once it is shown."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for m in reversed(emulator.bot_messages(token, chat)):
            stop = [b for b in _buttons(m) if b["text"] == "⏹ Stop"]
            if stop:
                return m, stop[0]
        time.sleep(0.05)
    raise AssertionError("no message with a Stop button")


def test_the_asker_stops_an_answer_as_it_streams(emulator, daemon) -> None:
    with llm_stub() as stub:
        stub.script(StubReply(LONG, chunk_delay_s=0.3), StubReply("Hello again."))
        run, token = daemon(env_extra=_env(stub), allowed_users=str(ANN))
        emulator.say(token, ANN, "write me something long")
        message, stop = _stop_button(emulator, token, ANN)
        started = time.monotonic()
        emulator.press(token, ANN, ANN, message["messageId"], stop["callback_data"])
        stopped = _wait_text(emulator, token, ANN, "⏹ Stopped.$", timeout=10)
        assert time.monotonic() - started < 8  # the whole stream would take 30 s
        assert stopped["messageId"] == message["messageId"]
        text = stopped["message"]["text"]
        assert text.startswith("word0 word1 word2") and "word299" not in text
        assert _buttons(stopped) == []  # no Stop, and no feedback row for a stopped answer
        # Nothing kept as an answer; the chat's next message is answered as usual.
        assert run.query("SELECT role, text FROM messages ORDER BY id") == [
            ("user", "write me something long")
        ]
        emulator.say(token, ANN, "hi")
        again = _wait_text(emulator, token, ANN, "^Hello again.$", after=message["messageId"])
        labels = [b["text"] for b in _buttons(again)]
        assert "👍" in labels and "⏹ Stop" not in labels  # a finished answer: its feedback row
        assert len(stub.bodies()) == 2
        assert "answer in chat 501 stopped (⏹ Stop)" in run.log_text()
