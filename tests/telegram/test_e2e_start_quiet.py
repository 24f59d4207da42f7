"""End to end: a restart is not news. The daemon's health run at start tells the admins nothing."""

from __future__ import annotations

import time

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ADMIN = 7001


def test_a_fresh_start_sends_the_admins_no_health_notice(emulator, daemon) -> None:
    run, token = daemon(admins=str(ADMIN), allowed_users=str(ADMIN))
    runs = run.wait_for(
        "SELECT output FROM job_runs WHERE job = 'health' AND outcome = 'ok'",
        lambda rows: len(rows) >= 1,
        timeout=60,
    )
    assert runs, run.log_text()
    emulator.say(token, ADMIN, "/help")  # the admin's chat works: the reply arrives
    messages = emulator.wait_bot_messages(token, ADMIN, 1)
    time.sleep(1.0)
    texts = [m["message"]["text"] for m in emulator.bot_messages(token, ADMIN)]
    assert messages and not [t for t in texts if "Familiar is" in t], texts
    assert "starting up: admins not told" in runs[0][0]
