"""What the reviewers of the review engine are asked, and what their replies and runs become.

The review schema and the prompts of ``agents.review.ReviewEngine`` (self-critique, refine,
revise, repair), the ``Review`` a reviewer's reply becomes, the ``Round`` and ``ReviewResult``
(with its transcript) a run produces, ``parse_review`` (tolerant of prose and fences around the
JSON; raising ValueError with what to repair), the combined critique a revision is given, and
the same for a blind A/B judgement. Split from the engine's loop so each module holds one concern.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from agents.providers.base import Usage, extract_json
from agents.settings import ReviewerPersona

Severity = Literal["minor", "major", "critical"]

REVIEW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "score": {"type": "integer", "description": "0 (unusable) to 10 (excellent)"},
        "verdict": {"type": "string", "enum": ["approve", "revise"]},
        "issues": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "severity": {"type": "string", "enum": ["minor", "major", "critical"]},
                    "text": {"type": "string"},
                },
                "required": ["severity", "text"],
                "additionalProperties": False,
            },
        },
        "summary": {"type": "string"},
    },
    "required": ["score", "verdict", "issues", "summary"],
    "additionalProperties": False,
}
JSON_INSTRUCTIONS = (
    'Reply with only a JSON object: {"score": 0-10, "verdict": "approve" or "revise", '
    '"issues": [{"severity": "minor"|"major"|"critical", "text": "..."}], "summary": "..."}. '
    "Approve only when nothing of substance needs changing; list concrete issues, not praise."
)
SELF_CRITIQUE = (
    "Critique your answer above as a strict reviewer: errors, omissions, unclear parts, risks. "
)
# With a schema enforced by the provider, the format needs no description: fewer tokens per call.
SCHEMA_NOTE = (
    "Reply in the JSON schema given; approve only when nothing of substance needs changing."
)
REFINE = (
    "Rewrite your answer, fixing every issue in the critique above. Reply with the improved "
    "answer only, with no mention of the critique."
)
REVISE = (
    "Reviewers of your answer above raised these issues:\n\n{critique}\n\n"
    "Revise your answer to address them. Reply with the revised answer only."
)
REPAIR = "That reply was not the JSON asked for ({error}). "  # + JSON_INSTRUCTIONS, unformatted
SELF = ReviewerPersona(name="self", focus="the answer's own weaknesses", rubric="")


@dataclass
class Issue:
    severity: Severity
    text: str


@dataclass
class Review:
    reviewer: str
    score: float
    approve: bool
    issues: list[Issue]
    summary: str = ""
    raw: str | None = None  # the unreadable output, when malformed
    malformed: bool = False
    usage: Usage = field(default_factory=Usage)
    calls: int = 1

    @property
    def clean(self) -> bool:
        """Approved with nothing of substance left: no major or critical issue."""
        return self.approve and not any(i.severity != "minor" for i in self.issues)


@dataclass
class Round:
    number: int
    draft: str
    draft_usage: Usage
    reviews: list[Review] = field(default_factory=list)

    @property
    def mean_score(self) -> float:
        return sum(r.score for r in self.reviews) / len(self.reviews) if self.reviews else 0.0


@dataclass
class ReviewResult:
    kind: Literal["three_pass", "panel", "assessment"]
    task: str
    final: str
    # three_pass: clean | refined; panel: approved | threshold | max_rounds;
    # assessment (``agents.review_verdicts``): approved | threshold | rejected
    outcome: str
    rounds: list[Round]
    usage: Usage
    calls: int
    refine_usage: Usage | None = None
    run_id: int | None = None

    def transcript(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "task": self.task,
            "final": self.final,
            "outcome": self.outcome,
            "calls": self.calls,
            "usage": self.usage.as_dict(),
            "refine_usage": self.refine_usage.as_dict() if self.refine_usage else None,
            "rounds": [
                {
                    "number": r.number,
                    "draft": r.draft,
                    "draft_usage": r.draft_usage.as_dict(),
                    "mean_score": round(r.mean_score, 2),
                    "reviews": [asdict(v) | {"usage": v.usage.as_dict()} for v in r.reviews],
                }
                for r in self.rounds
            ],
        }


def parse_review(reviewer: str, text: str) -> Review:
    """A Review from model output (prose or fences around the JSON are tolerated).

    Raises ValueError saying what is wrong, for the repair request.
    """
    data = extract_json(text)
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    verdict = str(data.get("verdict", "")).lower()
    if verdict not in ("approve", "revise"):
        raise ValueError('"verdict" must be "approve" or "revise"')
    try:
        score = float(data["score"])
    except (KeyError, TypeError, ValueError):
        raise ValueError('"score" must be a number from 0 to 10') from None
    issues = []
    for item in data.get("issues") or []:
        if isinstance(item, dict) and item.get("text"):
            given = item.get("severity")
            severity: Literal["minor", "major", "critical"] = (
                given if given in ("minor", "major", "critical") else "major"
            )
            issues.append(Issue(severity, str(item["text"])))
        elif isinstance(item, str) and item.strip():
            issues.append(Issue("major", item))
    return Review(
        reviewer,
        min(max(score, 0.0), 10.0),
        verdict == "approve",
        issues,
        str(data.get("summary") or ""),
    )


def combined_critique(reviews: list[Review]) -> str:
    lines = []
    for r in reviews:
        head = f"{r.reviewer} (score {r.score:g}, {'approve' if r.approve else 'revise'})"
        if r.malformed:
            lines.append(f"- {head}: unreadable review: {(r.raw or '')[:500]}")
            continue
        lines.append(f"- {head}: {r.summary}".rstrip(": "))
        lines += [f"  - [{i.severity}] {i.text}" for i in r.issues]
    return "\n".join(lines)


# -- blind pairwise judgement (``agents.review_verdicts.judge``) -----------------------------
Winner = Literal["A", "B", "tie"]
JUDGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "winner": {"type": "string", "enum": ["A", "B", "tie"]},
        "reason": {"type": "string"},
    },
    "required": ["winner", "reason"],
    "additionalProperties": False,
}
JUDGE_INSTRUCTIONS = (
    'Reply with only a JSON object: {"winner": "A" or "B" or "tie", "reason": "..."}. '
    "Say tie only when neither answer is better."
)


@dataclass
class Judgement:
    """One judge's pick between answers A and B; ``winner`` None when the reply stayed unreadable
    after one repair request (``raw`` holds it)."""

    reviewer: str
    winner: Winner | None
    reason: str = ""
    raw: str | None = None
    usage: Usage = field(default_factory=Usage)
    calls: int = 1


def parse_judgement(reviewer: str, text: str) -> Judgement:
    """A Judgement from model output; ValueError says what is wrong, for the repair request."""
    data = extract_json(text)
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    winner = str(data.get("winner", "")).strip()
    if winner.lower() == "tie":
        winner = "tie"
    if winner not in ("A", "B", "tie"):
        raise ValueError('"winner" must be "A", "B" or "tie"')
    return Judgement(reviewer, winner, str(data.get("reason") or ""))  # type: ignore[arg-type]
