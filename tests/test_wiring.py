"""The whole service graph, built as the daemon builds it, in a temp data directory."""

from __future__ import annotations

import asyncio
import gc
import io
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.console import ConsoleChannel
from bot.daemon.lifecycle import Lifecycle
from bot.daemon.run import all_migrations, build_health
from bot.daemon.services import Services, attach_channel, build_services
from jobs.scheduler import JobQueueBackend
from memory.db import Database
from memory.embedder import SentenceTransformerEmbedder, make_embedder

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Graph:
    def __init__(
        self, services: Services, console: ConsoleChannel, out: io.StringIO, db: Database
    ) -> None:
        self.services, self.console, self.out, self.db = services, console, out, db

    async def say(self, line: str) -> str:
        before = len(self.out.getvalue())
        await self.console.handle_line(line)
        return self.out.getvalue()[before:]


@pytest.fixture
def made_data_dir(data_dir: Path) -> Path:
    data_dir.mkdir(parents=True)
    return data_dir


@pytest.fixture
async def graph(made_data_dir: Path) -> AsyncIterator[Graph]:
    settings = load_settings()
    data_dir = made_data_dir
    db = Database.open(data_dir / "familiar.db", all_migrations())
    health = build_health(settings, db)
    lifecycle = Lifecycle()
    services = build_services(settings, db, health, lifecycle, started_at=0.0)
    out = io.StringIO()
    attach_channel(
        services,
        lifecycle,
        "console",
        settings,
        db,
        health,
        fail=lambda e: None,
        request_stop=lambda: None,
        stdin=io.StringIO(),
        stdout=out,
    )
    console = lifecycle.services[-1]
    assert isinstance(console, ConsoleChannel)
    await lifecycle.start_all()
    yield Graph(services, console, out, db)
    assert await lifecycle.stop_all(30.0)
    db.close()


async def test_every_planned_command_has_a_real_handler(graph: Graph) -> None:
    for command in graph.services.assistant.commands:
        reply = (
            await graph.say(f"/{command.name}")
            if command.name not in ("forgetme", "backup")
            else ""
        )
        assert "not available in this version" not in reply, command.name


async def test_the_daemon_embeds_one_text_through_the_traced_model(graph: Graph) -> None:
    """``memory.embedding_traced`` and ``embedding_query_int8`` (on) reach the daemon's
    embedder; the CLI's is untraced, without the int8 copy."""
    embedder = graph.services.memory.embedder
    assert isinstance(embedder, SentenceTransformerEmbedder) and embedder.trace
    assert embedder.query_int8
    cli = make_embedder(embedder.model_spec)
    assert not cli.trace and not cli.query_int8  # type: ignore[attr-defined]


async def test_reminders_are_stored_listed_and_deleted_with_a_button(graph: Graph) -> None:
    bad = await graph.say("/remind someday water the plants")
    assert "in 20m" in bad  # the refusal shows examples
    ok = await graph.say("/remind in 2h water the plants")
    assert "water the plants" in ok
    listing = await graph.say("/reminders")
    assert "[1] 🗑" in listing
    assert "deleted" in await graph.say("1")
    assert "No reminders here" in await graph.say("/reminders")


async def test_status_lists_the_checks_of_every_part(graph: Graph) -> None:
    status = await graph.say("/status")
    for name in ("database", "disk", "config", "memory_index", "jobs", "backup"):
        assert f" {name}:" in status, name


async def test_a_message_without_a_model_gets_what_memory_recalls(graph: Graph) -> None:
    await graph.say("/remember the spare key is under the blue pot")
    await graph.services.memory.wait_ready()
    reply = await graph.say("where is the spare key?")
    assert "FAMILIAR_LLM__PROVIDER" in reply
    assert "the spare key is under the blue pot" in reply
    assert "[1] 👍" in reply  # feedback buttons on the console too


async def test_a_link_in_the_console_is_read_through_the_real_graph(graph: Graph) -> None:
    """Links are handled in front of the answerer on every channel; by default a private
    address is refused (``tools.fetch_allow_private``) and nothing is stored."""
    from tests.memory.webserver import web_server

    with web_server() as site:
        reply = await graph.say(f"{site}/article")
    assert "private or local address (127.0.0.1)" in reply
    with graph.db.read() as conn:
        assert conn.execute("SELECT count(*) FROM memories").fetchone()[0] == 0


async def wait_for_output(graph: Graph, text: str, within: float = 10.0) -> str:
    deadline = asyncio.get_running_loop().time() + within
    while text not in graph.out.getvalue():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{text!r} not shown; got {graph.out.getvalue()[-500:]!r}")
        await asyncio.sleep(0.05)
    return graph.out.getvalue()


async def test_a_reminder_fires_through_the_daemons_job_queue(graph: Graph) -> None:
    """The daemon's scheduler is PTB's JobQueue on an Application built only for it."""
    assert "tea" in await graph.say("/remind in 20m tea")
    gc.collect()  # PTB's JobQueue keeps that Application only by a weak reference
    backend = graph.services.reminders.backend
    assert isinstance(backend, JobQueueBackend)
    (job,) = backend.job_queue.get_jobs_by_name("reminder:1")
    job.job.modify(next_run_time=datetime.now(UTC))  # due now rather than in 20 minutes
    await wait_for_output(graph, "⏰ tea")
    assert "No reminders here" in await graph.say("/reminders")


async def test_a_late_reminder_says_so_once_in_plain_words(graph: Graph) -> None:
    await graph.say("/remind in 20m stretch")
    with graph.db.transaction() as conn:  # as if the daemon had been down when it fell due
        conn.execute("UPDATE reminders SET due_at = ?", (time.time() - 3600,))
    await graph.services.reminders.start()  # as at a restart: the one that fell due is late
    shown = await wait_for_output(graph, "⏰ stretch")
    note = shown[shown.index("⏰ stretch") :].splitlines()[1]
    assert note.startswith("(late: this was due ") and note.endswith("while I was offline)")


async def test_the_console_user_is_told_an_admin_notice_whole(graph: Graph) -> None:
    """The console's person is its admin: a health notice says which check and what to do."""
    await graph.services.notify_admins(
        "⚠️ Familiar is degraded\n⚠️ memory_index: index has 8 vectors, SQLite 9; run "
        "`familiar memory reindex`"
    )
    shown = graph.out.getvalue()
    assert "Familiar is degraded" in shown and "run `familiar memory reindex`" in shown


async def test_the_console_admins_digest_lists_its_own_todos_only(graph: Graph) -> None:
    """The digest goes through the real AdminNotifier, one copy per admin chat."""
    from agents.tools.todos import TodoStore

    await graph.say("/todo pay the rent due:2020-01-02")
    await TodoStore(graph.db).add(42, 42, "someone else's secret", due="2020-01-02")
    record = await graph.services.scheduler.run_now("digest")
    assert record is not None and record.outcome == "ok", record
    shown = graph.out.getvalue()
    assert "📊 Familiar digest" in shown and "#1 pay the rent (due 2020-01-02)" in shown
    assert "secret" not in shown


async def test_forgetme_leaves_no_byte_of_the_person_in_the_data_directory(
    graph: Graph, made_data_dir: Path
) -> None:
    """Every store of the daemon that keeps the person's words forgets them: memory, the
    feedback buttons' prompts, reminders, to-dos, review runs; what is deleted is not left in
    the database file or its WAL either. Someone else's to-do stays."""
    from agents.tools.todos import TodoStore

    await graph.say("my bank pin is zanzibar quokka")  # a turn, and a prompt kept for feedback
    await graph.say("/remind in 2h ask about zanzibar quokka")
    await graph.say("/todo renew the zanzibar quokka card")
    await TodoStore(graph.db).add(42, 42, "someone else's errand", due="2030-01-02")
    with graph.db.transaction() as conn:  # a review run on the person's message
        conn.execute(
            "INSERT INTO review_runs (ts, kind, chat_id, user_id, task, outcome, rounds,"
            " final_text, transcript) VALUES ('2026-01-01', 'panel', 0, 0,"
            " 'my bank pin is zanzibar quokka', 'clean', 1, 'ok', '{}')"
        )
    with graph.db.read() as conn:
        assert conn.execute("SELECT count(*) FROM feedback_answers").fetchone()[0] == 1
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # kept a while: in the file itself

    def holding() -> list[str]:
        return [
            f.name
            for f in made_data_dir.rglob("*")
            if f.is_file() and b"zanzibar" in f.read_bytes()
        ]

    assert "familiar.db" in holding()
    assert "forget everything" in (await graph.say("/forgetme")).lower()
    assert "I forgot" in await graph.say("1")
    assert holding() == []
    with graph.db.read() as conn:
        for table in ("feedback_answers", "reminders", "review_runs", "memories"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0, table
        assert conn.execute("SELECT text FROM todos").fetchall() == [("someone else's errand",)]
