"""What every CLI module shares: errors as one clear message, memory for a one-shot command."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import typer

from memory.errors import FamiliarError

F = TypeVar("F", bound=Callable[..., Any])


def friendly(fn: F) -> F:
    """Print a FamiliarError as 'error: ... / fix: ...' and exit with its code, no traceback.
    Ctrl-C, once the command's own cleanup has run: "Interrupted.", exit 130, at once if a
    thread would hold the exit (the embedding model still loading: ``bot.exits``)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FamiliarError as exc:
            typer.echo(f"error: {exc.explain()}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            from bot.exits import leave_now_if_threads_linger

            typer.echo("\nInterrupted.", err=True)
            leave_now_if_threads_linger(130)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def cli_memory(settings: Any, db: Any) -> Any:
    """``memory.service.Memory`` over the data directory for a one-shot command, not started
    (the embedding model loads on ``start``; listing tools needs neither)."""
    from zoneinfo import ZoneInfo

    from memory.embedder import make_embedder
    from memory.service import Memory

    return Memory(
        db,
        make_embedder(settings.memory.embedding_model, settings.memory.embedding_batch_size),
        settings.memory,
        settings.data_dir / "index",
        tz=ZoneInfo(settings.jobs.timezone),
    )
