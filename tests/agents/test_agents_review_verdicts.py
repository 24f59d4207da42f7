"""The review engine's verdicts on a finished artefact: assessment and blind A/B judgement.

Scripted reviewers (``FakeProvider``: replies in the order the reviewers ask, correctness,
safety, clarity) approve, reject, disagree and answer garbage; every run lands in
``review_runs`` with its transcript.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from agents.llm import LLM
from agents.providers.fake import FakeProvider
from agents.review import ReviewEngine
from agents.review_verdicts import Pair, assess, brief, critique, judge
from agents.settings import LLMSettings, ReviewSettings
from agents.usage import CallContext

CTX = CallContext(user_id=1, chat_id=10)
APPROVE = json.dumps({"score": 9, "verdict": "approve", "issues": [], "summary": "good"})
REJECT = json.dumps(
    {
        "score": 2,
        "verdict": "revise",
        "issues": [{"severity": "critical", "text": "leaks a phone number"}],
        "summary": "unsafe",
    }
)


def engine(provider: FakeProvider, db=None) -> ReviewEngine:
    return ReviewEngine(LLM(provider), ReviewSettings(), LLMSettings(), db)


@pytest.mark.parametrize(
    ("replies", "outcome"),
    [
        ((APPROVE, APPROVE, APPROVE), "approved"),
        ((REJECT, REJECT, REJECT), "rejected"),
        ((APPROVE, REJECT, APPROVE), "threshold"),  # mean 6.67, threshold 6
        ((REJECT, REJECT, APPROVE), "rejected"),  # mean 4.33
    ],
)
def test_assessment_approves_rejects_or_goes_by_the_mean(db, replies, outcome) -> None:
    provider = FakeProvider(replies)
    result = asyncio.run(
        assess(engine(provider, db), "Judge the data.", "the sample", CTX, threshold=6.0)
    )
    assert result.outcome == outcome and len(provider.requests) == 3
    stored = db.conn.execute("SELECT kind, outcome, transcript FROM review_runs").fetchone()
    assert stored[:2] == ("assessment", outcome) and result.run_id == 1
    transcript = json.loads(stored[2])
    assert [r["reviewer"] for r in transcript["rounds"][0]["reviews"]] == [
        "correctness",
        "safety",
        "clarity",
    ]
    assert brief(result)["reviews"][0]["approve"] == (replies[0] == APPROVE)
    if REJECT in replies:
        assert "[critical] leaks a phone number" in critique(result)


def test_an_unreadable_assessment_is_repaired_once_then_rejects(db) -> None:
    provider = FakeProvider(["[]"] * 6)  # valid JSON, not an object, even when asked again
    result = asyncio.run(assess(engine(provider, db), "Judge.", "the sample", CTX, threshold=6))
    assert result.outcome == "rejected" and len(provider.requests) == 6
    assert all(r.malformed for r in result.rounds[0].reviews)
    assert "unreadable review: []" in critique(result)


def test_each_reviewer_judges_each_pair_blind(db) -> None:
    pairs = [Pair("Hi?", "Ahoy!", "Hello."), Pair("Bye?", "Farewell.", "Fair winds!")]
    winner = [{"winner": w, "reason": "r"} for w in ("A", "B", "tie", "B", "B", "A")]
    provider = FakeProvider([json.dumps(w) for w in winner])
    judged = asyncio.run(judge(engine(provider, db), "Be a pirate.", pairs, CTX))
    assert [[j.winner for j in js] for js in judged.judgements] == [
        ["A", "B", "tie"],
        ["B", "B", "A"],
    ]
    assert [[j.reviewer for j in js] for js in judged.judgements][0] == [
        "correctness",
        "safety",
        "clarity",
    ]
    prompt = provider.requests[0].messages[0]["content"]
    assert prompt.endswith("Message:\nHi?\n\nAnswer A:\nAhoy!\n\nAnswer B:\nHello.")
    stored = db.conn.execute("SELECT kind, outcome FROM review_runs").fetchone()
    assert stored == ("judgement", "A 2, B 3, tie 1, unreadable 0")


def test_an_unreadable_judgement_is_asked_again_once(db) -> None:
    one = ReviewSettings().reviewers[:1]  # one judge: the script's order is the calls' order
    pair = [Pair("Hi?", "a", "b")]
    provider = FakeProvider(["A, clearly", json.dumps({"winner": "A", "reason": "r"})])
    (repaired,) = asyncio.run(
        judge(engine(provider, db), "Be a pirate.", pair, CTX, reviewers=one)
    ).judgements[0]
    assert (repaired.winner, repaired.calls) == ("A", 2)
    assert "not the JSON asked for" in provider.requests[1].messages[-1]["content"]
    provider = FakeProvider(["no idea", "still prose", "never asked"])
    (unreadable,) = asyncio.run(
        judge(engine(provider, db), "Be a pirate.", pair, CTX, reviewers=one)
    ).judgements[0]
    assert (unreadable.winner, unreadable.calls, unreadable.raw) == (None, 2, "still prose")
    assert len(provider.requests) == 2
