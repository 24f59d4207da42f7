"""The daemon's training service drives jobs and pipelines; progress text for the bot."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from agents.training.jobs import JobQueue, migrations
from agents.training.pipeline import Pipeline, PipelineDeps, PipelineStore
from agents.training.progress import pipeline_text
from agents.training.registry import AdapterRegistry
from agents.training.runner import JobRunner
from agents.training.service import TrainingService
from agents.training.settings import TrainingSettings
from memory.db import Database


@pytest.fixture
def db(tmp_path: Path):
    database = Database.open(tmp_path / "familiar.db", [migrations])
    yield database
    database.close()


def test_service_runs_the_job_and_the_pipeline_records_its_failure(
    db: Database, tmp_path: Path
) -> None:
    store = PipelineStore(db)
    pipeline_id = store.create("pirate", "A pirate.")
    for stage in ("spec", "data", "inspect"):
        store.stage(pipeline_id, stage, "done", outputs={})
    job_id = JobQueue(db).enqueue({"steps": 1}, pipeline_id)
    store.stage(pipeline_id, "train", "waiting", outputs={"job_id": job_id})
    store.set(pipeline_id, state="waiting", stage="train")
    # a worker that exits without a word: the runner records it, the pipeline then fails with it
    runner = JobRunner(
        db, tmp_path / "logs", command=lambda _id: [sys.executable, "-c", "pass"], poll_s=0.05
    )
    deps = PipelineDeps(
        db=db,
        llm=None,
        registry=AdapterRegistry(tmp_path / "adapters"),
        settings=TrainingSettings(),
        work_root=tmp_path / "work",
        ctx=None,
    )
    updates: list[str] = []

    async def on_update(row: dict) -> None:
        updates.append(pipeline_text(row))

    async def scenario() -> None:
        stop = asyncio.Event()
        service = TrainingService(runner, Pipeline(deps), on_update, poll_s=0.05)
        task = asyncio.create_task(service.run(stop))
        for _ in range(200):
            await asyncio.sleep(0.05)
            if store.get(pipeline_id)["state"] == "failed":
                break
        stop.set()
        await task

    asyncio.run(scenario())
    row = store.get(pipeline_id)
    assert row["state"] == "failed" and row["stage"] == "train"
    assert (
        f"training job {job_id} failed: the training worker died with exit status 0" in row["error"]
    )
    assert updates and "❌ pirate: stage 4/6 train (failed)" in updates[-1]


def test_progress_text_shows_stage_bar_steps_and_eta() -> None:
    row = {"archetype": "pirate", "stage": "train", "state": "waiting", "error": None, "stages": {}}
    text = pipeline_text(
        row, {"step": 150, "total_steps": 300, "loss": 1.5, "tokens_per_s": 900.0, "eta_s": 125}
    )
    assert text.splitlines() == [
        "⏸ pirate: stage 4/6 train (waiting)",
        "stages ▓▓▓▓▓▓░░░░░░",
        "steps  ▓▓▓▓▓▓░░░░░░ 50%  step 150/300  loss 1.500  900 tok/s  ETA 2m05s",
    ]
