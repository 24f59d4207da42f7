"""Every CLI command has help text, and --version works."""

from __future__ import annotations

from typing import Any

import typer
from typer.testing import CliRunner

from bot import __version__
from bot.cli import app


def walk(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    # typer vendors its own click, so groups are recognised by their sub-commands.
    found = [(path, command)]
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            found += walk(sub, (*path, name))
    return found


def test_every_command_has_help() -> None:
    root = typer.main.get_command(app)
    commands = walk(root)
    assert len(commands) > 5
    runner = CliRunner()
    for path, command in commands:
        assert (command.help or "").strip(), f"`familiar {' '.join(path)}` has no help text"
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage" in result.output
        for param in command.params:
            if getattr(param, "param_type_name", "") == "option" and param.name != "help":
                assert (param.help or "").strip(), (
                    f"option {param.opts} of `familiar {' '.join(path)}` has no help"
                )


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"familiar {__version__}"
