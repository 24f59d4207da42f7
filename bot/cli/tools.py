"""``familiar tools list|call``: the assistant's tools from the shell.

The tools come from ``bot.daemon.agent_tools.build_agent_tools``, as in the daemon and
``familiar ask`` (the built-in families, to-dos, MCP servers; with the ``tools.policy`` and
``tools.untrusted`` settings applied by the one registry); MCP servers are connected for the
command and closed after it, each stop bounded (``MCPServerSource.stop``). ``list`` also shows the
families that act only through the running daemon (reminders, tasks), and every tool's policy as
the daemon applies it with where it comes from; it waits at most ``--wait`` seconds (10 by
default) for MCP servers and names those that did not answer. ``call`` is the person at the shell
asking plainly for one call, so ``confirm`` tools run; ``off`` tools do not. Exit codes: 0 done,
1 the tool failed, 2 the call was refused (unknown, daemon-only or turned-off tool, bad JSON,
arguments that fail the schema).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import typer

from bot.cli.common import friendly

T = TypeVar("T")
# A tool's spec, its policy, where that comes from, untrusted, deferred.
Row = tuple[Any, Any, str, bool, bool]

app = typer.Typer(
    help="List the assistant's tools, or call one from the shell.", no_args_is_help=True
)

LIST_WAIT_S = 10.0  # a listing is for a person at a terminal: a server that hangs is named
WAIT_OPT = typer.Option(
    None,
    "--wait",
    min=0,
    help=(
        "Seconds to wait for MCP servers to connect (default: 10 for list, each server's "
        "connect_timeout_s for call)."
    ),
)
JSON_OPT = typer.Option(False, "--json", help="Print JSON instead of text.")
CHAT_OPT = typer.Option(
    None,
    "--chat",
    help="The chat the tool acts for (its to-dos, its memory); default: the first admin's.",
)


@asynccontextmanager
async def started(sources: list[Any], wait_s: float | None) -> AsyncIterator[None]:
    """The tool sources started, MCP servers given ``wait_s`` seconds to connect (default: each
    server's ``connect_timeout_s``); all stopped on the way out. A shell command waits for its
    servers, unlike the daemon: it answers once, so a tool still connecting would be missed."""
    from agents.tools.catalog import mcp_sources

    for s in sources:
        await s.start()
    try:
        waits = [
            s.wait_ready(wait_s if wait_s is not None else s.settings.connect_timeout_s + 1)
            for s in mcp_sources(sources)
        ]
        await asyncio.gather(*waits)
        yield
    finally:
        await asyncio.gather(*(s.stop() for s in sources))


@dataclass
class Toolbox:
    """What a command's work gets: the settings, the one registry, its sources, and memory
    (built, not started: ``call`` starts it for the memory tools)."""

    settings: Any
    registry: Any
    sources: list[Any]
    memory: Any
    db: Any


def _run(work: Callable[[Toolbox], Awaitable[T]], wait_s: float | None, only: str | None) -> T:
    """Open the database, build the tools as the daemon does, connect the MCP servers, run
    ``work``, close everything.

    ``only``: connect just the MCP server of that name ("" for none)."""
    from bot.cli.app import _settings
    from bot.cli.common import cli_memory
    from bot.daemon.agent_tools import build_agent_tools
    from bot.daemon.run import open_database

    settings = _settings()
    db = open_database(settings)

    async def main() -> T:
        memory = cli_memory(settings, db)
        loop, sources = build_agent_tools(settings, db, memory)
        wanted = [
            s
            for s in sources
            if only is None or not s.name.startswith("mcp:") or s.name == f"mcp:{only}"
        ]
        async with started(wanted, wait_s):
            return await work(Toolbox(settings, loop.registry, sources, memory, db))

    try:
        return asyncio.run(main())
    finally:
        db.close()


@app.command("list")
@friendly
def list_command(wait: float | None = WAIT_OPT, as_json: bool = JSON_OPT) -> None:
    """Every tool with its source and effective policy, and where that policy comes from, and
    which wait for the model's tool search (deferred; MCP servers that did not answer in time
    are named)."""
    from agents.tools.catalog import mcp_sources
    from agents.tools.registry import ToolRegistry
    from bot.daemon.agent_tools import listed_builtin_sources

    wait_s = LIST_WAIT_S if wait is None else wait

    async def work(box: Toolbox) -> tuple[list[Row], list[str]]:
        settings, sources = box.settings, box.sources
        registry = ToolRegistry(
            [*listed_builtin_sources(settings, box.db), *sources],
            settings.tools.policy,
            settings.tools.untrusted,
            settings.tools.deferring,
        )
        down = [
            f"{s.name}: did not answer within {wait_s:g} s (its tools are not listed; --wait waits longer)"
            if s.state == "connecting" and s.error is None
            else f"{s.name}: {s.describe_state()}"
            for s in mcp_sources(sources)
            if s.state != "connected"
        ]
        tools = registry.all()  # now: the MCP servers' tools go when they are stopped
        known = {t.spec.name for t in tools}
        down += [
            f"tools.policy.{name} names no tool listed here"
            for name in sorted(set(settings.tools.policy) - known)
        ]
        down += [
            f"tools.always_loaded names {name}, no tool listed here"
            for name in sorted(set(settings.tools.always_loaded) - known)
        ]
        rows = [
            (
                t.spec,
                registry.policy(t),
                registry.policy_from(t),
                registry.untrusted(t),
                registry.deferred(t),
            )
            for t in tools
        ]
        return rows, down

    rows, warnings = _run(work, wait_s, None)
    for spec, policy, origin, untrusted, deferred in rows:
        if as_json:
            row = {
                "name": spec.name,
                "source": spec.source,
                "policy": policy,
                "policy_from": origin,
                "read_only": spec.read_only,
                "untrusted": untrusted,
                "deferred": deferred,
                "description": spec.description,
            }
            typer.echo(json.dumps(row, ensure_ascii=False))
        else:
            marks = ", ".join(
                m
                for m, on in (
                    ("read-only", spec.read_only),
                    ("untrusted", untrusted),
                    ("deferred", deferred),
                )
                if on
            )
            typer.echo(
                f"{spec.name:<28} {spec.source:<14} {policy:<8} {origin:<32} {marks}".rstrip()
            )
    for line in warnings:
        typer.echo(f"warning: {line}", err=True)


@app.command("call")
@friendly
def call_command(
    name: str = typer.Argument(..., help="The tool's name, as `familiar tools list` shows it."),
    arguments: str = typer.Argument(
        "{}", help="Its arguments as a JSON object, e.g. '{\"id\": 3}'."
    ),
    chat: int | None = CHAT_OPT,
    wait: float | None = WAIT_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Call one tool and print its result (exit 1 when it fails, 2 when the call is refused)."""
    try:
        args = json.loads(arguments)
    except json.JSONDecodeError as exc:
        typer.echo(f"error: the arguments are not valid JSON: {exc}", err=True)
        raise typer.Exit(2) from None
    if not isinstance(args, dict):
        typer.echo("error: the arguments must be a JSON object, e.g. '{}'", err=True)
        raise typer.Exit(2)
    server = name.split("__", 1)[0] if "__" in name else ""  # built-in: no server needed

    async def work(box: Toolbox) -> tuple[int, str, Any]:
        from zoneinfo import ZoneInfo

        from jsonschema.exceptions import SchemaError

        from agents.tools.base import ToolContext, ToolError
        from agents.tools.catalog import mcp_sources
        from agents.tools.memory_tools import memory_tools
        from bot.daemon.agent_tools import listed_builtin_sources

        tool = next((t for t in box.registry.all() if t.spec.name == name), None)
        daemon_only = {
            t.spec.name for s in listed_builtin_sources(box.settings, box.db) for t in s.tools()
        }
        if tool is None and name in daemon_only:
            return 2, f"{name} acts through the running daemon (ask the assistant)", None
        if tool is None:
            why = "".join(
                f"; MCP server {s.name} is {s.describe_state()}"
                for s in mcp_sources(box.sources)
                if s.state != "connected"
            )
            return 2, f"no tool named {name!r}{why} (see `familiar tools list`)", None
        if box.registry.policy(tool) == "off":
            origin = box.registry.policy_from(tool)
            return 2, f"{name} is turned off (policy 'off', from {origin})", None
        try:
            problem = box.registry.invalid(tool, args)
        except SchemaError as exc:
            return 1, f"the tool's own schema is invalid: {exc.message}", None
        if problem is not None:
            return 2, f"invalid arguments: {problem}", None
        admins = list(box.settings.telegram.admins)
        who = chat if chat is not None else (admins[0] if admins else 0)
        ctx = ToolContext(
            chat_id=who, user_id=who, is_admin=True, tz=ZoneInfo(box.settings.jobs.timezone)
        )
        uses_memory = name in {t.spec.name for t in memory_tools(box.memory).tools()}
        if uses_memory:
            await box.memory.start()
        try:
            result = await tool.call(args, ctx)
        except ToolError as exc:
            return 1, str(exc), None
        except Exception as exc:  # reported like the agent loop reports it: the call failed
            from loguru import logger

            logger.opt(exception=exc).warning("tool {} raised", name)
            return 1, f"the tool raised {type(exc).__name__}: {exc}", None
        finally:
            if uses_memory:
                await box.memory.stop()
        return (1 if result.is_error else 0), result.content, result.data

    code, text, data = _run(work, wait, server)
    if as_json:
        typer.echo(json.dumps({"ok": code == 0, "content": text, "data": data}, default=str))
    elif code == 0:
        typer.echo(text)
    else:
        typer.echo(f"error: {text}", err=True)
    raise typer.Exit(code)
