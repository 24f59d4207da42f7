"""``familiar ask [--think | --review] [--json] [--no-tools] TEXT`` and ``familiar usage``.

The lead registers these at the top level: ``app.registered_commands += agents_app.registered_commands``
(or ``app.command("ask")(ask)`` and ``app.command("usage")(usage)``). The work lives in agents/;
this module builds the services from the settings and prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from typing import Any

import typer

from agents.chat import Answer, ChatAgent, LLMFactExtractor, answer_as_json
from agents.llm import LLM
from agents.providers import build_provider
from agents.review import ReviewEngine
from agents.usage import UsageStore
from bot.cli.common import friendly
from bot.config import Settings, load_settings
from bot.exits import leave_now
from memory.db import Database

app = typer.Typer(help="Ask the assistant from the shell, and show model usage.")

CLI_CHAT_ID = 0  # the console's own chat: its turns are kept apart from Telegram chats


def _open(settings: Settings) -> Database:
    from bot.daemon.run import open_database

    return open_database(settings)


class _Printer:
    """Streams an answer to stdout. With tools an answer has several model steps, each streamed
    from its start: a text that does not continue the one printed begins a new line."""

    def __init__(self) -> None:
        self.step = ""  # the text of the current step printed so far

    async def delta(self, so_far: str) -> None:
        if not so_far.startswith(self.step):
            typer.echo("")
            self.step = ""
        typer.echo(so_far[len(self.step) :], nl=False)
        self.step = so_far

    def rest(self, answer: Answer) -> str:
        """What is left to print of the finished answer (a note after the streamed text)."""
        if answer.error is None and answer.text.startswith(self.step):
            return answer.text[len(self.step) :]
        return answer.text


def _person_allows(waiting_for: str) -> bool:
    """Ask at the terminal (y/N); anything but yes, end of input included, is no."""
    import click

    try:
        return click.confirm(
            f"🔐 May I do this?\n{waiting_for}\n", default=False, err=True, show_default=True
        )
    except click.Abort:
        return False


async def _ask_person(waiting_for: str) -> bool:
    """``_person_allows`` in a daemon thread, as the console reads its lines: a thread blocked
    on the terminal must not keep the process alive when Ctrl-C ends the command."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[bool] = loop.create_future()

    def settle(allowed: bool) -> None:
        if not future.done():
            future.set_result(allowed)

    def read() -> None:
        allowed = _person_allows(waiting_for)
        with contextlib.suppress(RuntimeError):  # the command ended meanwhile: loop closed
            loop.call_soon_threadsafe(settle, allowed)

    threading.Thread(target=read, daemon=True, name="ask-confirm").start()
    return await future


async def _abandon(loop: Any, run_id: int, user_id: int) -> None:
    """The command ends while a call waits for the person's OK: the answer is ended, nothing
    done, so no later sweep reports it to a chat that never saw the question."""
    claim = await loop.db.run(loop.store.claim, run_id, user_id, time.time())
    if claim.state is not None:
        await loop.db.run(loop.store.finish, run_id, "failed", "the command ended while asking")


class _Steps:
    """Prints the tool calls of an answer to stderr as they are recorded (``🔧 N. tool {args} →
    outcome``, as the chat's "🔧 steps" button shows them) and keeps them for ``--json``."""

    def __init__(self, loop: Any) -> None:
        self.loop = loop
        self.rows: list[Any] = []

    async def show(self, run_id: int | None) -> None:
        from bot.core.tool_buttons import step_line

        if self.loop is None or run_id is None:
            return
        calls = await self.loop.db.run(self.loop.store.calls, run_id)
        for n, call in enumerate(calls[len(self.rows) :], len(self.rows) + 1):
            typer.echo(f"🔧 {step_line(n, call)}", err=True)
        self.rows = calls

    def as_json(self) -> list[dict[str, Any]]:
        return [
            {"tool": c.tool, "arguments": c.arguments, "outcome": c.outcome, "error": c.error}
            for c in self.rows
        ]


async def _ask(
    settings: Settings,
    db: Database,
    text: str,
    mode: str,
    user_id: int,
    stream: bool,
    use_tools: bool,
    interactive: bool,
) -> tuple[Answer, _Steps]:
    """One answer, with the daemon's tools (``build_agent_tools``) unless ``use_tools`` is
    False. ``interactive``: a call that needs the person's OK pauses the answer and is asked
    at the terminal; otherwise such calls are refused (the model is told why)."""
    from contextlib import AsyncExitStack

    from agents.tools.catalog import mcp_sources
    from bot.cli.common import cli_memory
    from bot.cli.tools import started
    from bot.daemon.agent_tools import build_agent_tools

    memory = cli_memory(settings, db)
    await memory.start()
    llm = LLM(build_provider(settings.llm), UsageStore(db, settings.llm))
    loop, sources = build_agent_tools(settings, db, memory) if use_tools else (None, [])
    review = ReviewEngine(llm, settings.review, settings.llm, db)
    agent = ChatAgent(memory, llm, settings.llm, review, LLMFactExtractor(llm), db=db, tools=loop)
    printer, steps = _Printer(), _Steps(loop)

    async def on_progress(phase: str) -> None:
        typer.echo(f"… {phase}", err=True)

    on_delta = printer.delta if stream else None
    try:
        async with AsyncExitStack() as stack:
            if sources:
                await stack.enter_async_context(started(sources, None))
                for server in mcp_sources(sources):  # answered without it, and said so
                    if server.state != "connected":
                        typer.echo(f"warning: {server.name}: {server.describe_state()}", err=True)
            answer = await agent.answer(
                CLI_CHAT_ID,
                user_id,
                text,
                mode=mode,  # type: ignore[arg-type]
                is_admin=True,
                on_delta=on_delta,
                progress=on_progress,
                on_activity=on_progress,
                can_pause=interactive,
            )
            await steps.show(answer.tool_run_id)
            while answer.waiting_for is not None and answer.tool_run_id is not None:
                if printer.step:
                    typer.echo("")
                printer.step = ""
                try:
                    allowed = await _ask_person(answer.waiting_for)
                except BaseException as exc:  # Ctrl-C at the question
                    await asyncio.shield(_abandon(loop, answer.tool_run_id, user_id))
                    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
                        _bound_the_exit()
                    raise
                answer = await agent.resume(
                    answer.tool_run_id, allowed, user_id, on_delta=on_delta, on_activity=on_progress
                )
                await steps.show(answer.tool_run_id)
            await agent.drain()
        if stream and printer.step:
            typer.echo("")
            # The rest of the answer (a truncation or stop note), if any; an error that came
            # instead (the stream broke part-way) is a message of its own and is printed whole.
            answer.text = printer.rest(answer)
        return answer, steps
    finally:
        await llm.aclose()
        await memory.stop()


@app.command("ask")
@friendly
def ask(
    text: str = typer.Argument(..., help="The question or task."),
    think: bool = typer.Option(
        False, "--think", help="Three-pass answer: draft, critique, refine."
    ),
    review: bool = typer.Option(False, "--review", help="Run the review panel on the task."),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print the answer with its passes/rounds, tool steps and usage as JSON.",
    ),
    user: int = typer.Option(
        0, "--user", help="User id the answer is recorded for (budgets, memory)."
    ),
    no_tools: bool = typer.Option(
        False, "--no-tools", help="Answer without tools (no tool is offered to the model)."
    ),
) -> None:
    """Ask the assistant once and print the answer (uses and updates memory like a chat).

    The answer may use the chat's tools (memory, to-dos, the clock, the web, MCP servers) under
    the same policies; each call is printed to stderr. A call that needs your OK is asked here
    (y/N); when stdin is not a terminal it is refused and nothing is done. Reminders and
    scheduled tasks need the running daemon (`familiar chat` or Telegram)."""
    import sys

    if think and review:
        raise typer.BadParameter("choose --think or --review, not both")
    mode = "think" if think else "review" if review else "single"
    settings = load_settings()
    db = _open(settings)
    try:
        answer, steps = asyncio.run(
            _ask(
                settings,
                db,
                text,
                mode,
                user,
                stream=not as_json and mode == "single",
                use_tools=not no_tools,
                interactive=sys.stdin.isatty(),
            )
        )
    except KeyboardInterrupt:
        # Everything that matters is closed (the answer ended, the database), but the thread
        # reading the question still holds the terminal: the interpreter's shutdown would abort
        # on its lock ("Fatal Python error: _enter_buffered_busy"). So the process ends here.
        db.close()
        typer.echo("\nInterrupted.", err=True)
        leave_now(130)
    finally:
        db.close()
    if as_json:
        out = json.loads(answer_as_json(answer))
        out["steps"] = steps.as_json()
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2))
    elif answer.text:
        typer.echo(answer.text)
    if answer.error:
        raise typer.Exit(1)


#: After Ctrl-C, the most the command's cleanup may take before the process ends regardless.
INTERRUPTED_EXIT_S = 10.0


def _bound_the_exit() -> None:
    """Ctrl-C, the answer ended: everything is closed in order, but for no longer than
    ``INTERRUPTED_EXIT_S``. A statement may wait up to the database's busy timeout (30 s) for
    another process's lock, the model's loader may hold the import lock, and a command that
    outlives its Ctrl-C by a minute looks hung. SQLite keeps what was committed either way."""

    def leave() -> None:
        typer.echo("\nInterrupted (cleanup cut short).", err=True)
        leave_now(130)

    timer = threading.Timer(INTERRUPTED_EXIT_S, leave)
    timer.daemon = True
    timer.start()


def _format_usage(summary: dict[str, Any]) -> str:
    t = summary["totals"]
    lines = [
        f"since {summary['since']} (UTC): {t['calls']} calls, {t['tokens']:,} tokens "
        f"(input {t['input']:,}, cached read {t['cache_read']:,}, cache write {t['cache_write']:,}, "
        f"output {t['output']:,}), about ${t['cost_usd']:.4f}; {t['failed']} failed"
    ]
    for purpose, p in summary["per_purpose"].items():
        lines.append(
            f"  {purpose:<24} {p['calls']:>5} calls {p['input'] + p['cache_read'] + p['cache_write']:>10,} in"
            f" {p['output']:>9,} out  ${p['cost_usd']:.4f}"
        )
    if "daily_budget" in summary:
        budget = summary["daily_budget"]
        lines.append(
            f"user {summary['user_id']}: {summary['used_today']:,} tokens today of "
            + (f"{budget:,}" if budget is not None else "no limit")
        )
    return "\n".join(lines)


@app.command("usage")
@friendly
def usage(
    days: int = typer.Option(1, "--days", min=1, help="Days to cover, today included."),
    user: int | None = typer.Option(None, "--user", help="Only this user (shows their budget)."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Show model calls, tokens and estimated cost, per purpose."""
    settings = load_settings()
    db = _open(settings)
    try:
        summary = UsageStore(db, settings.llm).summary(user_id=user, days=days)
    finally:
        db.close()
    typer.echo(json.dumps(summary, indent=2) if as_json else _format_usage(summary))
