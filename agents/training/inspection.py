"""Data inspection's panel review: the reviewers read a sample of the data against the spec.

The rules (``dataset.inspect``: length, language, secrets, personal data) drop single examples;
the review panel then judges the set. A seeded sample goes to every reviewer of the panel through
the review engine (``agents.review_verdicts.assess``), each scoring it 0-10 against the spec with
their own focus. The set passes when every reviewer approves it cleanly, or when their mean score
reaches ``min_inspection_score``; otherwise it is rejected with the reviewers' combined critique.
What the pipeline does on a rejection (regenerate once with the critique, then fail) is in
``Pipeline._inspect``.
"""

from __future__ import annotations

import json
import random
from typing import Any

from agents.review import ReviewEngine, ReviewResult
from agents.review_verdicts import assess
from agents.training.dataset import Conversation
from agents.usage import CallContext

INSPECT_TASK = (
    "Judge a sample of generated training data for a chat-assistant persona against its spec. "
    "Each line of the sample is one example conversation as JSON. Score 0-10 how fit the set is "
    "to train the persona on: the voice, the do's and don'ts, the quality and variety of the "
    "answers, and safety (no secrets, no real people's personal data). Approve only a set fit to "
    "train on; name concrete problems, quoting the examples that show them.\n\n"
    "The persona spec:\n{spec}"
)


def sample(kept: list[Conversation], size: int, seed: int) -> list[Conversation]:
    """Up to ``size`` examples drawn without replacement, the same for the same seed."""
    if len(kept) <= size:
        return list(kept)
    return random.Random(seed).sample(kept, size)


async def review_data(
    engine: ReviewEngine,
    ctx: CallContext,
    spec: dict[str, Any],
    kept: list[Conversation],
    *,
    size: int,
    seed: int,
    min_score: float,
) -> ReviewResult:
    """The panel's assessment of a sample of ``kept``; ``min_score`` is 0-1 (the mean score
    over 10 that passes a set not every reviewer approved)."""
    shown = sample(kept, size, seed)
    subject = "\n".join(json.dumps({"messages": c}, ensure_ascii=False) for c in shown)
    task = INSPECT_TASK.format(spec=json.dumps(spec, ensure_ascii=False))
    return await assess(engine, task, subject, ctx.for_("train:inspect"), threshold=min_score * 10)
