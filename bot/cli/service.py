"""``familiar service install|uninstall``: set Familiar up as a systemd service, or remove it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from bot.install.plan import (
    DEFAULT_PREFIX,
    DEFAULT_TORCH,
    DEFAULT_USER,
    InstallOptions,
    MachineFacts,
    default_source,
    install_plan,
    next_steps,
    read_unit_template,
    require_root,
    require_systemd,
    uninstall_plan,
)
from bot.install.steps import DryRunExecutor, Executor, ServiceError, SystemExecutor

app = typer.Typer(
    help="Install Familiar as a hardened systemd service (needs root), or remove it.",
    no_args_is_help=True,
)

USER_OPT = typer.Option(
    DEFAULT_USER, "--user", help="System user the service runs as (created if missing)."
)
PREFIX_OPT = typer.Option(
    DEFAULT_PREFIX, "--prefix", help="Where the virtualenv goes (PREFIX/.venv)."
)
DRY_RUN_OPT = typer.Option(
    False, "--dry-run", help="Print every command and file instead of doing anything."
)


def _executor(dry_run: bool) -> Executor:
    return DryRunExecutor(sys.stdout) if dry_run else SystemExecutor(sys.stdout)


def _fail(error: ServiceError) -> typer.Exit:
    typer.echo(error.explain(), err=True)
    return typer.Exit(error.exit_code)


@app.command()
def install(
    user: str = USER_OPT,
    prefix: Path = PREFIX_OPT,
    source: Path | None = typer.Option(
        None, "--source", help="The Familiar checkout to install (default: the one running this)."
    ),
    torch: str = typer.Option(
        DEFAULT_TORCH,
        "--torch",
        envvar="FAMILIAR_TORCH",
        help="pip arguments for PyTorch, installed first; e.g. "
        "'torch --index-url https://download.pytorch.org/whl/cu124' for CUDA.",
    ),
    dry_run: bool = DRY_RUN_OPT,
) -> None:
    """Create the user, a virtualenv with Familiar, /etc/familiar and the unit; daemon-reload."""
    options = InstallOptions(
        user=user, prefix=prefix, source=source or default_source(), torch=torch
    )
    try:
        require_root(os.geteuid(), dry_run, "installing")
        facts = MachineFacts.probe(options)
        require_systemd(facts, dry_run)
        plan = install_plan(options, facts, read_unit_template(options.source))
        _executor(dry_run).carry_out(plan)
    except ServiceError as exc:
        raise _fail(exc) from None
    if not dry_run:
        typer.echo(next_steps(options))


@app.command()
def uninstall(user: str = USER_OPT, prefix: Path = PREFIX_OPT, dry_run: bool = DRY_RUN_OPT) -> None:
    """Stop and remove the unit and the virtualenv; data, settings and the user are kept."""
    options = InstallOptions(user=user, prefix=prefix)
    try:
        require_root(os.geteuid(), dry_run, "removing")
        facts = MachineFacts.probe(options)
        require_systemd(facts, dry_run)
        _executor(dry_run).carry_out(uninstall_plan(options, facts))
    except ServiceError as exc:
        raise _fail(exc) from None
