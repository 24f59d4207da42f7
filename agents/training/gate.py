"""The promotion gate: the review panel judges the probes blind, then one rule decides.

The evaluation job (``agents.training.evaluate``) measures the held-out loss with and without the
adapter and answers each probe with both. Here:

- an empty answer (or one that is not text) loses its probe without asking anyone; both empty
  is a tie;
- every other probe goes to every reviewer of the panel (``agents.review_verdicts.judge``) as
  answers A and B, in a seeded random order, never saying which is the adapter's; an unreadable
  verdict gets one repair request, then counts as a vote for the base model;
- a probe goes to the side with more votes; equal votes are a tie;
- the adapter is proposed only when the held-out loss improves by at least the margin *and* it
  wins more probes than the base model. Ties and unreadable judgements never let it through.

An admin then promotes or rejects it; the gate only proposes.
"""

from __future__ import annotations

import json
import random
from typing import Any

from agents.review import ReviewEngine
from agents.review_verdicts import Pair, judge
from agents.usage import CallContext

CRITERIA = (
    "The persona spec the answers should follow:\n{spec}\n\n"
    "Pick the answer that better fits the persona (voice, do's and don'ts)."
)


def readable(answer: Any) -> bool:
    return isinstance(answer, str) and bool(answer.strip())


async def judge_probes(
    engine: ReviewEngine,
    ctx: CallContext,
    spec: dict[str, Any],
    probes: list[str],
    base: list[Any],
    adapter: list[Any],
    seed: int = 0,
) -> dict[str, Any]:
    """Wins, losses and ties of the adapter over the probes, with every vote and the transcript's
    ``review_runs`` id."""
    rng = random.Random(seed)
    winners: list[str] = ["tie"] * len(probes)
    details: list[dict[str, Any]] = []
    pairs: list[Pair] = []
    judged: list[tuple[int, bool]] = []  # (probe index, adapter shown first)
    for i, (probe, b, a) in enumerate(zip(probes, base, adapter, strict=True)):
        details.append({"probe": probe, "base": b, "adapter": a, "votes": {}})
        if not (readable(a) and readable(b)):
            winners[i] = (
                "tie" if readable(a) == readable(b) else "adapter" if readable(a) else "base"
            )
            details[i]["note"] = "an empty answer loses its probe"
            continue
        adapter_first = rng.random() < 0.5
        pairs.append(Pair(probe, a, b) if adapter_first else Pair(probe, b, a))
        judged.append((i, adapter_first))
    run_id, unreadable = None, 0
    if pairs:
        judging = await judge(
            engine, CRITERIA.format(spec=json.dumps(spec, ensure_ascii=False)), pairs, ctx
        )
        run_id = judging.run_id
        for (i, adapter_first), verdicts in zip(judged, judging.judgements, strict=True):
            tally = {"adapter": 0, "base": 0}
            for v in verdicts:
                if v.winner is None:  # unreadable even after a repair: against the adapter
                    side, unreadable = "base", unreadable + 1
                    details[i]["votes"][v.reviewer] = "unreadable (counts for base)"
                elif v.winner == "tie":
                    details[i]["votes"][v.reviewer] = "tie"
                    continue
                else:
                    side = "adapter" if (v.winner == "A") == adapter_first else "base"
                    details[i]["votes"][v.reviewer] = side
                tally[side] += 1
            winners[i] = (
                "adapter"
                if tally["adapter"] > tally["base"]
                else "base"
                if tally["base"] > tally["adapter"]
                else "tie"
            )
    for i, w in enumerate(winners):
        details[i]["winner"] = w
    return {
        "adapter_wins": winners.count("adapter"),
        "base_wins": winners.count("base"),
        "ties": winners.count("tie"),
        "unreadable_votes": unreadable,
        "judging_run": run_id,
        "details": details,
    }


def decide(
    base_loss: float, adapter_loss: float, judged: dict[str, Any], margin: float
) -> dict[str, Any]:
    """The gate's rule on the measured losses and the judged probes (see the module docstring)."""
    improvement = (base_loss - adapter_loss) / base_loss if base_loss > 0 else 0.0
    proposed = improvement >= margin and judged["adapter_wins"] > judged["base_wins"]
    return {"improvement": improvement, "margin": margin, "proposed": proposed}
