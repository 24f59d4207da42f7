"""The settings file as a backup archives it: parsed, every secret field dropped, written anew.

A line-by-line filter misses what TOML allows: a dotted key at the top level
(``telegram.token = "..."``), an inline table (``telegram = { token = "..." }``), quoted keys,
multi-line strings, a secret spelled with escapes. So the file is parsed with ``tomllib``, the
values at the secret fields' paths are removed from the parsed data, and the archived copy is
written from what is left with ``tomli_w``, under a comment that says what was removed. The
original's comments are not carried over (a commented-out old token is a secret too).

Which fields are secret is not known here (jobs does not import bot): the composition root
derives the paths from the settings model and passes them in.

A file that does not parse is not archived at all: nothing of it can be shown to be free of
secrets. The manifest says why.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import tomli_w

SecretPaths = frozenset[tuple[str, ...]]


@dataclass(frozen=True)
class RedactedSettings:
    """The archived copy (None when the file cannot be archived), what was removed, and why not."""

    text: str | None
    removed: list[str] = field(default_factory=list)
    problem: str | None = None


def _pop_path(node: Any, path: tuple[str, ...]) -> bool:
    """Remove the values at ``path`` (keys compared without case); True when one was there.
    An array of tables (``[[telegram]]``, which the settings refuse) is searched element-wise."""
    if isinstance(node, list):
        return any([_pop_path(item, path) for item in node])
    if not isinstance(node, dict) or not path:
        return False
    head, rest = path[0].lower(), path[1:]
    keys = [k for k in node if k.lower() == head]
    if not rest:
        for k in keys:
            del node[k]
        return bool(keys)
    return any([_pop_path(node[k], rest) for k in keys])  # a list: every branch is visited


def redact_settings(raw: bytes, secret_paths: Iterable[tuple[str, ...]]) -> RedactedSettings:
    """Parse the settings file and return it without any value at a secret path."""
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return RedactedSettings(None, problem="it is not UTF-8 text")
    except tomllib.TOMLDecodeError as exc:  # the message gives a position, never the content
        return RedactedSettings(None, problem=f"it is not valid TOML ({exc})")
    removed = [".".join(p) for p in sorted(set(secret_paths)) if _pop_path(data, p)]
    header = [
        "# The settings file as `familiar backup` archived it: rewritten from its parsed values,",
        "# so the original's comments and layout are not kept.",
    ]
    if removed:
        header += [
            f"# Removed (secrets are never archived): {', '.join(removed)}.",
            "# Give them again through systemd credentials or FAMILIAR_* environment variables.",
        ]
    return RedactedSettings("\n".join(header) + "\n\n" + tomli_w.dumps(data), removed)
