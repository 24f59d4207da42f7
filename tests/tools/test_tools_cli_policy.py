"""``familiar tools list|call`` over the same registry as the daemon and ``familiar ask``: every
built-in family is listed, and the ``tools.policy`` / ``tools.untrusted`` settings are what the
shell shows and obeys (a tool turned off in the settings is not called from the shell either)."""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from loguru import logger
from typer.testing import CliRunner

from bot.cli import app


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """The CLI points logging at CliRunner's stream, which is closed after each invoke."""
    yield
    logger.remove()
    logger.add(sys.stderr, level="WARNING")


def configure(data_dir: Path, text: str) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "familiar.toml").write_text(text)


def listed(runner: CliRunner) -> dict[str, dict]:
    result = runner.invoke(app, ["tools", "list", "--json"])
    assert result.exit_code == 0, result.output
    return {r["name"]: r for r in map(json.loads, result.stdout.splitlines())}


def test_every_built_in_family_is_listed_with_its_settings_applied(data_dir: Path) -> None:
    configure(
        data_dir,
        '[tools]\nuntrusted = ["list_todos"]\n[tools.policy]\ncurrent_time = "off"\n'
        'add_todo = "confirm"\n',
    )
    rows = listed(CliRunner())
    for name in ("search_memory", "remember", "forget_memory", "fetch_url", "add_todo"):
        assert name in rows, name
    assert rows["forget_memory"]["policy"] == "confirm"  # the tool's own default
    assert (rows["current_time"]["policy"], rows["add_todo"]["policy"]) == ("off", "confirm")
    assert rows["list_todos"]["untrusted"] is True and rows["fetch_url"]["untrusted"] is True
    assert list(rows) == sorted(rows)  # the order the model is offered them in


def test_a_tool_turned_off_in_the_settings_is_not_called_from_the_shell(data_dir: Path) -> None:
    configure(data_dir, '[tools.policy]\nadd_todo = "off"\n')
    result = CliRunner().invoke(app, ["tools", "call", "add_todo", '{"text": "ship it"}'])
    assert result.exit_code == 2
    assert "add_todo is turned off" in result.stderr
    conn = sqlite3.connect(data_dir / "familiar.db")
    try:
        assert conn.execute("SELECT count(*) FROM todos").fetchone() == (0,)
    finally:
        conn.close()


def test_built_in_tools_are_called_from_the_shell(data_dir: Path) -> None:
    runner = CliRunner()
    now = runner.invoke(app, ["tools", "call", "current_time"])
    assert now.exit_code == 0, now.output
    assert "(UTC, UTC+0000)" in now.stdout
    found = runner.invoke(app, ["tools", "call", "search_memory", '{"query": "lease"}'])
    assert (found.exit_code, found.stdout.strip()) == (0, "No memories match."), found.output
    bad = runner.invoke(app, ["tools", "call", "search_memory", '{"limit": 3}'])
    assert bad.exit_code == 2 and "'query' is a required property" in bad.stderr
