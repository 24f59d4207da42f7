"""Replay is idempotent: an update handled again after a crash (killed between its effect and the
inbox's done mark) has its effect once.

The service graph is built as the daemon builds it (real SQLite, memory, jobs, the command
registry) behind the real ``UpdateHandler``; each case hands it the same update twice, as the
inbox's replay does, and reads the effect from the database. Every command in the registry is
either a case here or listed as one that writes nothing, so a new command cannot slip past.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from telegram import Update

from bot.config import load_settings
from bot.core.transport import RecordingTransport
from bot.core.types import Reply
from bot.daemon.lifecycle import Lifecycle
from bot.daemon.run import all_migrations, build_health
from bot.daemon.services import Services, build_services
from bot.telegram.access import AccessControl
from bot.telegram.handlers import BotIdentity, UpdateHandler
from bot.telegram.limits import TokenBucket
from bot.telegram.reporting import ErrorReporter
from memory.db import Database
from memory.types import Scope
from tests.telegram.helpers import message

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]

USER, ADMIN, GROUP = 100, 200, -1001
BOT_NAME = "FamiliarTestBot"

# Commands that change nothing stored (they read, or only offer buttons whose presses are
# idempotent: /forgetme's confirmation deletes everything of the person, once or twice alike).
READ_ONLY = {
    "start",
    "help",
    "status",
    "recall",
    "memories",
    "context",
    "summary",
    "export",
    "forgetme",
    "reminders",
    "tasks",  # lists; deleting is a signed button, not the command
    "usage",
    "adapters",
}


@dataclass(frozen=True)
class Case:
    command: str  # the registry name the case covers ("" for plain text)
    text: str  # may hold {fact}: the id of a fact made by the setup
    probe: str  # SQL whose single value is the effect
    expected: object  # the effect after one handling
    sender: int = USER
    chat: int | None = None  # None: the private chat with the sender


CASES = [
    Case("todo", "/todo !high pay the rent due:friday", "SELECT count(*) FROM todos", 1),
    Case("remind", "/remind in 2 hours water the plants", "SELECT count(*) FROM reminders", 1),
    Case("every", "/every 0 9 * * 1-5 stand up", "SELECT count(*) FROM reminders", 1),
    Case(
        "remember",
        "/remember my bike is a green Brompton",
        "SELECT count(*) FROM memories WHERE kind = 'fact'",
        1,
    ),
    Case("forget", "/forget {fact}", "SELECT count(*) FROM memories WHERE kind = 'fact'", 0),
    Case("invite", "/invite", "SELECT count(*) FROM access_invites", 1, sender=ADMIN),
    Case("group", "/group on", "SELECT count(*) FROM access_groups", 1, ADMIN, GROUP),
    Case("persona", "/persona default", "SELECT count(*) FROM chat_settings", 1),
    Case(
        "think",
        "/think on",
        "SELECT count(*) FROM chat_settings WHERE answer_mode = 'think'",
        1,
    ),
    Case(
        "think",
        "/think what is two and two",
        "SELECT count(*) FROM messages WHERE role = 'user'",
        1,
    ),
    Case(
        "review",
        "/review a haiku on tea",
        "SELECT count(*) FROM messages WHERE role = 'user'",
        1,
    ),
    Case(
        "train",
        "/train optin on",
        "SELECT count(*) FROM chat_settings WHERE train_optin = 1",
        1,
    ),
    Case(
        "backup",
        "/backup",
        "SELECT count(*) FROM job_runs WHERE job = 'backup'",
        1,
        sender=ADMIN,
    ),
    Case("", "hello there, remember me?", "SELECT count(*) FROM messages WHERE role = 'user'", 1),
    Case("todo", "/todo !high buy oat milk due:friday", "SELECT count(*) FROM todos", 1),
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Graph:
    def __init__(self, services: Services, db: Database, handler: UpdateHandler) -> None:
        self.services, self.db, self.handler = services, db, handler
        self.transport = handler.transport
        assert isinstance(self.transport, RecordingTransport)

    async def handle(self, payload: dict) -> None:
        await self.handler.handle(Update.de_json(payload, None))

    def value(self, sql: str) -> object:
        with self.db.read() as conn:
            return conn.execute(sql).fetchone()[0]


@pytest.fixture
def made_data_dir(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FAMILIAR_TELEGRAM__ADMINS", f"[{ADMIN}]")
    monkeypatch.setenv("FAMILIAR_TELEGRAM__ALLOWED_USERS", f"[{USER}]")
    data_dir.mkdir(parents=True)
    return data_dir


@pytest.fixture
async def graph(made_data_dir: Path) -> AsyncIterator[Graph]:
    data_dir = made_data_dir
    settings = load_settings()
    db = Database.open(data_dir / "familiar.db", all_migrations())
    health = build_health(settings, db)
    lifecycle = Lifecycle()
    services = build_services(settings, db, health, lifecycle, started_at=0.0)
    transport = RecordingTransport()
    services.deliver_to["send"] = lambda chat, text: transport.send(chat, Reply(text))
    access = AccessControl(db, [USER], [ADMIN], invite_ttl_s=3600)
    access.load()

    async def notify(chat_id: int, text: str) -> None:
        await transport.send(chat_id, Reply(text, markdown=False))

    async def answer_callback(query_id: str, text: str) -> None:
        return None

    handler = UpdateHandler(
        db,
        services.assistant,
        transport,
        access,
        ErrorReporter(notify, [ADMIN]),
        answer_callback,
        TokenBucket(1000, 1000),
    )
    handler.me = BotIdentity(1, BOT_NAME)
    handler.register_commands()
    await lifecycle.start_all()
    yield Graph(services, db, handler)
    assert await lifecycle.stop_all(60.0)
    db.close()


async def test_every_command_is_a_replay_case_or_writes_nothing(graph: Graph) -> None:
    names = {c.name for c in graph.services.assistant.commands}
    covered = {c.command for c in CASES if c.command} | READ_ONLY
    assert names - covered == set(), "classify these commands in CASES or READ_ONLY"
    assert covered - names == set(), "these are no longer commands"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.text.split(" ")[0] + "-" + c.text[-8:])
async def test_a_replayed_update_has_its_effect_once(graph: Graph, case: Case) -> None:
    text = case.text
    if "{fact}" in text:
        result = await graph.services.memory.add_fact(
            "the user owns a red kayak", Scope(USER, USER)
        )
        text = text.format(fact=result.id)
    chat = case.chat if case.chat is not None else case.sender
    payload = message(case.sender, text, chat_id=chat, update_id=7)
    if case.chat is not None:
        payload["message"]["chat"]["type"] = "supergroup"
    await graph.handle(payload)
    await _settle(graph)
    once = graph.value(case.probe)
    replies = len(graph.transport.sent)
    assert once == case.expected, graph.transport.texts
    assert not any("went wrong" in t for t in graph.transport.texts), graph.transport.texts

    await graph.handle(payload)  # the same update again: the inbox replays it after a kill
    await _settle(graph)
    assert graph.value(case.probe) == once, graph.transport.texts
    again = graph.transport.texts[replies:]
    assert not any("went wrong" in t for t in again), again
    if case.command == "invite":  # the code given again is the code made the first time
        codes = [t.split()[2] for t in graph.transport.texts if t.startswith("Invite code:")]
        assert len(codes) == 2 and codes[0] == codes[1]


async def _settle(graph: Graph) -> None:
    """Let work the handler started in the background (fact extraction) finish."""
    await graph.services.agent.drain()
    await asyncio.sleep(0)
