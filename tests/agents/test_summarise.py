"""``LLMSummariser``: the model writes the chat's summary; without a model, or when the call fails
or comes back empty, the extractive summary answers instead, so compaction never loses a chat.

The real Anthropic SDK talks to the stub model server on 127.0.0.1; usage lands in real SQLite.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from agents.llm import LLM
from agents.providers.none import NoneProvider
from agents.settings import LLMSettings
from agents.summarise import MAX_TRANSCRIPT_CHARS, PROMPT, LLMSummariser
from agents.usage import UsageStore
from memory.context import ExtractiveSummariser
from memory.db import Database
from memory.types import Message
from tests.stubs.anthropic_stub import LLMStub, Reply

CHAT = 42


def turn(n: int, role: str, text: str, chat_id: int = CHAT) -> Message:
    return Message(n, chat_id, 7 if role == "user" else None, role, text, datetime.now(UTC))


TURNS = [
    turn(1, "system", "Alice is planning a move to Lyon."),
    turn(2, "user", "We signed the lease for the flat on Rue Mercière today."),
    turn(3, "assistant", "Congratulations on the flat! When do the movers come?"),
    turn(4, "user", "The movers come on 3 May at 8 in the morning."),
]


def user_prompt(body: dict) -> str:
    (message,) = body["messages"]
    content = message["content"]
    return content if isinstance(content, str) else "".join(b["text"] for b in content)


def usage_rows(db: Database) -> list[tuple]:
    with db.read() as conn:
        return conn.execute("SELECT purpose, chat_id, ok FROM llm_usage ORDER BY id").fetchall()


def test_the_model_writes_the_summary_from_the_whole_transcript(
    stub: LLMStub, anthropic_on_stub, db: Database
) -> None:
    stub.script(Reply("  - Alice moves to Lyon; movers on 3 May, 8:00.\n"))
    llm = LLM(anthropic_on_stub(), UsageStore(db, LLMSettings()))

    summary = asyncio.run(LLMSummariser(llm, max_tokens=300).summarise(TURNS))

    assert summary == "- Alice moves to Lyon; movers on 3 May, 8:00."
    (body,) = stub.bodies()
    prompt = user_prompt(body)
    # Every turn reaches the model, who said it, and the earlier summary named as such.
    assert "earlier summary: Alice is planning a move to Lyon." in prompt
    assert "user: The movers come on 3 May at 8 in the morning." in prompt
    assert "assistant: Congratulations on the flat!" in prompt
    assert body["max_tokens"] == 300
    # The call is paid for like any other: one usage row, for this chat, as a summary.
    assert usage_rows(db) == [("summary", CHAT, 1)]


def test_a_long_chat_sends_only_its_most_recent_part(stub: LLMStub, anthropic_on_stub) -> None:
    stub.script(Reply("summary"))
    old = [turn(i, "user", f"old message number {i} " + "x" * 200) for i in range(200)]
    latest = turn(999, "user", "The newest thing said: the keys are under the mat.")
    asyncio.run(LLMSummariser(LLM(anthropic_on_stub())).summarise([*old, latest]))

    prompt = user_prompt(stub.bodies()[0])
    assert prompt.startswith(PROMPT)
    assert len(prompt) - len(PROMPT) == MAX_TRANSCRIPT_CHARS  # the whole chat was longer
    assert prompt.endswith("user: The newest thing said: the keys are under the mat.")
    assert "old message number 0 " not in prompt  # the oldest turns are the ones cut


def test_without_a_model_the_extractive_summary_answers(db: Database) -> None:
    expected = asyncio.run(ExtractiveSummariser().summarise(TURNS))
    llm = LLM(NoneProvider(), UsageStore(db, LLMSettings()))

    assert asyncio.run(LLMSummariser(llm).summarise(TURNS)) == expected
    assert "movers come on 3 May" in expected  # the fallback is a real summary, not ""
    assert usage_rows(db) == []  # no model call was made, so none is counted


def test_a_failed_model_call_falls_back_and_is_counted_as_failed(
    stub: LLMStub, anthropic_on_stub, db: Database
) -> None:
    stub.script(Reply.error(401, message="invalid x-api-key"))
    llm = LLM(anthropic_on_stub(max_retries=0), UsageStore(db, LLMSettings()))

    summary = asyncio.run(LLMSummariser(llm).summarise(TURNS))

    assert summary == asyncio.run(ExtractiveSummariser().summarise(TURNS))
    assert usage_rows(db) == [("summary", CHAT, 0)]


def test_an_empty_model_reply_falls_back(stub: LLMStub, anthropic_on_stub) -> None:
    stub.script(Reply("   \n"))
    summary = asyncio.run(LLMSummariser(LLM(anthropic_on_stub())).summarise(TURNS))
    assert summary == asyncio.run(ExtractiveSummariser().summarise(TURNS))


def test_nothing_to_summarise_asks_nothing(stub: LLMStub, anthropic_on_stub) -> None:
    assert asyncio.run(LLMSummariser(LLM(anthropic_on_stub())).summarise([])) == ""
    assert stub.bodies() == []
