"""As a user would: ``familiar memory add`` in a shell while the daemon runs. The daemon's
/status stays healthy (its index takes in the row the CLI wrote) and /recall finds the row."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.telegram.conftest import VENV_BIN, Emulator

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

ANN = 502


def test_a_memory_the_cli_adds_is_indexed_by_the_running_daemon(emulator: Emulator, daemon) -> None:
    run, token = daemon(allowed_users=str(ANN))
    emulator.say(token, ANN, "/remember the daemon keeps this note")
    assert emulator.wait_bot_messages(token, ANN, 1, timeout=60), run.log_text()[-3000:]
    deadline = time.monotonic() + 120
    while "memory ready:" not in run.log_text() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "memory ready:" in run.log_text(), run.log_text()[-3000:]

    added = subprocess.run(
        [str(VENV_BIN / "familiar"), "memory", "add", "the spare key is under the blue pot",
         "--chat", str(ANN)],
        env=run.env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr[-2000:]

    emulator.say(token, ANN, "/status")
    status = emulator.wait_bot_messages(token, ANN, 2, timeout=60)[-1]["message"]["text"]
    (line,) = [x for x in status.splitlines() if "memory_index:" in x]
    assert line.split("memory_index: ")[1].startswith("2 vectors"), status
    emulator.say(token, ANN, "/recall where is the spare key")
    recall = emulator.wait_bot_messages(token, ANN, 3, timeout=60)[-1]["message"]["text"]
    assert "blue pot" in recall
