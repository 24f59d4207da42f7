"""``familiar tools list|call`` against a real stdio MCP server, and the tools in the daemon's
service graph (a broken server named by /status, /todo on the console)."""

from __future__ import annotations

import io
import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from loguru import logger
from typer.testing import CliRunner

from bot.cli import app
from bot.config import load_settings
from bot.console import ConsoleChannel
from bot.daemon.lifecycle import Lifecycle
from bot.daemon.run import all_migrations, build_health
from bot.daemon.services import attach_channel, build_services
from memory.db import Database
from tests.tools.conftest import SERVER, gone_within

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """The CLI points logging at CliRunner's stream, which is closed after each invoke."""
    yield
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    logging.basicConfig(handlers=[logging.StreamHandler()], level=logging.WARNING, force=True)


def write_config(data_dir: Path, extra: str = "") -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "familiar.toml").write_text(
        f"""
[[tools.mcp]]
name = "tickets"
command = {json.dumps(sys.executable)}
args = [{json.dumps(SERVER)}]
allow = ["lookup_ticket", "close_ticket"]
confirm = ["close_ticket"]
{extra}
"""
    )


def test_tools_list_shows_every_tool_with_source_and_policy(data_dir: Path) -> None:
    write_config(data_dir)
    # the test server takes seconds to import the SDK: more than the listing's default wait
    result = CliRunner().invoke(app, ["tools", "list", "--json", "--wait", "60"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert (rows["tickets__lookup_ticket"]["source"], rows["tickets__lookup_ticket"]["policy"]) == (
        "mcp:tickets",
        "auto",
    )
    assert rows["tickets__close_ticket"]["policy"] == "confirm"
    assert rows["tickets__close_ticket"]["untrusted"] is True
    assert "tickets__echo" not in rows  # not in allow: not offered
    assert rows["add_todo"]["source"] == "builtin" and rows["list_todos"]["read_only"] is True
    # Only the default core goes with every prompt; the rest, MCP tools too, wait for a search.
    loaded = {name for name, r in rows.items() if not r["deferred"]}
    assert loaded == {"create_reminder", "current_time", "remember", "search_memory"}


def test_tools_list_shows_the_effective_policy_of_every_tool_and_where_it_comes_from(
    data_dir: Path,
) -> None:
    write_config(
        data_dir,
        """
[tools]
untrusted = ["search_memory"]
always_loaded = ["search_memory", "tickets__lookup_ticket", "no_such_tool"]

[tools.policy]
forget_memory = "auto"
add_todo = "off"
tickets__close_ticket = "auto"
no_such_tool = "off"
""",
    )
    result = CliRunner().invoke(app, ["tools", "list", "--json", "--wait", "60"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in map(json.loads, result.stdout.splitlines())}
    policies = {name: (r["policy"], r["policy_from"]) for name, r in rows.items()}
    # the settings' overrides, built-in and MCP, as the daemon applies them
    assert policies["forget_memory"] == ("auto", "tools.policy.forget_memory")
    assert policies["add_todo"] == ("off", "tools.policy.add_todo")
    assert policies["tickets__close_ticket"] == ("auto", "tools.policy.tickets__close_ticket")
    # the defaults, saying whose
    assert policies["cancel_reminder"] == ("confirm", "default")
    assert policies["tickets__lookup_ticket"] == ("auto", "tools.mcp tickets: allow")
    # every built-in family is listed, not only the catalog's to-dos
    assert {"search_memory", "create_reminder", "schedule_task", "fetch_url"} <= set(rows)
    assert rows["search_memory"]["untrusted"] is True  # tools.untrusted applies too
    assert "tools.policy.no_such_tool names no tool" in result.stderr
    assert {name for name, r in rows.items() if not r["deferred"]} == {
        "search_memory",
        "tickets__lookup_ticket",
    }
    assert "tools.always_loaded names no_such_tool, no tool listed here" in result.stderr

    text = CliRunner().invoke(app, ["tools", "list", "--wait", "0"])
    line = next(x for x in text.stdout.splitlines() if x.startswith("forget_memory "))
    assert line.split()[2:4] == ["auto", "tools.policy.forget_memory"]
    refused = CliRunner().invoke(app, ["tools", "call", "add_todo", '{"text": "x"}'])
    assert refused.exit_code == 2 and "tools.policy.add_todo" in refused.stderr
    # the memory tools run from the shell; reminders need the daemon that delivers them
    reminder = '{"when": "in 2h", "text": "x"}'
    daemon = CliRunner().invoke(app, ["tools", "call", "create_reminder", reminder])
    assert daemon.exit_code == 2 and "running daemon" in daemon.stderr


@pytest.fixture
def silent_http() -> Iterator[str]:
    """An HTTP endpoint on 127.0.0.1 that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/mcp"
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    listener.close()


def test_tools_list_names_servers_that_never_answer_and_returns_quickly(
    data_dir: Path, tmp_path: Path, silent_http: str
) -> None:
    pid_file = tmp_path / "hang.pid"
    never = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(300)"
    data_dir.mkdir(parents=True)
    (data_dir / "familiar.toml").write_text(
        f'[[tools.mcp]]\nname = "mute"\ncommand = {json.dumps(sys.executable)}\n'
        f'args = ["-c", {json.dumps(never)}, {json.dumps(str(pid_file))}]\n'
        f'[[tools.mcp]]\nname = "silent"\nurl = {json.dumps(silent_http)}\n'
    )
    started = time.monotonic()
    result = CliRunner().invoke(app, ["tools", "list"])
    took = time.monotonic() - started
    assert result.exit_code == 0, result.output
    # each server waits 60 s to connect by default; the listing waited 10 s for them and then
    # stopped them (it used to wait 61 s, and a stop during the SDK's shutdown never returned)
    assert took < 30, took
    assert "warning: mcp:mute: did not answer within 10 s" in result.stderr
    assert "warning: mcp:silent: did not answer within 10 s" in result.stderr
    assert "add_todo" in result.stdout  # the built-ins are listed all the same
    pid = int(pid_file.read_text())
    assert gone_within(pid, 10), "the server that never answered was left running"


def test_tools_call_prints_results_and_exits_non_zero_on_errors(data_dir: Path) -> None:
    write_config(data_dir)
    runner = CliRunner()
    ok = runner.invoke(app, ["tools", "call", "tickets__lookup_ticket", '{"ticket": 7}'])
    assert (ok.exit_code, ok.stdout.strip()) == (0, "ticket 7: printer on fire")

    added = runner.invoke(
        app, ["tools", "call", "add_todo", '{"text": "ship it", "priority": "high"}']
    )
    assert (added.exit_code, added.stdout.strip()) == (0, "added 🔴 #1 ship it")
    listed = runner.invoke(app, ["tools", "call", "list_todos", "--json"])
    assert json.loads(listed.stdout)["data"][0]["text"] == "ship it"

    for argv, code, said in [
        (["nope"], 2, "no tool named 'nope'"),
        (["tickets__echo", "{}"], 2, "no tool named 'tickets__echo'"),  # not allowed
        (["add_todo", "{not json"], 2, "not valid JSON"),
        (["add_todo", "[1]"], 2, "must be a JSON object"),
        (["add_todo", '{"priority": "high"}'], 2, "'text' is a required property"),
        (["complete_todo", '{"id": 5}'], 1, "no to-do #5"),
    ]:
        result = runner.invoke(app, ["tools", "call", *argv])
        assert result.exit_code == code, (argv, result.output)
        assert said in result.stderr, (argv, result.stderr)


def test_tools_call_reports_an_unreachable_server(data_dir: Path) -> None:
    data_dir.mkdir(parents=True)
    (data_dir / "familiar.toml").write_text(
        '[[tools.mcp]]\nname = "gone"\ncommand = "/nonexistent/server"\n'
    )
    result = CliRunner().invoke(app, ["tools", "call", "gone__anything", "{}", "--wait", "5"])
    assert result.exit_code == 2
    assert "MCP server mcp:gone is down" in result.stderr
    listed = CliRunner().invoke(app, ["tools", "list", "--wait", "5"])
    assert listed.exit_code == 0 and "add_todo" in listed.stdout  # the built-ins are still there
    assert "warning: mcp:gone: down" in listed.stderr


@pytest.fixture
def bad_servers(data_dir: Path) -> Path:
    """One server that cannot start, one that takes a minute to."""
    data_dir.mkdir(parents=True)
    (data_dir / "familiar.toml").write_text(
        '[[tools.mcp]]\nname = "gone"\ncommand = "/nonexistent/server"\n'
        f'[[tools.mcp]]\nname = "slow"\ncommand = {json.dumps(sys.executable)}\n'
        f'args = [{json.dumps(SERVER)}]\nenv = {{ MCP_TEST_SLOW_START = "60" }}\n'
    )
    return data_dir


async def test_the_daemon_starts_at_once_and_status_names_a_broken_server(
    bad_servers: Path,
) -> None:
    data_dir = bad_servers
    settings = load_settings()
    db = Database.open(data_dir / "familiar.db", all_migrations())
    health = build_health(settings, db)
    lifecycle = Lifecycle()
    services = build_services(settings, db, health, lifecycle, started_at=0.0)
    out = io.StringIO()
    attach_channel(
        services,
        lifecycle,
        "console",
        settings,
        db,
        health,
        fail=lambda e: None,
        request_stop=lambda: None,
        stdin=io.StringIO(),
        stdout=out,
    )
    console = lifecycle.services[-1]
    assert isinstance(console, ConsoleChannel)
    started = time.monotonic()
    await lifecycle.start_all()
    try:
        assert time.monotonic() - started < 30  # the slow server's 60 s are not waited for
        assert [s.name for s in services.tools][:1] == ["todos"]
        deadline = time.monotonic() + 20
        status = ""
        while "gone: down" not in status and time.monotonic() < deadline:
            before = len(out.getvalue())
            await console.handle_line("/status")
            status = out.getvalue()[before:]
        assert "⚠️ mcp: gone: down" in status and "slow: connecting" in status
        before = len(out.getvalue())
        await console.handle_line("/todo !high test the wiring")
        await console.handle_line("/todo")
        assert "🔴 #1 test the wiring" in out.getvalue()[before:]
    finally:
        assert await lifecycle.stop_all(30.0)
        db.close()
