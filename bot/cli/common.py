"""What every CLI module shares: errors as one clear message, settings read once with logging."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import typer

from memory.errors import FamiliarError

F = TypeVar("F", bound=Callable[..., Any])


def friendly(fn: F) -> F:
    """Print a FamiliarError as 'error: ... / fix: ...' and exit with its code, no traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FamiliarError as exc:
            typer.echo(f"error: {exc.explain()}", err=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]
