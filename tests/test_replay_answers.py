"""A replayed message is answered once: its turn stored once, the model asked at most once more
and never shown the text twice, the cut-off answer finished in its own message.

Real SQLite and memory, the scripted provider double; a kill is a ``Killed`` (a BaseException,
so no ``except Exception`` on the way can soften it) raised at the moment the daemon would die.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from agents.chat import ChatAgent
from agents.llm import LLM
from agents.providers.fake import FakeProvider
from agents.review import ReviewEngine
from agents.settings import LLMSettings, ReviewSettings
from agents.usage import UsageStore
from bot.core.agent_commands import AgentCommands
from bot.core.assistant import Assistant
from bot.core.chat_modes import SqliteChatModes
from bot.core.drafts import AnswerDrafts
from bot.core.signing import ButtonSigner
from bot.core.transport import RecordingTransport
from bot.core.types import Incoming, Reply, Sender, SentMessage
from bot.daemon.run import all_migrations
from memory.db import Database
from memory.embedder import HashingEmbedder
from memory.health import HealthRegistry
from memory.service import Memory
from memory.settings import MemorySettings

pytestmark = pytest.mark.anyio

ANN = Sender(11, "Ann")
TEXT = "what should I cook tonight with leeks"


class Killed(BaseException):
    """The daemon dies here (SIGKILL): nothing after this point runs."""


class KilledAfterDraft(AnswerDrafts):
    """Dies right after the answer's message was sent and recorded, while it streams."""

    async def started(self, msg: Incoming, sent: SentMessage) -> None:
        await super().started(msg, sent)
        raise Killed


class KilledOnFinalEdit(RecordingTransport):
    """Dies as the finished answer is about to replace the streamed text."""

    async def edit(self, message: SentMessage, reply: Reply) -> None:
        if not reply.text.endswith(" …"):
            raise Killed
        await super().edit(message, reply)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Rig:
    def __init__(self, db: Database, memory: Memory) -> None:
        self.db, self.memory = db, memory
        self.provider = FakeProvider()
        settings = LLMSettings(provider="anthropic", fact_extraction_every=1000)
        usage = UsageStore(db, settings)
        llm = LLM(self.provider, usage)
        review = ReviewEngine(llm, ReviewSettings(), settings, db)
        self.agent = ChatAgent(memory, llm, settings, review)
        self.commands = AgentCommands(
            self.agent,
            review,
            usage,
            ButtonSigner(b"k" * 32),
            SqliteChatModes(db),
            AnswerDrafts(db),
        )
        self.commands.register(Assistant(HealthRegistry()))
        self.transport = RecordingTransport()

    async def say(self, msg: Incoming, transport: RecordingTransport | None = None) -> None:
        await self.commands.answer(msg, transport or self.transport)

    def turns(self) -> list[tuple[str, str]]:
        with self.db.read() as conn:
            return list(conn.execute("SELECT role, text FROM messages ORDER BY id"))


@asynccontextmanager
async def opened_rig(tmp_path: Path) -> AsyncIterator[Rig]:
    """A ``Rig`` over a new store in ``tmp_path`` (also for other modules' fixtures)."""
    db = Database.open(tmp_path / "f.db", all_migrations())
    memory = Memory(db, HashingEmbedder(), MemorySettings(), tmp_path / "index")
    await memory.start()
    await memory.wait_ready()
    try:
        yield Rig(db, memory)
    finally:
        await memory.stop()
        db.close()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with opened_rig(tmp_path) as made:
        yield made


def telegram(text: str = TEXT, message_id: int = 42) -> Incoming:
    return Incoming(ANN.id, ANN, text, message_id=message_id, channel="telegram")


def times_seen(request_messages: list[dict[str, str]], text: str) -> int:
    return sum(m["content"].count(text) for m in request_messages)


async def test_killed_while_streaming_the_replay_finishes_the_same_message(rig: Rig) -> None:
    rig.commands.drafts = KilledAfterDraft(rig.db)
    with pytest.raises(Killed):
        await rig.say(telegram())
    assert rig.transport.texts == ["echo: …"]  # the cut-off answer, as the user saw it
    assert rig.turns() == [("user", TEXT)]

    rig.commands.drafts = AnswerDrafts(rig.db)  # the restarted daemon
    await rig.say(telegram())
    assert len(rig.transport.sent) == 1, rig.transport.texts  # no second answer beside it
    assert rig.transport.shown(0).text == f"echo: {TEXT}"
    assert rig.turns() == [("user", TEXT), ("assistant", f"echo: {TEXT}")]
    replayed = rig.provider.requests[-1]
    assert times_seen(replayed.messages, TEXT) == 1, replayed.messages


async def test_killed_after_the_answer_was_stored_the_model_is_not_asked_again(rig: Rig) -> None:
    dying = KilledOnFinalEdit()
    with pytest.raises(Killed):
        await rig.say(telegram(), dying)
    assert len(rig.provider.requests) == 1
    assert rig.turns() == [("user", TEXT), ("assistant", f"echo: {TEXT}")]

    rig.transport = RecordingTransport()  # the restarted daemon's, same chat history
    rig.transport.sent = list(dying.sent)
    await rig.say(telegram())
    assert len(rig.provider.requests) == 1  # the stored answer is given, not asked again
    assert len(rig.transport.sent) == 1
    assert rig.transport.shown(0).text == f"echo: {TEXT}"
    assert len(rig.turns()) == 2


async def test_answered_in_full_before_the_kill_the_replay_sends_nothing(rig: Rig) -> None:
    await rig.say(telegram())
    sent, edits = len(rig.transport.sent), len(rig.transport.edits)
    await rig.say(telegram())  # killed after the final edit, before the inbox's done mark
    assert (len(rig.transport.sent), len(rig.transport.edits)) == (sent, edits)
    assert len(rig.provider.requests) == 1
    assert len(rig.turns()) == 2


async def test_different_messages_with_the_same_text_are_both_answered(rig: Rig) -> None:
    await rig.say(telegram("thanks", message_id=1))
    await rig.say(telegram("thanks", message_id=2))
    assert [r for r, _ in rig.turns()] == ["user", "assistant", "user", "assistant"]
    assert len(rig.transport.sent) == 2


async def test_console_ids_restart_each_session_so_they_are_not_keys(rig: Rig) -> None:
    # The console numbers its messages from 1 in every session: message 1 of a new session is a
    # new message, not a replay of the last session's message 1.
    await rig.say(Incoming(ANN.id, ANN, "first session", message_id=1, channel="console"))
    await rig.say(Incoming(ANN.id, ANN, "second session", message_id=1, channel="console"))
    assert [t for r, t in rig.turns() if r == "user"] == ["first session", "second session"]
    assert len(rig.provider.requests) == 2


async def test_a_task_run_replayed_after_a_kill_is_answered_once(rig: Rig) -> None:
    """A scheduled task's run the process died in runs again at the next start under the same
    run id (``AgentTask.run_id``): its turn is stored once and the model is not asked again."""
    run_id = -(3 * 10_000_000_000 + 1_800_000_000)
    dying = KilledOnFinalEdit()
    with pytest.raises(Killed):
        await rig.commands.run_scheduled(ANN.id, ANN, "brief me", "🗓 Task #3", dying, run_id)
    assert len(rig.provider.requests) == 1
    assert rig.turns() == [("user", "brief me"), ("assistant", "echo: brief me")]

    rig.transport = RecordingTransport()
    rig.transport.sent = list(dying.sent)
    await rig.commands.run_scheduled(
        ANN.id, ANN, "brief me", "🗓 Task #3 (again)", rig.transport, run_id
    )
    assert len(rig.provider.requests) == 1  # the stored answer is given, not asked again
    assert len(rig.turns()) == 2  # the prompt is not stored as a second turn

    # Answered in full before the kill: the rerun sends nothing at all, not even its header.
    sent = len(rig.transport.sent)
    await rig.commands.run_scheduled(
        ANN.id, ANN, "brief me", "🗓 Task #3 (again)", rig.transport, run_id
    )
    assert len(rig.transport.sent) == sent and len(rig.provider.requests) == 1

    # The next run of the task is a new run: answered anew.
    await rig.commands.run_scheduled(
        ANN.id, ANN, "brief me", "🗓 Task #3", rig.transport, run_id - 86_400
    )
    assert len(rig.provider.requests) == 2 and len(rig.turns()) == 4
