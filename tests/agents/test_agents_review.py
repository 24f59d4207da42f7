"""Three-pass and the review panel: one engine, the real SDKs against the stub server."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from agents.llm import LLM
from agents.providers.fake import FakeProvider
from agents.review import JSON_INSTRUCTIONS, REVIEW_SCHEMA, ReviewEngine, parse_review
from agents.settings import LLMSettings, ReviewSettings
from agents.usage import CallContext, UsageStore
from tests.stubs.anthropic_stub import Reply

CTX = CallContext(user_id=1, chat_id=10)
CLEAN = {"score": 9, "verdict": "approve", "issues": [], "summary": "fine"}
MINOR = {
    "score": 8,
    "verdict": "approve",
    "issues": [{"severity": "minor", "text": "comma"}],
    "summary": "ok",
}
MAJOR = {
    "score": 4,
    "verdict": "revise",
    "issues": [{"severity": "major", "text": "wrong year"}],
    "summary": "fix the year",
}


def engine(provider, db=None, llm_settings=None, **review):
    llm_settings = llm_settings or LLMSettings()
    return ReviewEngine(
        LLM(provider, UsageStore(db, llm_settings) if db else None),
        ReviewSettings(**review),
        llm_settings,
        db,
    )


@pytest.mark.parametrize("critique", [CLEAN, MINOR])
def test_three_pass_skips_the_third_call_when_the_critique_is_clean(
    stub, anthropic_on_stub, critique
):
    stub.script("The answer is 42.", Reply(json=critique))
    result = asyncio.run(engine(anthropic_on_stub()).three_pass("What is the answer?", CTX))
    assert result.final == "The answer is 42."
    assert result.outcome == "clean" and result.calls == 2
    assert len(stub.requests) == 2
    draft, critique_body = stub.bodies()
    # The critique continues the author's conversation (shared prefix). Anthropic keys its cache
    # on the output schema, so by default the critique describes the JSON in its prompt instead.
    assert critique_body["messages"][: len(draft["messages"])] == draft["messages"]
    assert "format" not in critique_body.get("output_config", {})
    assert JSON_INSTRUCTIONS in critique_body["messages"][-1]["content"]
    # Effort levels, not temperatures, with Anthropic: equal on every pass (one cached prompt),
    # and "high", the API's default, is not sent (so a plain answer's prompt is alike too).
    assert "output_config" not in draft and "output_config" not in critique_body
    assert all("temperature" not in b for b in stub.bodies())


LONG_PREFIX = "You are Familiar. " + "Pinned fact: the user likes tea. " * 150  # > 1024 tokens


def test_three_pass_calls_read_each_others_prompt_from_the_cache(stub, anthropic_on_stub):
    stub.script("Draft: founded in 1999. " * 20, Reply(json=MAJOR), "Refined: founded in 1998.")
    result = asyncio.run(
        engine(anthropic_on_stub()).three_pass(
            "When was it founded?", CTX, system_prefix=LONG_PREFIX, system="recalled: nothing"
        )
    )
    draft, critique, refine = (
        result.rounds[0].draft_usage,
        result.rounds[0].reviews[0].usage,
        result.refine_usage,
    )
    assert all(b["cache_control"] == {"type": "ephemeral"} for b in stub.bodies())
    # The critique reads all the draft call sent, the refine call all the critique call sent:
    # each pays full price only for what is new (the draft, the critique).
    assert critique.cache_read_tokens == draft.total_input and critique.input_tokens == 0
    assert refine.cache_read_tokens == critique.total_input and refine.input_tokens == 0
    assert critique.cache_write_tokens < draft.total_input / 2


def test_an_enforced_critique_schema_is_sent_and_misses_the_draft_cache(stub, anthropic_on_stub):
    stub.script("Draft: founded in 1999.", Reply(json=CLEAN))
    eng = engine(anthropic_on_stub(), llm_settings=LLMSettings(critique_schema="enforced"))
    result = asyncio.run(eng.three_pass("When?", CTX, system_prefix=LONG_PREFIX))
    critique_body = stub.bodies()[1]
    assert critique_body["output_config"]["format"] == {
        "type": "json_schema",
        "schema": REVIEW_SCHEMA,
    }
    assert JSON_INSTRUCTIONS not in json.dumps(critique_body["messages"])
    assert result.rounds[0].reviews[0].usage.cache_read_tokens == 0  # the price of enforcing it


def test_three_pass_refines_against_the_critique(stub, anthropic_on_stub, db):
    stub.script("Draft: founded in 1999.", Reply(json=MAJOR), "Refined: founded in 1998.")
    eng = engine(anthropic_on_stub(), db)
    result = asyncio.run(eng.three_pass("When was it founded?", CTX))
    assert result.final == "Refined: founded in 1998." and result.outcome == "refined"
    assert len(stub.requests) == 3
    refine = stub.bodies()[2]
    assert "wrong year" in json.dumps(refine["messages"]) and "json_schema" not in json.dumps(
        refine
    )
    # Every pass is stored and can be shown ("show the critique").
    stored = eng.load_transcript(result.run_id)
    assert stored["rounds"][0]["draft"] == "Draft: founded in 1999."
    assert stored["rounds"][0]["reviews"][0]["issues"][0]["text"] == "wrong year"
    assert stored["final"] == result.final and stored["refine_usage"]["output"] > 0
    purposes = [r[0] for r in db.conn.execute("SELECT purpose FROM llm_usage ORDER BY id")]
    assert purposes == ["draft", "critique", "refine"]


def test_three_pass_temperatures_with_an_openai_compatible_server(stub, openai_on_stub):
    stub.script("draft", Reply(json=MAJOR), "better")
    asyncio.run(engine(openai_on_stub()).three_pass("q", CTX))
    bodies = stub.bodies("/v1/chat/completions")
    assert [b["temperature"] for b in bodies] == [0.7, 0.5, 0.6]
    assert bodies[1]["response_format"]["json_schema"]["schema"] == REVIEW_SCHEMA
    assert "response_format" not in bodies[0] and "response_format" not in bodies[2]


def test_panel_stops_at_approval_and_reviews_concurrently(stub, anthropic_on_stub, db):
    stub.script("A careful answer.")
    stub.responder = lambda path, body: Reply(json=CLEAN, delay_s=0.4)
    started = time.monotonic()
    result = asyncio.run(engine(anthropic_on_stub(), db).panel("Explain DNS.", CTX))
    elapsed = time.monotonic() - started
    assert result.outcome == "approved" and len(result.rounds) == 1
    assert len(stub.requests) == 4  # one draft, three reviewers
    assert elapsed < 1.0  # three 0.4 s reviews ran at once
    reviewers = {r.reviewer for r in result.rounds[0].reviews}
    assert reviewers == {"correctness", "safety", "clarity"}
    review_bodies = stub.bodies()[1:]
    assert all(b["output_config"]["format"]["schema"] == REVIEW_SCHEMA for b in review_bodies)
    # Reviewers at "high", the API's default effort, which is therefore not sent.
    assert all("effort" not in b["output_config"] for b in review_bodies)
    row = db.conn.execute("SELECT kind, outcome, rounds FROM review_runs").fetchone()
    assert row == ("panel", "approved", 1)


def test_panel_stops_at_max_rounds(stub, anthropic_on_stub):
    def responder(path, body):
        if "output_config" in body and "format" in body["output_config"]:
            return Reply(json=MAJOR)
        return Reply(f"draft {len(stub.requests)}")

    stub.responder = responder
    result = asyncio.run(engine(anthropic_on_stub(), max_rounds=2).panel("Task", CTX))
    assert result.outcome == "max_rounds" and len(result.rounds) == 2
    assert len(stub.requests) == 1 + 3 + 1 + 3  # draft, reviews, revision, reviews
    revision = stub.bodies()[4]
    assert "wrong year" in revision["messages"][-1]["content"]
    assert result.final == result.rounds[1].draft


def test_panel_stops_when_the_mean_score_reaches_the_threshold(stub, anthropic_on_stub):
    stub.script("draft")
    stub.responder = lambda path, body: Reply(json={**MAJOR, "score": 9})
    result = asyncio.run(engine(anthropic_on_stub(), approve_mean_score=8.5).panel("Task", CTX))
    assert result.outcome == "threshold" and len(stub.requests) == 4


def test_malformed_review_gets_one_repair_then_counts_as_revise(stub, anthropic_on_stub):
    def responder(path, body):
        system = json.dumps(body.get("system", ""))
        if "clarity reviewer" in system:
            return Reply("I think it is great, 10/10!")  # never valid JSON, even after repair
        if "safety reviewer" in system:
            if len(body["messages"]) == 1:
                return Reply('Sure: {"score": 9, oops')
            return Reply(json=CLEAN)  # repaired
        if "correctness reviewer" in system:
            return Reply("Here you go:\n```json\n" + json.dumps(CLEAN) + "\n```")
        return Reply("the draft")

    stub.responder = responder
    result = asyncio.run(engine(anthropic_on_stub(), max_rounds=1).panel("Task", CTX))
    reviews = {r.reviewer: r for r in result.rounds[0].reviews}
    assert reviews["correctness"].approve and reviews["correctness"].calls == 1
    assert reviews["safety"].approve and reviews["safety"].calls == 2
    clarity = reviews["clarity"]
    assert clarity.malformed and not clarity.approve and clarity.calls == 2
    assert clarity.raw == "I think it is great, 10/10!"
    assert result.outcome == "max_rounds"
    repair = [b for b in stub.bodies() if "clarity reviewer" in json.dumps(b.get("system", ""))][1]
    assert "not the JSON asked for" in repair["messages"][-1]["content"]


def test_a_failing_reviewer_does_not_crash_the_loop(stub, anthropic_on_stub):
    def responder(path, body):
        if "safety reviewer" in json.dumps(body.get("system", "")):
            return Reply.error(500)
        return (
            Reply(json=CLEAN)
            if "output_config" in body and "format" in body["output_config"]
            else Reply("draft")
        )

    stub.responder = responder
    result = asyncio.run(engine(anthropic_on_stub(max_retries=0), max_rounds=1).panel("Task", CTX))
    safety = next(r for r in result.rounds[0].reviews if r.reviewer == "safety")
    assert safety.malformed and "failed" in safety.issues[0].text
    assert result.final == "draft"


def test_reviews_ask_for_json_in_the_prompt_without_schema_support(stub, openai_on_stub):
    stub.script("draft")
    stub.responder = lambda path, body: Reply(json=CLEAN)
    result = asyncio.run(engine(openai_on_stub(json_schema=False), max_rounds=1).panel("T", CTX))
    bodies = stub.bodies("/v1/chat/completions")
    assert all("response_format" not in b for b in bodies)
    assert all('"verdict"' in b["messages"][0]["content"] for b in bodies[1:])
    assert result.outcome == "approved"


def test_one_more_round_and_decisions(db):
    provider = FakeProvider(
        [
            "draft one",
            json.dumps(MAJOR),
            json.dumps(MAJOR),
            json.dumps(MAJOR),
            "draft two",
            json.dumps(CLEAN),
            json.dumps(CLEAN),
            json.dumps(CLEAN),
        ]
    )
    eng = engine(provider, db, max_rounds=1)
    first = asyncio.run(eng.panel("Write a haiku", CTX))
    assert first.outcome == "max_rounds" and first.final == "draft one"
    second = asyncio.run(eng.one_more_round(first.run_id, CTX))
    assert second.final == "draft two" and second.outcome == "approved"
    assert "wrong year" in provider.requests[4].messages[-1]["content"]
    assert provider.requests[5].messages[0]["content"].startswith("The task:\nWrite a haiku")
    assert eng.set_decision(second.run_id, "accepted")
    assert eng.load_transcript(second.run_id)["decision"] == "accepted"
    assert not eng.set_decision(999, "rejected")


def test_empty_draft_is_a_clear_error(stub, anthropic_on_stub):
    from agents.errors import BadModelOutput

    stub.script(Reply("", stop_reason="refusal"))
    with pytest.raises(BadModelOutput, match="refused"):
        asyncio.run(engine(anthropic_on_stub()).three_pass("q", CTX))


def test_parse_review_clamps_and_rejects():
    review = parse_review(
        "x", '{"score": 14, "verdict": "APPROVE", "issues": ["vague"], "summary": ""}'
    )
    assert review.score == 10 and review.approve and not review.clean
    with pytest.raises(ValueError, match="verdict"):
        parse_review("x", '{"score": 5, "verdict": "maybe"}')
