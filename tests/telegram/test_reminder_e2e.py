"""End to end: a reminder set in Telegram fires while the daemon runs (the real daemon against the
emulator). The daemon schedules on PTB's JobQueue, built on an Application of its own that PTB
keeps only by a weak reference: unkept, it was collected at once and every job raised instead."""

from __future__ import annotations

import time

import pytest

from tests.telegram.conftest import Emulator

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ANN = 501


def test_a_reminder_fires_while_the_daemon_runs(emulator: Emulator, daemon) -> None:  # type: ignore[no-untyped-def]
    run, token = daemon(allowed_users=str(ANN))
    emulator.say(token, ANN, "/remind in 3s stretch your legs")
    texts: list[str] = []
    for _ in range(2):  # the confirmation, then the reminder itself
        messages = emulator.wait_bot_messages(token, ANN, len(texts) + 1, timeout=30)
        texts = [m["message"].get("text", "") for m in messages]
    assert texts[0].startswith("⏰ I'll remind you"), texts
    assert "⏰ stretch your legs" in texts[1:], texts
    done = run.wait_for("SELECT count(*) FROM reminders WHERE active = 1", lambda r: r == [(0,)])
    assert done == [(0,)]  # delivered once, then inactive
    assert "raised an exception" not in run.log_text()


GROUP = -100_501


def test_in_a_groups_topic_the_answer_and_the_reminder_go_into_that_topic(
    emulator: Emulator, daemon
) -> None:  # type: ignore[no-untyped-def]
    """Asked in a forum topic, both the confirmation and, seconds later, the reminder itself
    arrive in that topic (Telegram would put them in General without the topic's id)."""
    run, token = daemon(allowed_users=str(ANN), admins=str(ANN))

    def say_in_topic(text: str, topic: int | None) -> None:
        body = {
            "botToken": token,
            "date": int(time.time()),
            "from": emulator.person(ANN),
            "chat": {"id": GROUP, "type": "supergroup", "title": "Home", "is_forum": True},
            "text": text,
            "entities": [{"offset": 0, "length": len(text.split(" ")[0]), "type": "bot_command"}],
        }
        if topic is not None:
            body.update({"message_thread_id": topic, "is_topic_message": True})
        emulator.post("sendCommand", body)

    say_in_topic("/group on", None)
    emulator.wait_bot_messages(token, GROUP, 1, timeout=60)
    say_in_topic("/remind in 3s water the basil", 42)
    texts: list[tuple[str, object]] = []
    for n in (2, 3):  # the confirmation, then the reminder itself
        messages = emulator.wait_bot_messages(token, GROUP, n, timeout=30)
        texts = [
            (m["message"].get("text", ""), m["message"].get("message_thread_id")) for m in messages
        ]
    assert texts[0][1] is None  # "/group on", asked in General, answered there
    assert texts[1][0].startswith("⏰ I'll remind you") and str(texts[1][1]) == "42", texts
    assert texts[2] == ("⏰ water the basil", texts[2][1]) and str(texts[2][1]) == "42", texts
    assert run.query("SELECT topic FROM reminders") == [(42,)]
