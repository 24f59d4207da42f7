"""The ``familiar`` command line. Each command turns FamiliarError into one clear message."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import typer

from bot import __version__
from bot.cli.common import friendly
from bot.errors import FamiliarError

app = typer.Typer(
    name="familiar",
    help="Familiar: a self-hosted AI assistant that lives in Telegram.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Check or print the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


def _register_subcommands() -> None:
    """Each area's commands live in their own module; they import their heavy parts lazily."""
    from bot.cli.agents import ask, usage
    from bot.cli.backup import backup_app, restore_command
    from bot.cli.memory import app as memory_app
    from bot.cli.service import app as service_app
    from bot.cli.tools import app as tools_app
    from bot.cli.train import adapters_app, train_app
    from bot.cli.voice import speak_command, transcribe_command

    app.add_typer(service_app, name="service")
    app.add_typer(memory_app, name="memory")
    app.command("ask")(ask)
    app.command("usage")(usage)
    app.command("transcribe")(transcribe_command)
    app.command("speak")(speak_command)
    app.add_typer(backup_app, name="backup")
    app.command("restore")(restore_command)
    app.add_typer(train_app, name="train")
    app.add_typer(adapters_app, name="adapters")
    app.add_typer(tools_app, name="tools")


def _settings(**overrides: Any):  # type: ignore[no-untyped-def]
    from bot.config import load_settings
    from bot.logs import setup_logging

    settings = load_settings(**overrides)
    setup_logging(settings.log.level, settings.log.json_lines, settings.secret_values())
    return settings


def _run_daemon(console: bool, verbose: bool) -> int:
    """``familiar run|chat``. When the console channel owns the terminal, the log goes to a file
    in the data directory (unless ``verbose``) and what reaches the terminal is written above
    the console's prompt."""
    from bot.config import load_settings
    from bot.daemon.run import choose_channel, prepare_data_dir, run_daemon
    from bot.logs import setup_logging
    from bot.terminal import Terminal

    settings = load_settings()
    terminal = None
    log_dir = None
    if choose_channel(settings, console, sys.stdin) == "console":
        terminal = Terminal(sys.stdout, sys.stderr)
        log_dir = None if verbose else prepare_data_dir(settings.data_dir)
    setup_logging(
        settings.log.level,
        settings.log.json_lines,
        settings.secret_values(),
        stream=terminal.log if terminal else None,  # type: ignore[arg-type]
        log_dir=log_dir,
    )
    code = run_daemon(settings, console=console, stdout=terminal)  # type: ignore[arg-type]
    _exit_now_if_loading(code)
    return code


def _exit_now_if_loading(code: int) -> None:
    """Stopped while the embedding model was still loading (in its first seconds): exit without
    finalising the interpreter, whose end would abort the process with the load's thread still
    in torch (``memory.service.still_loading``). The database is closed by now; the log and
    the terminal are flushed first."""
    from loguru import logger

    from memory.service import still_loading

    if still_loading():
        logger.complete()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


VERBOSE_HELP = "In the console, show the whole log in the terminal instead of only warnings."


def _version(value: bool) -> None:
    if value:
        typer.echo(f"familiar {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Familiar: a self-hosted AI assistant that lives in Telegram."""


@app.command()
@friendly
def run(verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP)) -> None:
    """Run the daemon: Telegram when a token is set, else the console in a terminal.

    In the console the log goes to familiar.log in the data directory; warnings and errors
    still show in the terminal."""
    raise typer.Exit(_run_daemon(console=False, verbose=verbose))


@app.command()
@friendly
def chat(verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP)) -> None:
    """Chat with the assistant in this terminal (the same core as Telegram).

    The log goes to familiar.log in the data directory; warnings and errors still show here."""
    raise typer.Exit(_run_daemon(console=True, verbose=verbose))


@app.command()
@friendly
def health(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per check."),
) -> None:
    """Run the health checks. Exit 0 healthy, 1 degraded, 2 failing.

    The database, disk and configuration are checked here and now; the checks only the daemon
    can run (Telegram, the model, the index, jobs, backups) come from its latest snapshot."""
    from bot.daemon.run import build_health, daemon_checks, open_database
    from memory.health import overall

    settings = _settings()
    db = open_database(settings)
    try:
        results = asyncio.run(build_health(settings, db).run())
        results += daemon_checks(settings, db, {r.name for r in results})
    finally:
        db.close()
    for r in results:
        if as_json:
            typer.echo(json.dumps(r.as_dict(), ensure_ascii=False))
        else:
            typer.echo(f"{r.status.name.lower():<9} {r.name}: {r.detail}")
    raise typer.Exit(int(overall(results)))


@config_app.command("check")
def config_check() -> None:
    """Validate the configuration and list every problem (exit 2 when invalid)."""
    from bot.config import load_settings
    from bot.daemon.run import config_check as semantic_check

    try:
        settings = load_settings()
    except FamiliarError as exc:
        typer.echo(f"error: {exc.explain()}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"configuration is valid (file: {settings.config_file}"
        f"{'' if settings.config_file.is_file() else ', not present'})"
    )
    typer.echo(f"data directory: {settings.data_dir}")
    typer.echo(f"note: {semantic_check(settings).detail}")


@config_app.command("example")
def config_example() -> None:
    """Print a commented example configuration file with every setting and its default."""
    from bot.config import render_example

    typer.echo(render_example(), nl=False)


_register_subcommands()


def main() -> None:
    """Console-script entry point."""
    app(prog_name="familiar")


if __name__ == "__main__":  # pragma: no cover
    main()
