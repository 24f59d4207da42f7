"""The core's commands over real SQLite and memory, with the scripted provider double.

Agent commands (streaming, /think and its critique button, /review and its decision buttons,
/think on), memory commands and reminder commands; every button checked against forgery.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agents.chat import ChatAgent
from agents.llm import LLM
from agents.providers.fake import FakeProvider
from agents.review import ReviewEngine
from agents.settings import LLMSettings, ReviewSettings
from agents.usage import UsageStore
from bot.core.agent_commands import AgentCommands, StreamingReply
from bot.core.assistant import Assistant
from bot.core.chat_modes import SqliteChatModes
from bot.core.memory_commands import MemoryCommands
from bot.core.signing import ButtonSigner
from bot.core.transport import RecordingTransport
from bot.core.types import ButtonPress, Incoming, Reply, Sender
from bot.daemon.run import all_migrations
from memory.db import Database
from memory.embedder import HashingEmbedder
from memory.health import HealthRegistry
from memory.service import Memory
from memory.settings import MemorySettings

pytestmark = pytest.mark.anyio

ANN = Sender(11, "Ann")
BOB = Sender(22, "Bob")
CHAT = 11
APPROVE = json.dumps({"score": 9, "verdict": "approve", "issues": [], "summary": "good"})


class Rig:
    def __init__(self, db: Database, memory: Memory, provider: FakeProvider) -> None:
        self.db, self.memory, self.provider = db, memory, provider
        settings = LLMSettings(provider="anthropic", fact_extraction_every=1000)
        self.usage = UsageStore(db, settings)
        llm = LLM(provider, self.usage)
        self.review = ReviewEngine(llm, ReviewSettings(), settings, db)
        self.agent = ChatAgent(memory, llm, settings, self.review)
        self.assistant = Assistant(HealthRegistry())
        self.signer = ButtonSigner(b"k" * 32)
        AgentCommands(
            self.agent, self.review, self.usage, self.signer, SqliteChatModes(db)
        ).register(self.assistant)
        MemoryCommands(memory, 4000).register(self.assistant)
        self.transport = RecordingTransport()

    async def say(self, text: str, sender: Sender = ANN, chat: int = CHAT) -> None:
        await self.assistant.handle(Incoming(chat, sender, text, channel="test"), self.transport)

    async def press(self, data: str, sender: Sender = ANN, chat: int = CHAT) -> str:
        return await self.assistant.press(
            ButtonPress(chat, sender, data, channel="test"), self.transport
        )

    def last(self) -> Reply:
        return self.transport.shown()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    db = Database.open(tmp_path / "f.db", all_migrations())
    memory = Memory(db, HashingEmbedder(), MemorySettings(), tmp_path / "index")
    await memory.start()
    await memory.wait_ready()
    yield Rig(db, memory, FakeProvider())
    await memory.stop()
    db.close()


async def test_plain_text_is_answered_and_both_turns_are_stored(rig: Rig) -> None:
    rig.provider.script("Hello Ann, nice to meet you.")
    await rig.say("hi, I am Ann")
    assert rig.last().text == "Hello Ann, nice to meet you."
    turns = await rig.memory.recent_messages(CHAT)
    assert [(t.role, t.text) for t in turns] == [
        ("user", "hi, I am Ann"),
        ("assistant", "Hello Ann, nice to meet you."),
    ]


async def test_streaming_sends_once_then_edits_at_most_once_a_second() -> None:
    now = [0.0]
    transport = RecordingTransport()
    stream = StreamingReply(transport, CHAT, clock=lambda: now[0])
    for t, text in (
        (0.0, "One"),
        (0.4, "One two"),
        (0.9, "One two three"),
        (1.2, "One two three four"),
    ):
        now[0] = t
        await stream.delta(text)
    await stream.finish(Reply("One two three four five."))
    assert transport.texts == ["One …"]
    assert [r.text for _, r in transport.edits] == [
        "One two three four …",
        "One two three four five.",
    ]


async def test_think_with_a_clean_critique_skips_refining_and_offers_the_critique(rig: Rig) -> None:
    rig.provider.script("Paris is the capital of France.", APPROVE)
    await rig.say("/think what is the capital of France?")
    answer = rig.last()
    assert answer.text == "Paris is the capital of France."
    assert len(rig.provider.requests) == 2  # draft and critique; no refine call
    button = answer.buttons[0][0]
    assert "critique" in button.label
    assert await rig.press(button.data) == "Here is the critique."
    assert "self: 9" in rig.last().text
    # the same button pressed in another chat, or tampered with, does nothing
    sent = len(rig.transport.sent)
    assert "isn't valid" in await rig.press(button.data, chat=999)
    assert "isn't valid" in await rig.press(button.data[:-2] + "xx")
    assert len(rig.transport.sent) == sent


async def test_answers_get_the_feedback_row_and_errors_and_progress_lines_do_not(rig: Rig) -> None:
    from agents.errors import ProviderUnavailable
    from bot.core.feedback import Feedback

    feedback = Feedback(rig.db)
    await feedback.load_key()
    feedback.install(rig.assistant)

    def labels(reply: Reply) -> list[list[str]]:
        return [[b.label for b in row] for row in reply.buttons]

    rig.provider.script("Paris.")
    await rig.say("capital of France?")
    assert labels(rig.last()) == [["👍", "👎", "🔁", "📌"]]
    # A three-pass answer keeps its own button and gets the feedback row under it (so it can be
    # rated, and a 👍 makes it training data); the "drafting…" line gets no buttons.
    rig.provider.script("Paris is the capital.", APPROVE)
    await rig.say("/think capital of France?")
    assert labels(rig.last()) == [["🧐 Show the critique"], ["👍", "👎", "🔁", "📌"]]
    assert rig.transport.shown(-2).buttons == [] and rig.transport.shown(-2).text == "Done."
    rig.provider.script(ProviderUnavailable("overloaded"))
    await rig.say("and of Spain?")
    assert "overloaded or unreachable" in rig.last().text and rig.last().buttons == []
    with rig.db.read() as conn:
        rated = [r[0] for r in conn.execute("SELECT answer FROM feedback_answers ORDER BY id")]
    assert rated == ["Paris.", "Paris is the capital."]


async def test_review_panel_buttons_record_the_decision_and_reject_forgeries(rig: Rig) -> None:
    rig.provider.script("A haiku about tea.", APPROVE, APPROVE, APPROVE)
    await rig.say("/review write a haiku about tea")
    answer = rig.last()
    assert "A haiku about tea." in answer.text and "approved" in answer.text
    accept, _more, reject = answer.buttons[0]
    forged = accept.data.replace("rv:a", "rv:x")
    assert "isn't valid" in await rig.press(forged)
    decision = rig.db.conn.execute("SELECT decision FROM review_runs").fetchone()[0]
    assert decision is None
    assert await rig.press(reject.data) == "Rejected."
    assert rig.db.conn.execute("SELECT decision FROM review_runs").fetchone()[0] == "rejected"


async def test_think_on_answers_every_message_in_three_passes(rig: Rig) -> None:
    await rig.say("/think on")
    assert "three passes" in rig.last().text
    rig.provider.script("Draft answer.", APPROVE)
    await rig.say("tell me something")
    assert rig.last().text == "Draft answer."
    assert len(rig.provider.requests) == 2
    await rig.say("/think off")
    rig.provider.script("Direct.")
    await rig.say("again")
    assert rig.last().text == "Direct."
    assert len(rig.provider.requests) == 3


async def test_remember_recall_and_forget_stay_in_their_chat(rig: Rig) -> None:
    await rig.say("/remember my bike is green")
    first = rig.last().text
    assert first.startswith("Remembered (#")
    memory_id = first.split("#")[1].rstrip(").")
    await rig.say("/remember my bike is green")
    assert rig.last().text == f"I already knew that (#{memory_id})."
    await rig.say("/recall bike")
    assert "my bike is green" in rig.last().text
    assert "Nothing from" not in rig.last().text
    await rig.say("/recall my bike in March 2019")  # a time that holds nothing: said, not hidden
    assert rig.last().text.splitlines()[0] == "Nothing from March 2019; matches from other times:"
    assert "my bike is green" in rig.last().text
    await rig.say("/recall my bike today")
    assert "Nothing from" not in rig.last().text and "my bike is green" in rig.last().text
    await rig.say("/recall bike", chat=500)
    assert rig.last().text == "I don't remember anything about that."
    await rig.say("/recall what did I say in March 2019?")  # only a time, and nothing from then
    assert rig.last().text == "Nothing from March 2019."
    await rig.say("/recall what did I say today?")
    assert "my bike is green" in rig.last().text
    await rig.say(f"/forget {memory_id}", chat=500)
    assert "no memory" in rig.last().text
    await rig.say("/forget abc")
    assert rig.last().text.startswith("Usage: /forget ID")
    await rig.say(f"/forget {memory_id}")
    assert rig.last().text == f"Forgotten #{memory_id}."
    await rig.say("/recall bike")
    assert rig.last().text == "I don't remember anything about that."
    rig.provider.script("Enjoy the ride.")
    await rig.say("I ride my tandem to the lake")  # a turn, answered: stored with its reply
    await rig.say("/recall tandem lake")
    # The reply is a hit too (by the words it answered), but it is shown once: under the turn.
    assert rig.last().text.splitlines()[1:] == ["  ↓ Enjoy the ride."]
    await rig.say("/recall tandem", chat=500)  # beside a turn of another chat: nothing
    assert rig.last().text == "I don't remember anything about that."


async def test_forgetme_needs_the_owners_confirmation(rig: Rig) -> None:
    await rig.say("/remember I like jazz")
    await rig.say("/forgetme")
    yes = rig.last().buttons[0][0]
    assert await rig.press(yes.data, sender=BOB) == "This button is not yours."
    await rig.say("/memories")
    assert "I like jazz" in rig.last().text  # Bob's press changed nothing
    assert await rig.press(yes.data) == "Forgotten."
    await rig.say("/memories")
    assert "no memories" in rig.last().text


async def test_export_sends_this_chats_memory_as_a_file(rig: Rig) -> None:
    await rig.say("/remember the wifi password is on the fridge")
    await rig.say("/export")
    ((chat, name, data),) = rig.transport.files
    assert chat == CHAT and name.endswith(".json") and name.startswith("familiar-export-")
    assert "the wifi password is on the fridge" in data.decode()
