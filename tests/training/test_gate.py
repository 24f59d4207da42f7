"""The promotion gate: the review panel judges the probes blind, and only a better adapter passes.

Each test starts a pipeline at its evaluate stage, with the evaluation job already done (its
losses and probe answers given here, the adapter a directory of stand-in files): what is under
test is the judging, the rule, the registry add and what ``/train status`` shows, not the model.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from agents.llm import LLM
from agents.providers.base import LLMRequest, Provider
from agents.providers.fake import FakeProvider
from agents.review import ReviewEngine
from agents.review_format import JUDGE_SCHEMA
from agents.settings import LLMSettings, ReviewSettings
from agents.training.jobs import JobQueue, migrations
from agents.training.pipeline import Pipeline, PipelineDeps, PipelineStore
from agents.training.progress import review_lines
from agents.training.registry import AdapterRegistry
from agents.training.settings import TrainingSettings
from agents.usage import CallContext
from memory.db import Database

from .test_pipeline import SPEC, PirateWorld

PROBES = SPEC["probes"]  # two
PIRATE = ["Arr! The sky be blue.", "Arr! Paris be in France."]
PLAIN = ["The sky is blue.", "Paris is in France."]


class Judges(PirateWorld):
    """Each judge of the panel by its own policy: ``arr`` prefers the answer that starts with
    "Arr!" (the spec's first rule), ``plain`` the other, ``tie`` neither, ``garbage`` answers
    prose, ``repairable`` answers prose first and the JSON when asked to repair."""

    def __init__(self, policies: dict[str, str]) -> None:
        super().__init__([])
        self.policies = policies

    def _answer(self, request: LLMRequest) -> str:
        if request.json_schema != JUDGE_SCHEMA:
            return super()._answer(request)
        judge = request.system_prefix.split("You are the ")[1].split(" judge")[0]
        policy = self.policies[judge]
        if policy == "garbage" or (policy == "repairable" and len(request.messages) == 1):
            return "Both answers have merit; I could not possibly choose."
        if policy == "tie":
            return json.dumps({"winner": "tie", "reason": "alike"})
        prompt = request.messages[0]["content"]
        a = prompt.split("Answer A:\n")[1].split("\n\nAnswer B:")[0]
        pirate_is_a = a.startswith("Arr!")
        wants_pirate = policy in ("arr", "repairable")
        return json.dumps(
            {"winner": "A" if pirate_is_a == wants_pirate else "B", "reason": "voice"}
        )

    def judge_calls(self) -> int:
        return sum(r.json_schema == JUDGE_SCHEMA for r in self.requests)


def panel(policy: str) -> dict[str, str]:
    return {name: policy for name in ("correctness", "safety", "clarity")}


@pytest.fixture
def db(tmp_path: Path):
    database = Database.open(tmp_path / "familiar.db", [migrations])
    yield database
    database.close()


def at_evaluate(
    db: Database,
    tmp_path: Path,
    provider: Provider,
    answers: dict[str, list[Any]],
    losses: tuple[float, float] = (2.0, 1.5),
) -> tuple[Pipeline, int]:
    """A pipeline whose evaluation job has measured ``losses`` (base, adapter) and ``answers``."""
    store, jobs = PipelineStore(db), JobQueue(db)
    pipeline_id = store.create("pirate", "A pirate.")
    adapter = tmp_path / "train" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_model.safetensors").write_bytes(b"lora weights")
    (adapter / "adapter_config.json").write_text("{}")

    def finished_job(config: dict[str, Any], result: dict[str, Any]) -> int:
        job_id = jobs.enqueue(config, pipeline_id)
        assert jobs.claim(job_id)
        jobs.succeed(job_id, result)
        return job_id

    train_job = finished_job({"steps": 1}, {"adapter_dir": str(adapter), "losses": [1.0]})
    store.stage(pipeline_id, "spec", "done", outputs={"spec": SPEC})
    store.stage(pipeline_id, "data", "done", outputs={})
    store.stage(pipeline_id, "inspect", "done", outputs={"heldout": "heldout.jsonl"})
    store.stage(
        pipeline_id, "train", "done", outputs={"job_id": train_job, "adapter_dir": str(adapter)}
    )
    base_loss, adapter_loss = losses
    evaluation = finished_job(
        {"kind": "evaluate"},
        {"base_loss": base_loss, "adapter_loss": adapter_loss, "answers": answers},
    )
    store.stage(pipeline_id, "evaluate", "waiting", outputs={"job_id": evaluation})
    store.set(pipeline_id, state="waiting", stage="evaluate")
    llm = LLM(provider)
    deps = PipelineDeps(
        db=db,
        llm=llm,
        registry=AdapterRegistry(tmp_path / "adapters"),
        settings=TrainingSettings(promotion_margin=0.05),
        work_root=tmp_path / "work",
        ctx=CallContext(user_id=1, is_admin=True),
        review=ReviewEngine(llm, ReviewSettings(), LLMSettings()),
    )
    return Pipeline(deps), pipeline_id


def evaluate(pipeline: Pipeline, pipeline_id: int) -> tuple[dict[str, Any], dict[str, Any]]:
    row = asyncio.run(pipeline.advance(pipeline_id))
    return row, row["stages"]["evaluate"]["outputs"]


def test_judges_who_prefer_the_adapter_propose_it(db: Database, tmp_path: Path) -> None:
    judges = Judges(panel("arr"))
    pipeline, pid = at_evaluate(db, tmp_path, judges, {"base": PLAIN, "adapter": PIRATE})
    row, result = evaluate(pipeline, pid)
    assert (row["stage"], row["state"]) == ("promote", "waiting"), row["error"]
    assert (result["adapter_wins"], result["base_wins"], result["ties"]) == (2, 0, 0)
    assert result["proposed"] and judges.judge_calls() == 6  # 3 judges x 2 probes
    # blind: no judge was told which answer is the adapter's
    assert not any("adapter" in r.messages[0]["content"].lower() for r in judges.requests)
    assert pipeline.d.registry.get("pirate", "v1").evaluation["proposed"]


def test_judges_who_prefer_the_base_model_do_not(db: Database, tmp_path: Path) -> None:
    pipeline, pid = at_evaluate(
        db, tmp_path, Judges(panel("arr")), {"base": PIRATE, "adapter": PLAIN}
    )
    row, result = evaluate(pipeline, pid)
    assert (result["adapter_wins"], result["base_wins"]) == (0, 2) and not result["proposed"]
    assert (row["stage"], row["state"]) == ("promote", "failed")
    assert "probes 0 won / 2 lost / 0 tied" in row["error"]


def test_ties_never_let_an_adapter_through(db: Database, tmp_path: Path) -> None:
    pipeline, pid = at_evaluate(
        db, tmp_path, Judges(panel("tie")), {"base": PLAIN, "adapter": PIRATE}
    )
    row, result = evaluate(pipeline, pid)
    assert (result["adapter_wins"], result["base_wins"], result["ties"]) == (0, 0, 2)
    assert not result["proposed"] and row["state"] == "failed"


def test_unreadable_judgements_are_retried_once_then_count_against_the_adapter(
    db: Database, tmp_path: Path
) -> None:
    # a scripted model that only ever answers prose, to every judge and every repair request
    garbage = FakeProvider(["I cannot decide."] * 12)
    pipeline, pid = at_evaluate(db, tmp_path, garbage, {"base": PLAIN, "adapter": PIRATE})
    row, result = evaluate(pipeline, pid)
    assert len(garbage.requests) == 12  # 3 judges x 2 probes x (1 + 1 repair)
    assert (result["adapter_wins"], result["base_wins"]) == (0, 2)
    assert result["unreadable_votes"] == 6 and not result["proposed"]
    assert row["state"] == "failed"


def test_a_judgement_repaired_on_the_second_ask_counts(db: Database, tmp_path: Path) -> None:
    judges = Judges(panel("repairable"))
    pipeline, pid = at_evaluate(db, tmp_path, judges, {"base": PLAIN, "adapter": PIRATE})
    row, result = evaluate(pipeline, pid)
    assert judges.judge_calls() == 12 and result["unreadable_votes"] == 0
    assert result["adapter_wins"] == 2 and result["proposed"]


@pytest.mark.parametrize("empty", ["", "   ", None])
def test_empty_adapter_answers_lose_their_probes(
    db: Database, tmp_path: Path, empty: str | None
) -> None:
    judges = Judges(panel("arr"))
    pipeline, pid = at_evaluate(
        db, tmp_path, judges, {"base": PLAIN, "adapter": [empty, PIRATE[1]]}
    )
    row, result = evaluate(pipeline, pid)
    assert (result["adapter_wins"], result["base_wins"]) == (1, 1) and not result["proposed"]
    assert judges.judge_calls() == 3  # only the probe with two answers went to the judges
    assert result["details"][0]["winner"] == "base"


def test_judges_who_disagree_decide_each_probe_by_majority(db: Database, tmp_path: Path) -> None:
    judges = Judges({"correctness": "arr", "safety": "plain", "clarity": "arr"})
    pipeline, pid = at_evaluate(db, tmp_path, judges, {"base": PLAIN, "adapter": PIRATE})
    row, result = evaluate(pipeline, pid)
    assert (result["adapter_wins"], result["base_wins"]) == (2, 0) and result["proposed"]
    assert result["details"][0]["votes"] == {
        "correctness": "adapter",
        "safety": "base",
        "clarity": "adapter",
    }
    lines = review_lines(row)
    assert "probes judged blind: adapter won 2, base won 0, ties 0, unreadable votes 0" in lines[0]
    assert (
        "What colour is the sky?: adapter (correctness adapter, safety base, clarity adapter)"
        in (lines[1])
    )


def test_a_loss_short_of_the_margin_is_not_proposed(db: Database, tmp_path: Path) -> None:
    pipeline, pid = at_evaluate(
        db,
        tmp_path,
        Judges(panel("arr")),
        {"base": PLAIN, "adapter": PIRATE},
        losses=(2.0, 1.98),  # 1 %, the margin is 5 %
    )
    row, result = evaluate(pipeline, pid)
    assert result["adapter_wins"] == 2 and not result["proposed"]


class Crash(BaseException):
    """The daemon killed between the registry add and the write that marks the stage done."""


class CrashBeforeDone(Pipeline):
    async def _done(self, pipeline_id: int, stage: str, inputs: Any, outputs: Any) -> None:
        if stage == "evaluate":
            raise Crash
        await super()._done(pipeline_id, stage, inputs, outputs)


def test_a_crash_before_evaluate_is_recorded_adds_no_second_version(
    db: Database, tmp_path: Path
) -> None:
    pipeline, pid = at_evaluate(
        db, tmp_path, Judges(panel("arr")), {"base": PLAIN, "adapter": PIRATE}
    )
    with pytest.raises(Crash):
        asyncio.run(CrashBeforeDone(pipeline.d).advance(pid))
    registry = pipeline.d.registry
    assert [v.version for v in registry.versions("pirate")] == ["v1"]
    assert PipelineStore(db).get(pid)["stages"]["evaluate"]["state"] != "done"
    row, result = evaluate(Pipeline(pipeline.d), pid)  # the restarted daemon runs it again
    assert [v.version for v in registry.versions("pirate")] == ["v1"]
    assert result["version"] == "v1" and (row["stage"], row["state"]) == ("promote", "waiting")
