"""End to end: a reminder set in Telegram fires while the daemon runs (the real daemon against the
emulator). The daemon schedules on PTB's JobQueue, built on an Application of its own that PTB
keeps only by a weak reference: unkept, it was collected at once and every job raised instead."""

from __future__ import annotations

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
