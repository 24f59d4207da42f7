"""The chat agent with the real Memory facade (SQLite, FAISS, the hashing test embedder) and the
real Anthropic SDK against the stub server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from agents.chat import ChatAgent, LLMFactExtractor, split_stable_prefix
from agents.llm import LLM
from agents.providers.fake import FakeProvider
from agents.providers.none import NoneProvider
from agents.review import ReviewEngine
from agents.schema import migrations as agent_migrations
from agents.settings import LLMSettings, ReviewSettings
from agents.usage import UsageStore
from memory.db import Database
from memory.embedder import HashingEmbedder
from memory.schema import migrations as memory_migrations
from memory.service import Memory
from memory.settings import MemorySettings
from memory.types import Scope
from tests.stubs.anthropic_stub import Reply


@pytest.fixture
def memory_db(tmp_path: Path):
    db = Database.open(tmp_path / "familiar.db", [memory_migrations, agent_migrations])
    memory = Memory(db, HashingEmbedder(), MemorySettings(), tmp_path / "index")
    yield memory, db
    asyncio.run(memory.stop())
    db.close()


def make_agent(memory, db, provider, **settings):
    llm_settings = LLMSettings(**settings)
    llm = LLM(provider, UsageStore(db, llm_settings))
    return ChatAgent(
        memory,
        llm,
        llm_settings,
        ReviewEngine(llm, ReviewSettings(), llm_settings, db),
        LLMFactExtractor(llm),
    )


def test_answer_uses_memory_context_and_stores_both_turns(stub, anthropic_on_stub, memory_db):
    memory, db = memory_db

    async def scenario():
        await memory.add_fact("The user's cat is called Miso.", Scope(10, 1), pinned=True)
        agent = make_agent(memory, db, anthropic_on_stub(), fact_extraction_every=0)
        stub.script("Miso is your cat.")
        answer = await agent.answer(10, 1, "What is my cat called?")
        return answer, await memory.recent_messages(10)

    answer, turns = asyncio.run(scenario())
    assert answer.text == "Miso is your cat." and answer.error is None
    assert [(t.role, t.text) for t in turns] == [
        ("user", "What is my cat called?"),
        ("assistant", "Miso is your cat."),
    ]
    body = stub.bodies()[0]
    prefix = body["system"][0]
    assert "Miso" in prefix["text"] and prefix["cache_control"] == {"type": "ephemeral"}
    assert body["messages"][-1]["content"] == "What is my cat called?"


def test_the_next_message_reads_the_earlier_turns_from_the_cache(
    stub, anthropic_on_stub, memory_db
):
    memory, db = memory_db
    persona = (
        "You are Familiar. " + "Standing instruction: be brief and kind. " * 120
    )  # > 1024 tokens

    async def scenario():
        await memory.add_memory("The user's bike is a blue Gazelle.", Scope(10, 1), "note")
        agent = make_agent(
            memory, db, anthropic_on_stub(), fact_extraction_every=0, persona=persona
        )
        answers = []
        for question, reply in [
            ("Hello there, I am planning a ride.", "Have a good ride!"),
            ("Should I take my bike or walk today?", "Take the bike."),
            ("And what should I wear for it?", "Layers."),
        ]:
            stub.script(reply)
            answers.append(await agent.answer(10, 1, question))
        return answers

    first, second, third = asyncio.run(scenario())
    bodies = stub.bodies()
    # Recalled memories travel with the incoming message, so the system prompt stays the same, and
    # the turn is stored (and later shown) as the user wrote it.
    asked = bodies[1]["messages"][-1]["content"]
    assert "Gazelle" in asked and asked.endswith("Should I take my bike or walk today?")
    assert bodies[1]["system"] == bodies[2]["system"] and "Gazelle" not in json.dumps(
        bodies[1]["system"]
    )
    body = bodies[2]
    assert [m["content"] for m in body["messages"][:3]] == [
        "Hello there, I am planning a ride.",
        "Have a good ride!",
        "Should I take my bike or walk today?",
    ]
    # The last earlier turn carries a breakpoint, so the next message reads all the turns before.
    marked = body["messages"][-2]["content"]
    assert marked[0]["text"] == "Take the bike." and marked[0]["cache_control"] == {
        "type": "ephemeral"
    }
    assert second.usage.cache_read_tokens > 1024
    assert third.usage.cache_read_tokens > second.usage.cache_read_tokens  # the turns, too
    assert third.usage.input_tokens < 60  # what is new: one exchange, the recall, the question


def test_streaming_answer_reports_text_so_far(stub, anthropic_on_stub, memory_db):
    memory, db = memory_db
    seen: list[str] = []

    async def on_delta(text: str) -> None:
        seen.append(text)

    stub.script("one two three four five six seven eight")
    agent = make_agent(memory, db, anthropic_on_stub(), fact_extraction_every=0)
    answer = asyncio.run(agent.answer(10, 1, "count", on_delta=on_delta))
    assert len(seen) >= 2 and seen[-1] == answer.text == "one two three four five six seven eight"
    assert all(seen[i + 1].startswith(seen[i]) for i in range(len(seen) - 1))


def test_provider_down_gives_a_clear_answer(stub, anthropic_on_stub, memory_db):
    memory, db = memory_db
    stub.script(*[Reply.error(529)] * 3)
    agent = make_agent(memory, db, anthropic_on_stub(max_retries=0), fact_extraction_every=0)
    answer = asyncio.run(agent.answer(10, 1, "hello?"))
    assert answer.error == "unavailable" and "try again" in answer.text
    roles = [t.role for t in asyncio.run(memory.recent_messages(10))]
    assert roles == ["user"]  # the error is not stored as something the assistant said


def test_think_mode_runs_three_pass_and_keeps_the_transcript(stub, anthropic_on_stub, memory_db):
    memory, db = memory_db
    stub.script(
        "draft", Reply(json={"score": 9, "verdict": "approve", "issues": [], "summary": ""})
    )
    agent = make_agent(memory, db, anthropic_on_stub(), fact_extraction_every=0)
    answer = asyncio.run(agent.answer(10, 1, "Think about it", mode="think"))
    assert answer.text == "draft" and answer.calls == 2 and answer.run_id is not None
    assert agent.review.load_transcript(answer.run_id)["outcome"] == "clean"


def test_a_persona_chat_thinks_with_its_own_model_and_is_critiqued_by_the_default(memory_db):
    memory, db = memory_db
    persona = FakeProvider(["Arr, the answer be 42.", "Arr, 'tis 42, matey, and here be why."])
    default = FakeProvider(
        [
            json.dumps(
                {
                    "score": 4,
                    "verdict": "revise",
                    "summary": "say why",
                    "issues": [{"severity": "major", "text": "no reason given"}],
                }
            )
        ]
    )
    llm_settings = LLMSettings(fact_extraction_every=0)
    llm = LLM(default)

    async def route(chat_id: int) -> LLM | None:
        return LLM(persona) if chat_id == 10 else None

    agent = ChatAgent(
        memory,
        llm,
        llm_settings,
        ReviewEngine(llm, ReviewSettings(), llm_settings, db),
        route=route,
    )
    answer = asyncio.run(agent.answer(10, 1, "What is the answer?", mode="think"))
    assert (
        answer.text == "Arr, 'tis 42, matey, and here be why."
        and answer.review.outcome == "refined"
    )
    # The persona's model drafted and refined; the default model wrote the critique.
    assert len(persona.requests) == 2 and len(default.requests) == 1
    assert default.requests[0].messages[-2]["content"] == "Arr, the answer be 42."
    assert "no reason given" in persona.requests[1].messages[-2]["content"]


def test_facts_are_extracted_every_n_turns_in_one_call(memory_db):
    memory, db = memory_db
    provider = FakeProvider(["noted", "ok", json.dumps({"facts": ["The user lives in Lisbon."]})])
    agent = make_agent(memory, db, provider, fact_extraction_every=4)

    async def scenario():
        await agent.answer(10, 1, "I moved to Lisbon last year.")
        await agent.answer(10, 1, "Nice weather today.")
        await agent.drain()
        return await memory.list_memories(Scope(10, 1), ["fact"])

    facts = asyncio.run(scenario())
    assert [f.text for f in facts] == ["The user lives in Lisbon."]
    extract_calls = [r for r in provider.requests if "durable facts" in r.messages[0]["content"]]
    assert len(extract_calls) == 1 and "Lisbon" in extract_calls[0].messages[0]["content"]
    assert "Nice weather" in extract_calls[0].messages[0]["content"]


def test_in_a_group_each_members_facts_come_from_their_own_turns(memory_db):
    memory, db = memory_db
    ann = json.dumps({"facts": ["The user is allergic to penicillin."]})
    bob = json.dumps({"facts": ["The user plays jazz piano."]})
    provider = FakeProvider(["noted", "nice", ann, bob])
    agent = make_agent(memory, db, provider, fact_extraction_every=4)

    async def scenario():
        await agent.answer(-5, 1, "I'm allergic to penicillin.", meta={"speaker": "Ann"})
        await agent.answer(-5, 2, "I play jazz piano.", meta={"speaker": "Bob"})
        await agent.drain()
        return (
            await memory.list_memories(Scope(-5, 1), ["fact"]),
            await memory.list_memories(Scope(-5, 2), ["fact"]),
        )

    ann_facts, bob_facts = asyncio.run(scenario())
    assert [f.text for f in ann_facts] == ["The user is allergic to penicillin."]
    assert [f.text for f in bob_facts] == ["The user plays jazz piano."]
    calls = [r.messages[0]["content"] for r in provider.requests]
    calls = [c for c in calls if "durable facts" in c]
    assert len(calls) == 2
    assert "penicillin" in calls[0] and "noted" in calls[0] and "jazz" not in calls[0]
    assert "jazz" in calls[1] and "nice" in calls[1] and "penicillin" not in calls[1]


def test_the_extraction_count_survives_a_restart_and_no_turn_is_extracted_twice(memory_db):
    memory, db = memory_db
    facts = json.dumps({"facts": ["The user keeps bees."]})

    def agent_on(provider):  # a fresh agent over the same database: a restarted daemon
        llm_settings = LLMSettings(fact_extraction_every=4)
        return ChatAgent(
            memory, LLM(provider), llm_settings, extractor=LLMFactExtractor(LLM(provider)), db=db
        )

    def extract_calls(provider):
        return [r for r in provider.requests if "durable facts" in r.messages[0]["content"]]

    async def scenario():
        first = FakeProvider(["ok"])
        await agent_on(first).answer(10, 1, "I keep bees on my roof.")  # 2 turns, then a restart
        second = FakeProvider(["ok", facts])
        agent = agent_on(second)
        await agent.answer(10, 1, "They made honey this year.")  # turns 3 and 4: extraction is due
        await agent.drain()
        third = FakeProvider(["ok"])
        agent = agent_on(third)
        await agent.answer(10, 1, "Anything else?")  # 2 new turns after a restart: not yet
        await agent.drain()
        return first, second, third

    first, second, third = asyncio.run(scenario())
    assert extract_calls(first) == []
    [call] = extract_calls(second)
    assert "roof" in call.messages[0]["content"] and "honey" in call.messages[0]["content"]
    assert extract_calls(third) == []
    stored = db.conn.execute(
        "SELECT last_message_id FROM llm_fact_marks WHERE chat_id = 10"
    ).fetchone()
    ids = [m.id for m in asyncio.run(memory.recent_messages(10, 10))]
    assert len(ids) == 6 and stored[0] == ids[3]  # up to the fourth turn, the last one handed over


def test_retrieval_only_without_a_model(memory_db):
    memory, db = memory_db

    async def scenario():
        await memory.add_memory("The dentist appointment is on Friday at 10.", Scope(10, 1))
        agent = make_agent(memory, db, NoneProvider())
        return await agent.answer(10, 1, "When is the dentist appointment?")

    answer = asyncio.run(scenario())
    assert answer.retrieval_only and "FAMILIAR_LLM__PROVIDER" in answer.text
    assert "Friday at 10" in answer.text


def test_retrieval_only_quotes_a_huge_memory_briefly(memory_db):
    """A pasted 100 kB text is recalled as a short quote, not flooded back into the chat."""
    memory, db = memory_db
    pasted = "The greenhouse log: " + "tomatoes watered again. " * 4000

    async def scenario():
        await memory.add_memory(pasted, Scope(10, 1))
        agent = make_agent(memory, db, NoneProvider())
        return await agent.answer(10, 1, "what does the greenhouse log say?")

    answer = asyncio.run(scenario())
    assert "The greenhouse log: tomatoes watered again." in answer.text
    assert "…" in answer.text and len(answer.text) < 2000


def test_retrieval_only_does_not_quote_the_message_back(memory_db):
    """The message just stored (control characters cleaned out) is not a memory 'that may be
    relevant' to itself."""
    memory, db = memory_db

    async def scenario():
        agent = make_agent(memory, db, NoneProvider())
        return await agent.answer(10, 1, "\x1b[31mred roses\x07 for the hall")

    answer = asyncio.run(scenario())
    assert "red roses" not in answer.text
    assert "I found nothing in memory about that." in answer.text


def test_split_stable_prefix():
    system = (
        "Persona\n\n## What you know about the user\n- a\n\n## Earlier in this conversation\n- b"
    )
    assert split_stable_prefix(system) == (
        "Persona\n\n## What you know about the user\n- a",
        "## Earlier in this conversation\n- b",
    )
    assert split_stable_prefix("Persona only") == ("Persona only", "")


def test_a_huge_message_reaches_the_model_clipped_to_the_context_budget(memory_db):
    from agents.providers.fake import estimate_tokens

    memory, db = memory_db
    provider = FakeProvider(["Got it: a long text."])
    agent = make_agent(memory, db, provider, fact_extraction_every=0, context_tokens=4000)
    huge = "BEGIN " + "the quick brown fox jumps over the lazy dog " * 15_000 + " FINISH"  # 660 kB
    answer = asyncio.run(agent.answer(10, 1, huge))
    assert answer.error is None and answer.text == "Got it: a long text."
    [request] = provider.requests
    sent = request.messages[-1]["content"]
    assert "BEGIN" in sent and sent.endswith("FINISH") and "characters left out" in sent
    assert (
        estimate_tokens(request.full_system())
        + sum(estimate_tokens(m["content"]) for m in request.messages)
        <= 4000
    )


def test_a_message_too_big_to_keep_gets_a_clear_answer_and_nothing_is_stored(memory_db):
    memory, db = memory_db
    provider = FakeProvider(["never used"])
    agent = make_agent(memory, db, provider, fact_extraction_every=0)
    answer = asyncio.run(agent.answer(10, 1, "x " * 600_000))  # 1.2 MB, over memory.max_text_bytes
    assert answer.error == "input" and "over the limit" in answer.text and "split it" in answer.text
    assert provider.requests == [] and asyncio.run(memory.recent_messages(10)) == []
