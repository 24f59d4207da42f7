"""The model as memory's fact judge: one call for a batch of pairs, and what it does with a reply
it cannot use (no verdict: memory then adds the fact, losing nothing)."""

from __future__ import annotations

import asyncio
import json

from agents.fact_judge import LLMFactJudge
from agents.llm import LLM
from agents.providers.fake import FakeProvider
from agents.providers.none import NoneProvider

PAIRS = [
    ("My dentist appointment is on Tuesday at 10:00", "I moved my dentist appointment to 15:30"),
    ("My wife is called Anna", "My sister is called Anna"),
]


def test_one_call_judges_every_pair_in_order() -> None:
    provider = FakeProvider([json.dumps({"verdicts": ["superseded", "added"]})])
    verdicts = asyncio.run(LLMFactJudge(LLM(provider)).judge(PAIRS))
    assert verdicts == ["superseded", "added"]
    [request] = provider.requests
    prompt = request.messages[0]["content"]
    assert all(known in prompt and new in prompt for known, new in PAIRS)
    assert request.json_schema is not None


def test_an_unusable_reply_gives_no_verdict() -> None:
    for reply in ("not json", json.dumps({"verdicts": ["duplicate"]}), json.dumps({"x": 1})):
        verdicts = asyncio.run(LLMFactJudge(LLM(FakeProvider([reply]))).judge(PAIRS))
        assert len(verdicts) == 2 and verdicts[1] is None


def test_no_model_configured_means_no_call() -> None:
    assert asyncio.run(LLMFactJudge(LLM(NoneProvider())).judge(PAIRS)) == [None, None]
