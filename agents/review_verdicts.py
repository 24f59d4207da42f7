"""The review panel's verdicts on a finished artefact: an assessment, and blind A/B judgement.

Two modes of the one review engine (``agents.review.ReviewEngine``) where nobody drafts or
revises: the panel looks at something made elsewhere and decides. ``assess`` has every reviewer
score a subject against a task, concurrently, with the engine's own review call (same prompt,
schema and one repair request); it approves when every review is clean, or when the mean score
reaches the threshold, and otherwise rejects with the combined critique. ``judge`` shows every
reviewer each pair of answers as A and B and asks which fits the criteria better; a reply that
cannot be read gets one repair request, then stays unreadable (``winner`` None) for the caller
to count as it sees fit. Both store their transcript in ``review_runs`` like the engine's other
modes, and return it.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from typing import Any

from loguru import logger

from agents.errors import LLMError
from agents.providers.base import LLMRequest, Usage
from agents.review import ReviewEngine, ReviewResult, Round, complete_with_repair
from agents.review_format import (
    JUDGE_INSTRUCTIONS,
    JUDGE_SCHEMA,
    Judgement,
    combined_critique,
    parse_judgement,
)
from agents.settings import ReviewerPersona
from agents.usage import CallContext


async def assess(
    engine: ReviewEngine,
    task: str,
    subject: str,
    ctx: CallContext,
    *,
    reviewers: list[ReviewerPersona] | None = None,
    threshold: float | None = None,
) -> ReviewResult:
    """Every reviewer scores ``subject`` against ``task`` once; outcome approved | threshold |
    rejected (``combined_critique`` of its one round says why)."""
    panel = reviewers or engine.settings.reviewers
    reviews = list(await asyncio.gather(*(engine.review(r, task, subject, ctx) for r in panel)))
    current = Round(1, subject, Usage(), reviews)
    if all(r.clean for r in reviews):
        outcome = "approved"
    elif threshold is not None and current.mean_score >= threshold:
        outcome = "threshold"
    else:
        outcome = "rejected"
    usage, calls = Usage(), 0
    for r in reviews:
        usage, calls = usage + r.usage, calls + r.calls
    result = ReviewResult("assessment", task, subject, outcome, [current], usage, calls)
    result.run_id = await engine.store_run(
        "assessment", task, outcome, 1, subject, result.transcript(), usage, ctx
    )
    return result


def brief(result: ReviewResult) -> dict[str, Any]:
    """A panel's or an assessment's last round, as a pipeline stage keeps it and shows it."""
    last = result.rounds[-1] if result.rounds else None
    return {
        "run_id": result.run_id,
        "kind": result.kind,
        "outcome": result.outcome,
        "rounds": len(result.rounds),
        "mean_score": round(last.mean_score, 2) if last else None,
        "reviews": [
            {
                "reviewer": r.reviewer,
                "score": r.score,
                "approve": r.approve,
                "summary": "unreadable review" if r.malformed else r.summary,
                "issues": [f"[{i.severity}] {i.text}" for i in r.issues],
            }
            for r in (last.reviews if last else [])
        ],
    }


def critique(result: ReviewResult) -> str:
    """What the reviewers of an assessment said, one line per reviewer and issue."""
    return combined_critique(result.rounds[-1].reviews) if result.rounds else ""


@dataclass
class Pair:
    """One item to judge: the message both answers reply to, and the answers in shown order."""

    message: str
    a: str
    b: str


@dataclass
class Judging:
    criteria: str
    pairs: list[Pair]
    judgements: list[list[Judgement]]  # per pair, one per reviewer
    usage: Usage = field(default_factory=Usage)
    calls: int = 0
    run_id: int | None = None

    def transcript(self) -> dict[str, Any]:
        return {
            "kind": "judgement",
            "criteria": self.criteria,
            "calls": self.calls,
            "usage": self.usage.as_dict(),
            "pairs": [
                asdict(p)
                | {
                    "judgements": [
                        {
                            "reviewer": j.reviewer,
                            "winner": j.winner,
                            "reason": j.reason,
                            "raw": j.raw,
                            "calls": j.calls,
                        }
                        for j in js
                    ]
                }
                for p, js in zip(self.pairs, self.judgements, strict=True)
            ],
        }


async def judge(
    engine: ReviewEngine,
    criteria: str,
    pairs: list[Pair],
    ctx: CallContext,
    *,
    reviewers: list[ReviewerPersona] | None = None,
) -> Judging:
    """Each reviewer picks A, B or tie for each pair (pairs in turn, reviewers concurrently)."""
    panel = reviewers or engine.settings.reviewers
    result = Judging(criteria, pairs, [])
    for pair in pairs:
        verdicts = list(
            await asyncio.gather(*(_judge_one(engine, r, criteria, pair, ctx) for r in panel))
        )
        result.judgements.append(verdicts)
        for j in verdicts:
            result.usage, result.calls = result.usage + j.usage, result.calls + j.calls
    winners = [j.winner for js in result.judgements for j in js]
    result.run_id = await engine.store_run(
        "judgement",
        criteria,
        f"A {winners.count('A')}, B {winners.count('B')}, tie {winners.count('tie')}, "
        f"unreadable {winners.count(None)}",
        1,
        "",
        result.transcript(),
        result.usage,
        ctx,
    )
    return result


def _judge_request(
    engine: ReviewEngine, reviewer: ReviewerPersona, criteria: str, pair: Pair
) -> LLMRequest:
    caps = engine.llm.capabilities
    system = (
        f"You are the {reviewer.name} judge on a review panel. Your focus: {reviewer.focus}. "
        "You see two answers to the same message, A and B, in no particular order; pick the one "
        "that better meets the criteria while being a good answer. " + JUDGE_INSTRUCTIONS
    )
    prompt = f"{criteria}\n\nMessage:\n{pair.message}\n\nAnswer A:\n{pair.a}\n\nAnswer B:\n{pair.b}"
    return LLMRequest(
        messages=[{"role": "user", "content": prompt}],
        system_prefix=system,
        max_tokens=engine.settings.max_review_tokens,
        json_schema=JUDGE_SCHEMA if caps.json_schema else None,
        temperature=engine.settings.reviewer_temperature if caps.temperature else None,
        effort=engine.settings.reviewer_effort if caps.effort else None,
    )


async def _judge_one(
    engine: ReviewEngine, reviewer: ReviewerPersona, criteria: str, pair: Pair, ctx: CallContext
) -> Judgement:
    request = _judge_request(engine, reviewer, criteria, pair)
    purpose = f"judge:{reviewer.name}"

    def unreadable(exc: ValueError, raw: str) -> Judgement:
        logger.warning("judge {} verdict still unreadable ({})", reviewer.name, exc)
        return Judgement(reviewer.name, None, f"unreadable: {exc}", raw)

    def failed(exc: LLMError, raw: str | None) -> Judgement:
        logger.warning("judge {} failed: {}", reviewer.name, exc)
        return Judgement(reviewer.name, None, f"the judge failed: {exc}", raw)

    verdict, usage, calls = await complete_with_repair(
        engine.llm,
        request,
        ctx,
        purpose,
        who=f"judge {reviewer.name}",
        parse=lambda text: parse_judgement(reviewer.name, text),
        instructions=JUDGE_INSTRUCTIONS,
        unreadable=unreadable,
        failed=failed,
    )
    verdict.usage, verdict.calls = usage, calls
    return verdict
