"""The core's side of tool-using answers over real SQLite and memory, with the scripted provider
double: the activity line while a tool runs, the 🔧 steps button, and the ✅/❌ buttons checked
against forgery, other people, other chats and double presses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agents.chat import ChatAgent
from agents.llm import LLM
from agents.loop import ToolLoop
from agents.providers.base import Completion, ToolUseBlock, Usage
from agents.providers.fake import FakeProvider
from agents.review import ReviewEngine
from agents.settings import LLMSettings, ReviewSettings, ToolLoopSettings
from agents.tools.base import Tool, ToolContext, ToolResult, ToolSpec
from agents.tools.registry import StaticSource, ToolRegistry
from agents.usage import UsageStore
from bot.core.agent_commands import AgentCommands
from bot.core.assistant import Assistant
from bot.core.chat_modes import SqliteChatModes
from bot.core.memory_commands import MemoryCommands
from bot.core.signing import ButtonSigner
from bot.core.transport import RecordingTransport
from bot.core.types import ButtonPress, Incoming, Sender
from bot.daemon.run import all_migrations
from memory.db import Database
from memory.embedder import HashingEmbedder
from memory.health import HealthRegistry
from memory.service import Memory
from memory.settings import MemorySettings

pytestmark = pytest.mark.anyio

ANN, BOB = Sender(11, "Ann"), Sender(22, "Bob")
CHAT = 11


class Shred(Tool):
    spec = ToolSpec(
        "shred",
        "Shred a file.",
        {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
        policy="confirm",
        activity="🗑 shredding…",
    )

    def __init__(self) -> None:
        self.shredded: list[str] = []

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        self.shredded.append(args["name"])
        return ToolResult(f"shredded {args['name']}")

    def describe(self, args: dict[str, Any]) -> str:
        return f"Shred the file {args['name']!r}"


class Peek(Tool):
    spec = ToolSpec("peek", "Look.", {"type": "object"}, read_only=True, activity="👀 peeking…")

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        return ToolResult("a file called taxes.pdf")


def asks(name: str, text: str = "", /, **args: Any) -> Completion:
    return Completion(text, Usage(10, 5), "fake", "tool_use", 0, [ToolUseBlock("c1", name, args)])


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[tuple]:
    db = Database.open(tmp_path / "f.db", all_migrations())
    memory = Memory(db, HashingEmbedder(), MemorySettings(), tmp_path / "index")
    await memory.start()
    await memory.wait_ready()
    provider = FakeProvider()
    settings = LLMSettings(provider="anthropic", fact_extraction_every=1000)
    llm = LLM(provider, UsageStore(db, settings))
    shred = Shred()
    loop = ToolLoop(ToolRegistry([StaticSource("t", [shred, Peek()])]), ToolLoopSettings(), db)
    review = ReviewEngine(llm, ReviewSettings(), settings, db)
    agent = ChatAgent(memory, llm, settings, review, db=db, tools=loop)
    assistant = Assistant(HealthRegistry())
    commands = AgentCommands(
        agent, review, UsageStore(db, settings), ButtonSigner(b"k" * 32), SqliteChatModes(db)
    )
    commands.register(assistant)
    MemoryCommands(memory, 4000, also_forget=[loop.forget_user]).register(assistant)
    yield assistant, commands, provider, shred, RecordingTransport(), db
    await memory.stop()
    db.close()


async def press(assistant: Assistant, transport, data: str, sender=ANN, chat=CHAT) -> str:
    return await assistant.press(
        ButtonPress(chat, sender, data, message_id=2, channel="t"), transport
    )


async def test_the_activity_shows_and_the_steps_button_lists_the_calls(rig) -> None:
    assistant, commands, provider, _, transport, _ = rig
    provider.script(asks("peek", "Let me look."), "You have taxes.pdf.")
    await assistant.handle(Incoming(CHAT, ANN, "what files?", channel="t"), transport)
    shown = [r.text for _, r in transport.sent] + [r.text for _, r in transport.edits]
    # All the text so far, though edits were throttled, then what the tool is doing.
    assert "Let me look.\n\n👀 peeking…" in shown
    final = transport.shown(0)
    assert final.text == "You have taxes.pdf."
    [[steps]] = final.buttons
    assert steps.label == "🔧 steps"
    assert await press(assistant, transport, steps.data) == "Here are the steps."
    assert transport.sent[-1][1].text.startswith("🔧 Steps of this answer:\n1. peek {} → ✅")
    # The same button data in another chat, or tampered with, shows nothing.
    assert await press(assistant, transport, steps.data, chat=99) == "This button isn't valid here."
    assert (
        await press(assistant, transport, steps.data[:-2] + "xx") == "This button isn't valid here."
    )


async def test_confirm_buttons_only_work_for_the_asker_and_once(rig) -> None:
    assistant, commands, provider, shred, transport, _ = rig
    provider.script(asks("shred", "I'll shred it.", name="taxes.pdf"), "Shredded.")
    await assistant.handle(Incoming(CHAT, ANN, "shred taxes.pdf", channel="t"), transport)
    question = transport.sent[-1][1]
    assert question.text.startswith("🔐 May I do this?\nShred the file 'taxes.pdf'")
    yes, no = question.buttons[0]
    assert (yes.label, no.label) == ("✅ Yes", "❌ No")
    assert await press(assistant, transport, yes.data[:-1] + "Q") == "This button isn't valid here."
    assert await press(assistant, transport, "tc:a1") == "This button isn't valid here."
    assert await press(assistant, transport, yes.data, sender=BOB) == (
        "Only the person who asked can answer this."
    )
    assert await press(assistant, transport, yes.data, chat=99) == "This button isn't valid here."
    assert shred.shredded == []
    assert await press(assistant, transport, yes.data) == "Going ahead…"
    await commands.tool_buttons.drain()
    assert shred.shredded == ["taxes.pdf"] and transport.shown().text == "Shredded."
    assert await press(assistant, transport, no.data) == "This request was already answered."
    await asyncio.sleep(0)
    assert shred.shredded == ["taxes.pdf"]


async def test_forgetme_also_forgets_the_persons_tool_calls_and_paused_answers(rig) -> None:
    assistant, _, provider, _, transport, db = rig
    provider.script(asks("peek"), "Seen.", asks("shred", name="diary.txt"))
    await assistant.handle(Incoming(CHAT, ANN, "look", channel="t"), transport)
    await assistant.handle(Incoming(CHAT, ANN, "shred my diary", channel="t"), transport)
    provider.script(asks("peek"), "Seen.")
    await assistant.handle(Incoming(22, BOB, "look", channel="t"), transport)

    def counts() -> tuple[int, int]:
        with db.read() as conn:
            return (
                conn.execute("SELECT count(*) FROM agent_runs WHERE user_id = 11").fetchone()[0],
                conn.execute("SELECT count(*) FROM agent_tool_calls").fetchone()[0],
            )

    assert counts() == (2, 2)  # Ann's two answers; one call each of Ann and Bob recorded
    assert await press(assistant, transport, f"fm:yes:{ANN.id}") == "Forgotten."
    assert counts() == (0, 1)  # Bob's call stays
