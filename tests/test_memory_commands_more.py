"""Memory commands in the cases test_core_commands.py leaves out: /forgetme answered "No" keeps
everything, /summary summarises this chat's turns only, /export on a channel without files
points to the CLI, and /remember of something unstorable says why.

A real Memory on SQLite in ``tmp_path`` (the hashing embedder); the summariser is a hand-written
double of memory's ``Summariser`` interface that records the turns it is given.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.core.assistant import Assistant
from bot.core.memory_commands import MemoryCommands
from bot.core.transport import RecordingTransport
from bot.core.types import ButtonPress, Incoming, Reply, Sender
from bot.daemon.run import all_migrations
from memory.context import Summariser
from memory.db import Database
from memory.embedder import HashingEmbedder
from memory.health import HealthRegistry
from memory.service import Memory
from memory.settings import MemorySettings
from memory.types import Message

pytestmark = pytest.mark.anyio

ANN = Sender(11, "Ann")
CHAT = 11
OTHER_CHAT = 12


class RecordingSummariser(Summariser):
    def __init__(self) -> None:
        self.given: list[list[Message]] = []

    async def summarise(self, turns: list[Message]) -> str:
        self.given.append(turns)
        return f"{len(turns)} turns about bicycles"


class NoFilesTransport(RecordingTransport):
    """A channel like the console: text only (the interface's send_document raises)."""

    async def send_document(
        self, chat_id: int, data: bytes, filename: str, caption: str = ""
    ) -> None:
        raise NotImplementedError


class Rig:
    def __init__(self, memory: Memory, summariser: RecordingSummariser) -> None:
        self.memory, self.summariser = memory, summariser
        self.assistant = Assistant(HealthRegistry())
        MemoryCommands(memory, 4000).register(self.assistant)
        self.transport: RecordingTransport = RecordingTransport()

    async def say(self, text: str, chat: int = CHAT) -> Reply:
        await self.assistant.handle(Incoming(chat, ANN, text, channel="test"), self.transport)
        return self.transport.shown()

    async def press(self, data: str) -> str:
        return await self.assistant.press(ButtonPress(CHAT, ANN, data), self.transport)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    db = Database.open(tmp_path / "f.db", all_migrations())
    summariser = RecordingSummariser()
    memory = Memory(
        db, HashingEmbedder(), MemorySettings(), tmp_path / "index", summariser=summariser
    )
    await memory.start()
    await memory.wait_ready()
    yield Rig(memory, summariser)
    await memory.stop()
    db.close()


async def test_forgetme_answered_no_keeps_everything(rig: Rig) -> None:
    await rig.say("/remember my bike is the red one")
    no = (await rig.say("/forgetme")).buttons[0][1]
    assert no.label == "No"
    assert await rig.press(no.data) == "Cancelled."
    assert rig.transport.shown().text == "Nothing was forgotten."
    assert "my bike is the red one" in (await rig.say("/memories")).text


async def test_summary_summarises_this_chats_turns_only(rig: Rig) -> None:
    assert (await rig.say("/summary")).text == "Nothing to summarise yet."
    await rig.memory.add_message(CHAT, ANN.id, "user", "I need a new bicycle chain")
    await rig.memory.add_message(CHAT, None, "assistant", "A 9-speed chain fits your bike")
    await rig.memory.add_message(OTHER_CHAT, ANN.id, "user", "secret plans in another chat")

    reply = await rig.say("/summary")

    assert reply.text == "2 turns about bicycles"
    (given,) = rig.summariser.given
    assert [(t.chat_id, t.text) for t in given] == [
        (CHAT, "I need a new bicycle chain"),
        (CHAT, "A 9-speed chain fits your bike"),
    ]


async def test_export_on_a_channel_without_files_points_to_the_cli(rig: Rig) -> None:
    rig.transport = NoFilesTransport()
    await rig.say("/remember the spare key is with the neighbour")
    reply = await rig.say("/export")
    assert "cannot send files" in reply.text and "familiar memory export" in reply.text


async def test_remember_of_an_unstorable_text_says_why(rig: Rig) -> None:
    too_long = "x" * (MemorySettings().max_text_bytes + 1)
    reply = await rig.say(f"/remember {too_long}")
    assert reply.text.startswith("I couldn't remember that:")
    assert "I have no memories of this chat yet" in (await rig.say("/memories")).text
