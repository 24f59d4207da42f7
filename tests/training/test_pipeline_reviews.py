"""The review panel gates the data; a stage error is retried with back-off, never without bound.

``Panel`` is the pipeline's LLM double (``PirateWorld``) with the data's reviewers scripted per
reviewer and per inspection (0: the generated data, 1: the data regenerated with the critique).
The training service's own loop (``advance_all``) drives the pipeline, as in the daemon.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from agents.training.jobs import migrations
from agents.training.pipeline import Pipeline, PipelineStore
from agents.training.progress import pipeline_text
from agents.training.runner import JobRunner
from agents.training.service import TrainingService
from bot.core.signing import ButtonSigner
from bot.core.train_commands import TrainCommands, TrainingPrefs
from bot.core.transport import RecordingTransport
from bot.core.types import Incoming, Sender
from memory.db import Database

from .test_pipeline import SPEC, PirateWorld, deps, pirate_examples

APPROVE = {"score": 9, "verdict": "approve", "issues": [], "summary": "fits the spec"}
REJECT = {
    "score": 3,
    "verdict": "revise",
    "issues": [{"severity": "major", "text": "the answers lack the pirate's Arr!"}],
    "summary": "off-voice",
}


@pytest.fixture
def db(tmp_path: Path):
    database = Database.open(tmp_path / "familiar.db", [migrations])
    yield database
    database.close()


def more_examples() -> list[dict[str, str]]:
    """Enough for a generated set and a regenerated one (PirateWorld hands them out in order)."""
    return pirate_examples() + [
        {"user": f"Again: {e['user']}", "assistant": e["assistant"]} for e in pirate_examples()
    ]


class Panel(PirateWorld):
    def __init__(self, verdicts: dict[str, list[dict | str]], **kw: Any) -> None:
        super().__init__(more_examples(), **kw)
        self.verdicts = verdicts  # reviewer -> [first inspection, after regeneration]
        self.review_calls = 0

    def data_review(self, reviewer: str, inspection: int) -> dict | str:
        self.review_calls += 1
        return self.verdicts[reviewer][inspection]


def service(db: Database, pipeline: Pipeline, tmp_path: Path) -> TrainingService:
    return TrainingService(JobRunner(db, tmp_path / "logs"), pipeline)


def run(db: Database, tiny_model: Path, tmp_path: Path, world: PirateWorld, times: int = 1):
    pipeline = Pipeline(deps(db, tiny_model, tmp_path, world))
    pipeline_id = pipeline.start("pirate", "A pirate.")
    loop = service(db, pipeline, tmp_path)
    for _ in range(times):
        asyncio.run(loop.advance_all())
    return pipeline, PipelineStore(db).get(pipeline_id)


def test_rejected_data_is_regenerated_once_with_the_critique(
    db: Database, tiny_model: Path, tmp_path: Path
) -> None:
    panel = {name: [REJECT, APPROVE] for name in ("correctness", "safety", "clarity")}
    world = Panel(panel)
    _, row = run(db, tiny_model, tmp_path, world)
    assert (row["stage"], row["state"]) == ("train", "waiting"), row["error"]
    inspected = row["stages"]["inspect"]["outputs"]
    assert [r["outcome"] for r in inspected["reviews"]] == ["rejected", "approved"]
    # the data writer was given the reviewers' critique, once
    assert len(world.critiques) == 1 and "lack the pirate's Arr!" in world.critiques[0]
    assert inspected["regenerated"]["path"].endswith("regenerated.jsonl")
    trained_on = Path(inspected["train"]).read_text()
    assert "Again: " in trained_on  # the regenerated examples, not the rejected ones


def test_data_rejected_twice_fails_the_stage_with_the_critique(
    db: Database, tiny_model: Path, tmp_path: Path
) -> None:
    world = Panel({name: [REJECT, REJECT] for name in ("correctness", "safety", "clarity")})
    _, row = run(db, tiny_model, tmp_path, world, times=3)
    assert (row["stage"], row["state"]) == ("inspect", "failed")
    assert "the review panel rejected the generated data" in row["error"]
    assert "lack the pirate's Arr!" in row["error"] and "scored the data" not in row["error"]
    assert len(world.critiques) == 1  # regenerated once, not again on later advances
    assert world.review_calls == 6  # 3 reviewers x 2 inspections; nothing after the failure
    reviews = row["stages"]["inspect"]["outputs"]["reviews"]
    assert [r["outcome"] for r in reviews] == ["rejected", "rejected"]
    assert (  # the progress message says where the panel stands
        f"review panel on the data: rejected, mean score 3/10 (review 2); /train status "
        f"{row['id']} has the transcript" in pipeline_text(row).splitlines()
    )


@pytest.mark.parametrize(
    ("scores", "outcome"),
    [
        ((9, 5, 8), "threshold"),  # mean 7.33: at least min_inspection_score 0.7
        ((9, 2, 3), "rejected"),  # mean 4.67
    ],
)
def test_reviewers_who_disagree_decide_by_their_mean_score(
    db: Database, tiny_model: Path, tmp_path: Path, scores: tuple[int, ...], outcome: str
) -> None:
    def verdict(score: int) -> dict:
        return APPROVE | {"score": score} if score >= 8 else REJECT | {"score": score}

    names = ("correctness", "safety", "clarity")
    world = Panel({n: [verdict(s), verdict(s)] for n, s in zip(names, scores, strict=True)})
    _, row = run(db, tiny_model, tmp_path, world)
    first = row["stages"]["inspect"]["outputs"]["reviews"][0]
    assert first["outcome"] == outcome
    assert [r["score"] for r in first["reviews"]] == list(scores)
    if outcome == "threshold":
        assert (row["stage"], row["state"]) == ("train", "waiting"), row["error"]
        assert world.critiques == []
    else:
        assert (row["stage"], row["state"]) == ("inspect", "failed")


def test_unreadable_data_reviews_end_the_stage_instead_of_looping(
    db: Database, tiny_model: Path, tmp_path: Path
) -> None:
    """Valid JSON that is not an object, from every reviewer: each is asked once to repair, the
    review then counts as a rejection; after the one regeneration the pipeline fails."""
    world = Panel({name: ["[]", "[]"] for name in ("correctness", "safety", "clarity")})
    _, row = run(db, tiny_model, tmp_path, world, times=5)
    assert (row["stage"], row["state"]) == ("inspect", "failed")
    assert "unreadable review: []" in row["error"]
    assert world.review_calls == 12  # 3 reviewers x (1 + 1 repair) x 2 inspections, then never


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_malformed_spec_is_retried_with_backoff_then_fails_and_status_says_why(
    db: Database, tiny_model: Path, tmp_path: Path
) -> None:
    """The spec's author answers ``[]``: valid JSON, not an object."""

    class ListSpec(PirateWorld):
        def _answer(self, request: Any) -> str:
            text = super()._answer(request)
            return "[]" if text.startswith("Here is the spec") else text

    world = ListSpec([])
    clock = Clock()
    pipeline = Pipeline(replace(deps(db, tiny_model, tmp_path, world), clock=clock))
    pipeline_id = pipeline.start("pirate", "A pirate.")
    loop = service(db, pipeline, tmp_path)
    store = PipelineStore(db)
    per_attempt = 4  # the draft and three reviews

    asyncio.run(loop.advance_all())
    row = store.get(pipeline_id)
    assert row["state"] == "running" and len(world.requests) == per_attempt
    assert row["error"].startswith("spec: attempt 1 of 3 failed, trying again in 30 s")
    assert "the spec lacks voice, dos, donts, examples, probes" in row["error"]
    for _ in range(3):  # the service polls again and again during the back-off: no model call
        asyncio.run(loop.advance_all())
    assert len(world.requests) == per_attempt
    clock.now += 30
    asyncio.run(loop.advance_all())
    assert len(world.requests) == 2 * per_attempt
    assert "attempt 2 of 3 failed, trying again in 60 s" in store.get(pipeline_id)["error"]
    clock.now += 59
    asyncio.run(loop.advance_all())
    assert len(world.requests) == 2 * per_attempt  # the back-off doubled
    clock.now += 1
    for _ in range(5):
        asyncio.run(loop.advance_all())
        clock.now += 3600
    row = store.get(pipeline_id)
    assert row["state"] == "failed" and len(world.requests) == 3 * per_attempt
    assert row["error"].startswith("spec: the spec lacks") and "(attempt 3 of 3)" in row["error"]

    commands = TrainCommands(
        db,
        pipeline,
        pipeline.d.registry,
        ButtonSigner(b"k" * 32),
        TrainingPrefs(db),
        base_model_set=True,
    )
    admin = Incoming(1, Sender(1, "Ann", is_admin=True), "/train status")
    reply = asyncio.run(commands.train(admin, "status", RecordingTransport()))
    assert f"#{pipeline_id} pirate: spec (failed): spec: the spec lacks" in reply.text
    pipeline.retry(pipeline_id)  # an admin's retry starts with all attempts again
    asyncio.run(loop.advance_all())
    assert "attempt 1 of 3 failed" in store.get(pipeline_id)["error"]


def test_an_unexpected_error_cannot_loop_paid_calls(
    db: Database, tiny_model: Path, tmp_path: Path
) -> None:
    """The near-duplicate check's embedder breaks after the paid data calls: before, the stage
    stayed running and every poll paid for the data again."""

    def broken_embed(texts: list[str]) -> Any:
        raise RuntimeError("the embedding model is not loaded")

    world = PirateWorld(pirate_examples() * 4)
    clock = Clock()
    setup = replace(deps(db, tiny_model, tmp_path, world), clock=clock, embed=broken_embed)
    pipeline = Pipeline(setup)
    pipeline_id = pipeline.start("pirate", "A pirate.")
    loop = service(db, pipeline, tmp_path)
    for _ in range(10):
        asyncio.run(loop.advance_all())
        clock.now += 3600
    row = PipelineStore(db).get(pipeline_id)
    assert (row["stage"], row["state"]) == ("data", "failed")
    assert "RuntimeError: the embedding model is not loaded (attempt 3 of 3)" in row["error"]
    # three attempts of three calls each (the first batch malformed once, then two batches)
    assert world.data_calls == 3 + 2 + 2
    assert row["stages"]["data"]["attempts"] == 3


def test_status_of_one_pipeline_shows_each_review(
    db: Database, tiny_model: Path, tmp_path: Path
) -> None:
    panel = {
        "correctness": [REJECT, APPROVE],
        "safety": [APPROVE, APPROVE],
        "clarity": [REJECT, APPROVE],
    }
    pipeline, row = run(db, tiny_model, tmp_path, Panel(panel))
    commands = TrainCommands(
        db,
        pipeline,
        pipeline.d.registry,
        ButtonSigner(b"k" * 32),
        TrainingPrefs(db),
        base_model_set=True,
    )
    admin = Incoming(1, Sender(1, "Ann", is_admin=True), "/train status 1")
    text = asyncio.run(commands.train(admin, f"status {row['id']}", RecordingTransport())).text
    lines = text.splitlines()
    assert "spec review: approved, mean score 9/10" in lines
    assert "data review: rejected, mean score 5/10" in lines
    assert "  correctness 3 revise: off-voice" in lines
    assert "    [major] the answers lack the pirate's Arr!" in lines
    assert "  safety 9 approve: fits the spec" in lines
    assert "regenerated data review: approved, mean score 9/10" in lines
    missing = asyncio.run(commands.train(admin, "status 99", RecordingTransport())).text
    assert missing == "There is no pipeline #99. /train status lists them."


def test_a_spec_of_the_wrong_shape_stops_before_any_data_is_paid_for(
    db: Database, tiny_model: Path, tmp_path: Path
) -> None:
    world = PirateWorld([], spec={**SPEC, "examples": 3, "probes": ["ok", 7]})
    setup = deps(db, tiny_model, tmp_path, world)
    setup.settings = setup.settings.model_copy(update={"stage_attempts": 1})
    pipeline = Pipeline(setup)
    row = asyncio.run(pipeline.advance(pipeline.start("pirate", "A pirate.")))
    assert (row["stage"], row["state"]) == ("spec", "failed")
    assert 'examples is not a list of {"user", "assistant"} objects' in row["error"]
    assert "probes is not a list of messages" in row["error"]
    assert world.data_calls == 0
