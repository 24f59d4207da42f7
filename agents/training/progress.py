"""Progress as text: one message per pipeline or job, edited in place as it moves.

Pure functions of the stored rows, so the Telegram message, ``familiar train status`` and the
console all say the same thing.
"""

from __future__ import annotations

from typing import Any

STAGES = ("spec", "data", "inspect", "train", "evaluate", "promote")
STATE_MARK = {"running": "⏳", "waiting": "⏸", "done": "✅", "failed": "❌", "cancelled": "⛔"}


def duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def bar(fraction: float, width: int = 12) -> str:
    filled = round(min(max(fraction, 0.0), 1.0) * width)
    return "▓" * filled + "░" * (width - filled)


def job_line(progress: dict[str, Any] | None) -> str:
    if not progress:
        return "starting…"
    fraction = progress["step"] / max(progress["total_steps"], 1)
    return (
        f"{bar(fraction)} {fraction:.0%}  step {progress['step']}/{progress['total_steps']}  "
        f"loss {progress['loss']:.3f}  {progress['tokens_per_s']:.0f} tok/s  ETA {duration(progress['eta_s'])}"
    )


def pipeline_text(row: dict[str, Any], job_progress: dict[str, Any] | None = None) -> str:
    """The pipeline's message: archetype, stage n/6, a bar, and the training job's line."""
    stage = row["stage"]
    number = STAGES.index(stage) + 1 if stage in STAGES else 0
    lines = [
        f"{STATE_MARK.get(row['state'], '')} {row['archetype']}: stage {number}/{len(STAGES)} {stage} "
        f"({row['state']})",
        "stages " + bar((number - (0 if row["state"] == "done" else 1)) / len(STAGES)),
    ]
    if stage == "train" and row["state"] in ("running", "waiting"):
        lines.append("steps  " + job_line(job_progress or row.get("job_progress")))
    stages = row.get("stages") or {}
    if stage in ("spec", "inspect"):  # the panel's latest word, while it decides
        outputs = (stages.get(stage) or {}).get("outputs") or {}
        reviews = outputs.get("reviews") or ([outputs["review"]] if outputs.get("review") else [])
        if reviews:
            latest, what = reviews[-1], "spec" if stage == "spec" else "data"
            where = f"; /train status {row['id']} has the transcript" if "id" in row else ""
            score = latest.get("mean_score")
            lines.append(
                f"review panel on the {what}: {latest.get('outcome')}"
                + (f", mean score {score:g}/10" if isinstance(score, int | float) else "")
                + f" (review {len(reviews)}){where}"
            )
    evaluated = (stages.get("evaluate") or {}).get("outputs") or {}
    if "adapter_loss" in evaluated:
        lines.append(
            f"held-out loss {evaluated['adapter_loss']:.3f} vs base {evaluated['base_loss']:.3f}; "
            f"probes won {evaluated['adapter_wins']}, lost {evaluated['base_wins']}, "
            f"tied {evaluated.get('ties', 0)}"
        )
    if row.get("error"):
        lines.append(str(row["error"]))
    return "\n".join(lines)


def _review_block(title: str, review: dict[str, Any]) -> list[str]:
    run = f", review run #{review['run_id']}" if review.get("run_id") else ""
    score = review.get("mean_score", review.get("score"))
    head = f"{title}: {review.get('outcome', '?')}"
    if score is not None:
        head += f", mean score {score:g}/10"
    lines = [head + run]
    for r in review.get("reviews") or []:
        verdict = "approve" if r.get("approve") else "revise"
        lines.append(
            f"  {r['reviewer']} {r['score']:g} {verdict}: {r.get('summary') or ''}".rstrip()
        )
        lines += [f"    {issue}" for issue in (r.get("issues") or [])[:5]]
    return lines


def _clip(text: Any, width: int = 60) -> str:
    one_line = " ".join(str(text).split())
    return one_line if len(one_line) <= width else one_line[: width - 1] + "…"


def review_lines(row: dict[str, Any]) -> list[str]:
    """The transcript of every review of the pipeline: who reviewed the spec and the data, with
    their scores and issues, and each probe's blind judgement with every vote."""
    stages = row.get("stages") or {}

    def outputs(stage: str) -> dict[str, Any]:
        return (stages.get(stage) or {}).get("outputs") or {}

    lines: list[str] = []
    if outputs("spec").get("review"):
        lines += _review_block("spec review", outputs("spec")["review"])
    for n, review in enumerate(outputs("inspect").get("reviews") or []):
        lines += _review_block("data review" if n == 0 else "regenerated data review", review)
    evaluated = outputs("evaluate")
    if evaluated.get("details"):
        run = f", review run #{evaluated['judging_run']}" if evaluated.get("judging_run") else ""
        lines.append(
            f"probes judged blind: adapter won {evaluated['adapter_wins']}, base won "
            f"{evaluated['base_wins']}, ties {evaluated.get('ties', 0)}, unreadable votes "
            f"{evaluated.get('unreadable_votes', 0)}{run}; "
            + ("proposed" if evaluated.get("proposed") else "not proposed")
        )
        for d in evaluated["details"]:
            votes = ", ".join(f"{k} {v}" for k, v in (d.get("votes") or {}).items())
            note = d.get("note") or votes or "no votes"
            lines.append(f"  {_clip(d['probe'])}: {d.get('winner', '?')} ({note})")
    return lines
