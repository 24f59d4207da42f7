"""``familiar tools list|call``: the assistant's tools from the shell.

The tools come from ``agents.tools.catalog.build_tool_sources``, as in the daemon; MCP servers
are connected for the command and closed after it. ``call`` is the person at the shell asking
plainly for one call, so ``confirm`` tools run; ``off`` tools do not. Exit codes: 0 done, 1 the
tool failed, 2 the call was refused (unknown tool, bad JSON, arguments that fail the schema).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import typer

from bot.cli.common import friendly

T = TypeVar("T")

app = typer.Typer(
    help="List the assistant's tools, or call one from the shell.", no_args_is_help=True
)

WAIT_OPT = typer.Option(
    None,
    "--wait",
    min=0,
    help="Seconds to wait for MCP servers to connect (default: each server's connect_timeout_s).",
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
        for s in sources:
            await s.stop()


def _run(
    work: Callable[[Any, list[Any]], Awaitable[T]], wait_s: float | None, only: str | None
) -> T:
    """Open the database, build and connect the tool sources, run ``work``, close everything.

    ``only``: connect just the MCP server of that name ("" for none)."""
    from agents.tools.catalog import build_tool_sources
    from bot.cli.app import _settings
    from bot.daemon.run import open_database

    settings = _settings()
    db = open_database(settings)

    async def main() -> T:
        sources = [
            s
            for s in build_tool_sources(settings.tools, db)
            if only is None or not s.name.startswith("mcp:") or s.name == f"mcp:{only}"
        ]
        async with started(sources, wait_s):
            return await work(settings, sources)

    try:
        return asyncio.run(main())
    finally:
        db.close()


@app.command("list")
@friendly
def list_command(wait: float | None = WAIT_OPT, as_json: bool = JSON_OPT) -> None:
    """Every tool with its source and policy (MCP servers that could not be reached are named)."""
    from agents.tools.catalog import all_tools, mcp_sources

    async def work(settings: Any, sources: list[Any]) -> tuple[list[Any], list[str]]:
        down = [
            f"{s.name}: {s.describe_state()}"
            for s in mcp_sources(sources)
            if s.state != "connected"
        ]
        return all_tools(sources), down

    tools, down = _run(work, wait, None)
    for tool in tools:
        spec = tool.spec
        if as_json:
            row = {
                "name": spec.name,
                "source": spec.source,
                "policy": spec.policy,
                "read_only": spec.read_only,
                "untrusted": spec.untrusted,
                "description": spec.description,
            }
            typer.echo(json.dumps(row, ensure_ascii=False))
        else:
            marks = ", ".join(
                m for m, on in (("read-only", spec.read_only), ("untrusted", spec.untrusted)) if on
            )
            typer.echo(f"{spec.name:<32} {spec.source:<16} {spec.policy:<8} {marks}".rstrip())
    for line in down:
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

    async def work(settings: Any, sources: list[Any]) -> tuple[int, str, Any]:
        from zoneinfo import ZoneInfo

        import jsonschema

        from agents.tools.base import ToolContext, ToolError
        from agents.tools.catalog import all_tools, mcp_sources

        tools = {t.spec.name: t for t in all_tools(sources)}
        tool = tools.get(name)
        if tool is None:
            why = "".join(
                f"; MCP server {s.name} is {s.describe_state()}"
                for s in mcp_sources(sources)
                if s.state != "connected"
            )
            return 2, f"no tool named {name!r}{why} (see `familiar tools list`)", None
        if tool.spec.policy == "off":
            return 2, f"{name} is turned off (its policy is 'off')", None
        try:
            jsonschema.validate(args, tool.spec.input_schema)
        except jsonschema.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "arguments"
            return 2, f"{where}: {exc.message}", None
        except jsonschema.SchemaError as exc:
            return 1, f"the tool's own schema is invalid: {exc.message}", None
        admins = list(settings.telegram.admins)
        who = chat if chat is not None else (admins[0] if admins else 0)
        ctx = ToolContext(
            chat_id=who, user_id=who, is_admin=True, tz=ZoneInfo(settings.jobs.timezone)
        )
        try:
            result = await tool.call(args, ctx)
        except ToolError as exc:
            return 1, str(exc), None
        except Exception as exc:  # reported like the agent loop reports it: the call failed
            from loguru import logger

            logger.opt(exception=exc).warning("tool {} raised", name)
            return 1, f"the tool raised {type(exc).__name__}: {exc}", None
        return (1 if result.is_error else 0), result.content, result.data

    code, text, data = _run(work, wait, server)
    if as_json:
        typer.echo(json.dumps({"ok": code == 0, "content": text, "data": data}, default=str))
    elif code == 0:
        typer.echo(text)
    else:
        typer.echo(f"error: {text}", err=True)
    raise typer.Exit(code)
