"""End to end: /todo through the real daemon and the Telegram emulator, with an MCP server that
takes a minute to start configured (it must not delay the daemon) and one that cannot start
(/status names it)."""

from __future__ import annotations

import json
import sys

import pytest

from tests.telegram.conftest import Emulator
from tests.tools.conftest import SERVER

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ANN = 501


def _buttons(message: dict) -> list[dict]:
    markup = message["message"].get("reply_markup") or {}
    return [b for row in markup.get("inline_keyboard", []) for b in row]


def test_todo_list_and_done_button_with_mcp_servers_down(emulator: Emulator, daemon) -> None:
    servers = [
        {"name": "gone", "command": "/nonexistent/server"},
        {
            "name": "slow",
            "command": sys.executable,
            "args": [SERVER],
            "env": {"MCP_TEST_SLOW_START": "60"},
        },
    ]
    run, token = daemon(
        allowed_users=str(ANN), env_extra={"FAMILIAR_TOOLS__MCP": json.dumps(servers)}
    )
    emulator.say(token, ANN, "/todo !high call the bank due:2020-01-02")
    emulator.say(token, ANN, "/todo buy milk")
    emulator.say(token, ANN, "/todo")
    messages = emulator.wait_bot_messages(token, ANN, 3, timeout=60)
    assert len(messages) == 3, run.log_text()[-3000:]
    listing = messages[-1]
    assert "🔴 #1 call the bank (due 2020-01-02, ⚠️ overdue)" in listing["message"]["text"]
    buttons = _buttons(listing)
    assert [b["text"] for b in buttons] == ["✅ #1 call the bank", "✅ #2 buy milk"]
    assert all(len(b["callback_data"].encode()) <= 64 for b in buttons)

    emulator.press(token, ANN, ANN, listing["messageId"], buttons[0]["callback_data"] + "x")
    emulator.press(token, ANN, ANN, listing["messageId"], buttons[0]["callback_data"])
    rows = run.wait_for(
        "SELECT id FROM todos WHERE done_at IS NOT NULL", lambda r: len(r) >= 1, timeout=20
    )
    assert rows == [(1,)]  # the forged press did nothing, the real one completed #1 only

    emulator.say(token, ANN, "/todo done 2")
    rows = run.wait_for(
        "SELECT id FROM todos WHERE done_at IS NOT NULL ORDER BY id",
        lambda r: len(r) >= 2,
        timeout=20,
    )
    assert rows == [(1,), (2,)]  # completed by its number, not added as a to-do "done 2"

    emulator.say(token, ANN, "/status")
    status = emulator.wait_bot_messages(token, ANN, 5, timeout=30)[-1]["message"]["text"]
    assert "mcp: gone: down" in status
