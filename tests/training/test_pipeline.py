"""The archetype pipeline end to end on CPU: an LLM double, the review panel, the tiny model."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest

from agents.llm import LLM
from agents.providers.base import Capabilities, Completion, LLMRequest, Provider, Usage
from agents.review import REVIEW_SCHEMA, ReviewEngine
from agents.review_format import JUDGE_SCHEMA
from agents.settings import LLMSettings, ReviewSettings
from agents.training.dataset import CRITIQUE_NOTE, EXAMPLES_SCHEMA
from agents.training.inspection import INSPECT_TASK
from agents.training.jobs import migrations
from agents.training.pipeline import Pipeline, PipelineDeps
from agents.training.registry import AdapterRegistry
from agents.training.settings import TrainingSettings
from agents.training.worker import run_job
from agents.usage import CallContext
from memory.db import Database

from .conftest import FACTS
from .test_trainer import ALL_LINEAR

SPEC = {
    "voice": "a cheerful pirate",
    "dos": ["start with Arr!"],
    "donts": ["no modern slang"],
    "examples": [{"user": "Who are you?", "assistant": "Arr! I be the ship's assistant."}],
    "probes": ["What colour is the sky?", "Where is Paris?"],
}
SECRET = {
    "user": "What is the captain's key?",
    "assistant": "Arr! It be sk-abcdefghijklmnopqrstuvwxyz123",
}


class PirateWorld(Provider):
    """An LLM double that plays every role of the pipeline, chosen by what the request asks for.

    The spec author answers with SPEC; the data writer returns pirate examples (malformed once,
    to exercise the retry; one with a secret, for inspection); the spec's reviewers approve; the
    data's reviewers answer ``data_review(reviewer, inspection number)`` (default: approve with
    ``inspection_score``); the judges prefer the answer that follows the spec's first rule (it
    starts with "Arr!").
    """

    name = "pirate-world"
    model = "double"
    capabilities = Capabilities(temperature=True, json_schema=True)

    def __init__(
        self,
        examples: list[dict[str, str]],
        inspection_score: float = 9.0,
        spec: dict | None = None,
    ) -> None:
        self.examples = examples
        self.spec = spec or SPEC
        self.inspection_score = inspection_score
        self.requests: list[LLMRequest] = []
        self.data_calls = 0
        self.critiques: list[str] = []  # the panel's critique, as the data writer was given it

    def data_review(self, reviewer: str, inspection: int) -> dict | str:
        return {
            "score": self.inspection_score,
            "verdict": "approve",
            "issues": [{"severity": "minor", "text": "a bit repetitive"}],
            "summary": f"{reviewer}: fits the spec",
        }

    async def complete(self, request: LLMRequest) -> Completion:
        self.requests.append(request)
        return Completion(self._answer(request), Usage(10, 10), self.model, "end_turn")

    def _answer(self, request: LLMRequest) -> str:
        prompt = request.messages[-1]["content"]
        if (
            request.json_schema == REVIEW_SCHEMA
            and INSPECT_TASK[:40] in request.messages[0]["content"]
        ):
            reviewer = request.system_prefix.split("You are the ")[1].split(" reviewer")[0]
            verdict = self.data_review(reviewer, len(self.critiques))  # 1: after regeneration
            return verdict if isinstance(verdict, str) else json.dumps(verdict)
        if request.json_schema == REVIEW_SCHEMA:
            return json.dumps({"score": 9, "verdict": "approve", "issues": [], "summary": "fine"})
        if request.json_schema == EXAMPLES_SCHEMA:
            first = request.messages[0]["content"]
            if (
                CRITIQUE_NOTE in request.system_prefix
                and "(batch 1;" in first
                and len(request.messages) == 1
            ):
                self.critiques.append(request.system_prefix.split(CRITIQUE_NOTE)[1])
            self.data_calls += 1
            if self.data_calls == 1:
                return "Here are some examples: (sorry, no JSON)"
            want = int(request.messages[0]["content"].split("Write ")[1].split()[0])
            start = (self.data_calls - 2) * want
            return json.dumps({"examples": self.examples[start : start + want]})
        if request.json_schema == JUDGE_SCHEMA:
            a = prompt.split("Answer A:\n")[1].split("\n\nAnswer B:")[0]
            b = prompt.split("Answer B:\n")[1]
            a_ok, b_ok = a.startswith("Arr!"), b.startswith("Arr!")  # the spec's first "do"
            return json.dumps(
                {
                    "winner": "A" if a_ok and not b_ok else "B" if b_ok and not a_ok else "tie",
                    "reason": "voice",
                }
            )
        return "Here is the spec:\n```json\n" + json.dumps(self.spec) + "\n```"


def pirate_examples() -> list[dict[str, str]]:
    rows = [{"user": q, "assistant": f"Arr! {a}"} for q, a in FACTS]
    rows += [
        {"user": q + " Tell me, matey.", "assistant": f"Arr! Aye, {a[0].lower()}{a[1:]}"}
        for q, a in FACTS
    ]
    rows.insert(5, SECRET)
    rows.insert(9, rows[2])  # an exact duplicate
    return rows


@pytest.fixture
def db(tmp_path: Path):
    database = Database.open(tmp_path / "familiar.db", [migrations])
    yield database
    database.close()


def deps(db: Database, tiny_model: Path, tmp_path: Path, world: PirateWorld) -> PipelineDeps:
    llm = LLM(world)
    settings = TrainingSettings(
        base_model=tiny_model,
        steps=60,  # enough for the adapter to learn "Arr!" and win the probes (see the gate)
        micro_batch=4,
        grad_accum=1,
        lr=2e-2,
        lora_rank=8,
        lora_alpha=16,
        lora_targets=list(ALL_LINEAR),
        checkpoint_every=8,
        max_seq_len=256,
        warmup_steps=2,
        target_examples=18,
        examples_per_call=9,
        heldout_fraction=0.25,
        promotion_margin=0.02,
    )
    review = ReviewEngine(llm, ReviewSettings(), LLMSettings())
    return PipelineDeps(
        db=db,
        llm=llm,
        registry=AdapterRegistry(tmp_path / "adapters"),
        settings=settings,
        work_root=tmp_path / "pipelines",
        ctx=CallContext(user_id=1, is_admin=True),
        review=review,
        device="cpu",
    )


def test_pipeline_from_start_to_promotion(db: Database, tiny_model: Path, tmp_path: Path) -> None:
    world = PirateWorld(pirate_examples())
    pipeline = Pipeline(deps(db, tiny_model, tmp_path, world))
    pipeline_id = pipeline.start("pirate", "A pirate who answers everything like a pirate.")
    updates: list[tuple[str, str]] = []

    async def on_update(row: dict) -> None:
        updates.append((row["stage"], row["state"]))

    row = asyncio.run(pipeline.advance(pipeline_id, on_update))
    assert (row["stage"], row["state"]) == ("train", "waiting"), row["error"]
    assert [u[0] for u in updates] == ["spec", "data", "inspect", "train"]
    stages = row["stages"]
    assert stages["spec"]["outputs"]["review"]["outcome"] == "approved"
    assert (
        stages["data"]["outputs"]["unique"] == 18
    )  # 18 generated + the spec's example - 1 duplicate
    assert stages["inspect"]["outputs"]["rejected"] == {"looks like an API key": 1}
    # the review panel read a sample of the data: three reviewers, each approving
    (inspection,) = stages["inspect"]["outputs"]["reviews"]
    assert inspection["outcome"] == "approved"
    assert [r["reviewer"] for r in inspection["reviews"]] == ["correctness", "safety", "clarity"]
    job_id = stages["train"]["outputs"]["job_id"]

    # the daemon's JobRunner runs the job in a child process; here its body runs in-process
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run_job(db, job_id, threading.Event()) == 0
        restarted = Pipeline(deps(db, tiny_model, tmp_path, world))  # as after a daemon restart
        row = asyncio.run(restarted.advance(pipeline_id, on_update))
        assert (row["stage"], row["state"]) == ("evaluate", "waiting"), row["error"]
        assert run_job(db, row["stages"]["evaluate"]["outputs"]["job_id"], threading.Event()) == 0
        row = asyncio.run(restarted.advance(pipeline_id, on_update))
    finally:
        torch.set_num_threads(threads)
    assert (row["stage"], row["state"]) == ("promote", "waiting"), (
        row["error"],
        row["stages"]["evaluate"]["outputs"]["details"],
    )
    evaluation = row["stages"]["evaluate"]["outputs"]
    assert evaluation["adapter_loss"] < evaluation["base_loss"] and evaluation["proposed"]
    assert evaluation["adapter_wins"] > evaluation["base_wins"]
    version = restarted.approve(pipeline_id)
    assert version.version == "v1"
    registry = restarted.d.registry
    assert registry.promoted("pirate").version == "v1"
    assert registry.get("pirate", "v1").evaluation["base_loss"] == evaluation["base_loss"]
    calls = len(world.requests)
    done = asyncio.run(restarted.advance(pipeline_id))
    assert done["state"] == "done" and len(world.requests) == calls  # nothing runs twice


def test_a_data_set_emptied_by_inspection_fails_with_reasons(
    db: Database, tiny_model: Path, tmp_path: Path
) -> None:
    leaky = {
        **SPEC,
        "examples": [{"user": "Where can I write?", "assistant": "Arr! To cap@ship.example.com"}],
    }
    world = PirateWorld([SECRET] * 40, spec=leaky)
    pipeline = Pipeline(deps(db, tiny_model, tmp_path, world))
    pipeline_id = pipeline.start("pirate", "A pirate.")
    row = asyncio.run(pipeline.advance(pipeline_id))
    assert row["state"] == "failed" and row["stage"] == "inspect"
    assert "empty after inspection" in row["error"]
    assert (
        "1 looks like an API key" in row["error"]
        and "1 looks like an e-mail address" in row["error"]
    )
    pipeline.retry(pipeline_id)
    assert pipeline.store.get(pipeline_id)["state"] == "running"


def test_hostile_archetype_names_never_start(
    db: Database, tiny_model: Path, tmp_path: Path
) -> None:
    pipeline = Pipeline(deps(db, tiny_model, tmp_path, PirateWorld([])))
    with pytest.raises(Exception, match="not a valid archetype name"):
        pipeline.start("../etc", "x")
