"""``familiar ask [--think | --review] [--json] TEXT`` and ``familiar usage``.

The lead registers these at the top level: ``app.registered_commands += agents_app.registered_commands``
(or ``app.command("ask")(ask)`` and ``app.command("usage")(usage)``). The work lives in agents/;
this module builds the services from the settings and prints.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import typer

from agents.chat import Answer, ChatAgent, LLMFactExtractor, answer_as_json
from agents.llm import LLM
from agents.providers import build_provider
from agents.review import ReviewEngine
from agents.usage import UsageStore
from bot.cli.common import friendly
from bot.config import Settings, load_settings
from memory.db import Database

app = typer.Typer(help="Ask the assistant from the shell, and show model usage.")

CLI_CHAT_ID = 0  # the console's own chat: its turns are kept apart from Telegram chats


def _open(settings: Settings) -> Database:
    from bot.daemon.run import open_database

    return open_database(settings)


async def _ask(
    settings: Settings, db: Database, text: str, mode: str, user_id: int, stream: bool
) -> Answer:
    from zoneinfo import ZoneInfo

    from memory.embedder import make_embedder
    from memory.service import Memory

    memory = Memory(
        db,
        make_embedder(settings.memory.embedding_model, settings.memory.embedding_batch_size),
        settings.memory,
        settings.data_dir / "index",
        tz=ZoneInfo(settings.jobs.timezone),
    )
    await memory.start()
    llm = LLM(build_provider(settings.llm), UsageStore(db, settings.llm))
    review = ReviewEngine(llm, settings.review, settings.llm, db)
    agent = ChatAgent(memory, llm, settings.llm, review, LLMFactExtractor(llm), db=db)
    printed = [0]

    async def on_delta(so_far: str) -> None:
        typer.echo(so_far[printed[0] :], nl=False)
        printed[0] = len(so_far)

    async def on_progress(phase: str) -> None:
        typer.echo(f"… {phase}", err=True)

    try:
        answer = await agent.answer(
            CLI_CHAT_ID,
            user_id,
            text,
            mode=mode,  # type: ignore[arg-type]
            is_admin=True,
            on_delta=on_delta if stream else None,
            progress=on_progress,
        )
        await agent.drain()
        if stream and printed[0]:
            typer.echo("")
            # The rest of the answer (a truncation note), if any; an error that came instead
            # (the stream broke part-way) is a message of its own and is printed whole.
            if answer.error is None:
                answer.text = answer.text[printed[0] :]
        return answer
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
        False, "--json", help="Print the answer with its passes/rounds and usage as JSON."
    ),
    user: int = typer.Option(
        0, "--user", help="User id the answer is recorded for (budgets, memory)."
    ),
) -> None:
    """Ask the assistant once and print the answer (uses and updates memory like a chat)."""
    if think and review:
        raise typer.BadParameter("choose --think or --review, not both")
    mode = "think" if think else "review" if review else "single"
    settings = load_settings()
    db = _open(settings)
    try:
        answer = asyncio.run(
            _ask(settings, db, text, mode, user, stream=not as_json and mode == "single")
        )
    finally:
        db.close()
    if as_json:
        typer.echo(answer_as_json(answer))
    elif answer.text:
        typer.echo(answer.text)
    if answer.error:
        raise typer.Exit(1)


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
