"""A message the person edits: memory keeps what it says now, and the newest one is answered
again (once, whatever replays), with the model told its earlier answer was to the earlier words.

Real SQLite and memory, the scripted provider double, the agent commands as the daemon wires them.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agents.chat import EDITED_NOTE, ChatAgent, LLMFactExtractor
from agents.llm import LLM
from agents.loop import ToolLoop
from agents.providers.base import Completion, ToolUseBlock, Usage, content_text
from agents.providers.fake import FakeProvider
from agents.review import ReviewEngine
from agents.settings import LLMSettings, ReviewSettings, ToolLoopSettings
from agents.tools.base import Tool, ToolContext, ToolResult, ToolSpec
from agents.tools.registry import StaticSource, ToolRegistry
from agents.usage import UsageStore
from bot.core.agent_commands import AgentCommands
from bot.core.assistant import Assistant
from bot.core.chat_modes import SqliteChatModes
from bot.core.signing import ButtonSigner
from bot.core.transport import RecordingTransport
from bot.core.types import Incoming
from bot.daemon.run import all_migrations
from memory.db import Database
from memory.embedder import HashingEmbedder
from memory.health import HealthRegistry
from memory.service import Memory
from memory.settings import MemorySettings
from memory.types import Scope
from tests.test_replay_answers import ANN, Rig, opened_rig

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with opened_rig(tmp_path) as made:
        yield made


def sent(text: str, message_id: int = 42) -> Incoming:
    return Incoming(ANN.id, ANN, text, message_id=message_id, channel="telegram")


def edited(text: str, message_id: int = 42, after_s: int = 60) -> Incoming:
    return Incoming(
        ANN.id,
        ANN,
        text,
        message_id=message_id,
        channel="telegram",
        meta={"edit": int(time.time()) + after_s},
    )


def last_request_text(rig: Rig) -> str:
    return content_text(rig.provider.requests[-1].messages[-1]["content"])


async def test_the_newest_message_edited_is_answered_again_from_its_new_words(rig: Rig) -> None:
    await rig.say(sent("remind me to call the plumber at 5"))
    await rig.commands.edited(edited("remind me to call the plumber at 6"), rig.transport)
    assert len(rig.provider.requests) == 2
    asked = last_request_text(rig)
    assert asked.startswith(EDITED_NOTE) and asked.endswith("call the plumber at 6")
    assert "at 5" not in asked
    # A second answer, in a message of its own: the first one stays as it was.
    assert [rig.transport.shown(i).text for i in range(len(rig.transport.sent))] == [
        "echo: remind me to call the plumber at 5",
        f"echo: {asked}",
    ]
    # Memory holds the words as they read now, and both answers, the second keyed to the edit.
    assert rig.turns() == [
        ("user", "remind me to call the plumber at 6"),
        ("assistant", "echo: remind me to call the plumber at 5"),
        ("assistant", f"echo: {asked}"),
    ]
    with rig.db.read() as conn:
        metas = [m for (m,) in conn.execute("SELECT meta FROM messages ORDER BY id")]
    assert '"edited_at"' in metas[0] and '"edit"' in metas[2] and '"edit"' not in metas[1]


async def test_a_replayed_edit_is_not_answered_twice(rig: Rig) -> None:
    await rig.say(sent("what's a good name for a cat"))
    edit = edited("what's a good name for a ginger cat")
    await rig.commands.edited(edit, rig.transport)
    sent_before, asked_before = len(rig.transport.sent), len(rig.provider.requests)
    await rig.commands.edited(edit, rig.transport)  # killed before the inbox's done mark
    assert (len(rig.transport.sent), len(rig.provider.requests)) == (sent_before, asked_before)
    # A later edit of the same message is a new edit: answered again.
    await rig.commands.edited(
        edited("what's a good name for a black cat", after_s=120), rig.transport
    )
    assert len(rig.provider.requests) == asked_before + 1


async def test_an_older_message_edited_is_corrected_in_memory_not_answered(rig: Rig) -> None:
    await rig.say(sent("my locker is number 14", message_id=1))
    await rig.say(sent("thanks", message_id=2))
    before = (len(rig.transport.sent), len(rig.provider.requests))
    await rig.commands.edited(edited("my locker is number 41", message_id=1), rig.transport)
    assert (len(rig.transport.sent), len(rig.provider.requests)) == before
    assert [t for r, t in rig.turns() if r == "user"] == ["my locker is number 41", "thanks"]


async def test_an_edit_long_after_the_message_is_not_answered_again(rig: Rig) -> None:
    rig.commands.edit_window_s = 900
    await rig.say(sent("how long do I boil an egg"))
    await rig.commands.edited(edited("how long do I boil a duck egg", after_s=3600), rig.transport)
    assert len(rig.provider.requests) == 1 and len(rig.transport.sent) == 1
    assert rig.turns()[0] == ("user", "how long do I boil a duck egg")


async def test_editing_a_message_never_stored_changes_nothing(rig: Rig) -> None:
    await rig.say(sent("hello", message_id=5))
    await rig.commands.edited(edited("hello there", message_id=6), rig.transport)
    assert len(rig.provider.requests) == 1 and len(rig.transport.sent) == 1
    assert rig.turns()[0] == ("user", "hello")


async def test_an_edited_command_is_not_run_again_and_says_so(rig: Rig) -> None:
    assistant = rig.commands.assistant
    assert isinstance(assistant, Assistant)
    await rig.say(sent("book a table"))
    transport = RecordingTransport()
    await assistant.edited(edited("/forgetme"), transport)
    assert transport.texts == [
        "I don't run an edited command again: send /forgetme as a new message."
    ]
    assert rig.turns()[0] == ("user", "book a table")  # and the turn is left as it was


async def test_an_edit_too_big_to_keep_is_refused_and_loses_nothing(rig: Rig) -> None:
    await rig.say(sent("a short question"))
    transport = RecordingTransport()
    await rig.commands.edited(edited("x" * 2_000_000), transport)
    assert transport.texts and transport.texts[0].startswith("⚠️ I can't take that edit")
    assert rig.turns()[0] == ("user", "a short question")
    assert len(rig.provider.requests) == 1


class Tag(Tool):
    spec = ToolSpec(
        "tag",
        "Tag a photo.",
        {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
    )

    def __init__(self) -> None:
        self.tagged: list[str] = []

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        self.tagged.append(args["name"])
        return ToolResult(f"tagged {args['name']}")


async def test_the_answer_after_an_edit_runs_its_tools_again(tmp_path: Path) -> None:
    """A step of the first answer is not taken for one of the answer after the edit (a replay's
    steps are skipped by the message they answer: the edit's answer is keyed on the edit)."""
    db = Database.open(tmp_path / "f.db", all_migrations())
    memory = Memory(db, HashingEmbedder(), MemorySettings(), tmp_path / "index")
    await memory.start()
    await memory.wait_ready()
    try:
        provider = FakeProvider()
        settings = LLMSettings(provider="anthropic", fact_extraction_every=1000)
        llm = LLM(provider, UsageStore(db, settings))
        tag = Tag()
        loop = ToolLoop(ToolRegistry([StaticSource("t", [tag])]), ToolLoopSettings(), db)
        review = ReviewEngine(llm, ReviewSettings(), settings, db)
        agent = ChatAgent(memory, llm, settings, review, db=db, tools=loop)
        commands = AgentCommands(
            agent, review, UsageStore(db, settings), ButtonSigner(b"k" * 32), SqliteChatModes(db)
        )
        commands.register(Assistant(HealthRegistry()))
        call = Completion(
            "", Usage(10, 5), "fake", "tool_use", 0, [ToolUseBlock("c1", "tag", {"name": "Rex"})]
        )
        provider.script(call, "Tagged.", call, "Tagged again.")
        transport = RecordingTransport()
        await commands.answer(sent("tag this as Rex"), transport)
        await commands.edited(edited("tag this as Rex, my dog"), transport)
        assert tag.tagged == ["Rex", "Rex"]
    finally:
        await memory.stop()
        db.close()


async def test_an_edit_of_words_already_read_for_facts_is_read_again(tmp_path: Path) -> None:
    """The corrected words are read for facts: the fact learnt from them supersedes the one
    from the words as first sent (which stays as history, as any correction)."""
    db = Database.open(tmp_path / "f.db", all_migrations())
    memory = Memory(db, HashingEmbedder(), MemorySettings(), tmp_path / "index")
    await memory.start()
    await memory.wait_ready()
    facts = [json.dumps({"facts": ["The user's gym locker is number 14."]})]
    provider = FakeProvider(["Noted.", *facts])
    llm = LLM(provider)
    agent = ChatAgent(
        memory,
        llm,
        LLMSettings(fact_extraction_every=2),
        extractor=LLMFactExtractor(llm),
        db=db,
    )
    commands = AgentCommands(
        agent,
        ReviewEngine(llm, ReviewSettings(), LLMSettings(), db),
        UsageStore(db, LLMSettings()),
        ButtonSigner(b"k" * 32),
        SqliteChatModes(db),
    )
    try:
        await commands.answer(sent("my gym locker is number 14"), RecordingTransport())
        await agent.drain()
        provider.script(json.dumps({"facts": ["The user's gym locker is number 41."]}))
        await commands.edited(
            edited("my gym locker is number 41", after_s=3600), RecordingTransport()
        )
        await agent.drain()
        current = await memory.list_memories(Scope(ANN.id, ANN.id), ["fact"])
        assert [f.text for f in current] == ["The user's gym locker is number 41."]
        history = await memory.fact_history(current[0].id)
        assert "The user's gym locker is number 14." in [h.text for h in history]
        first, reread = [
            str(r.messages[0]["content"])
            for r in provider.requests
            if "durable facts" in str(r.messages[0]["content"])
        ]
        assert "number 14" in first
        assert "number 41" in reread and "number 14" not in reread
    finally:
        await memory.stop()
        db.close()
