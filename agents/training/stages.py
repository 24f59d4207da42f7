"""What each stage of the archetype pipeline does: spec, data, inspect, train, evaluate, promote.

``Stages`` holds one method per stage; ``agents.training.pipeline.Pipeline`` (the state machine:
which stage runs next, retries, the admin's actions) runs them. A stage records its outputs
through ``PipelineStore``, raises ``Waiting`` while a job or an admin is awaited, and
``StageRejected`` when it decides the pipeline cannot go on. Who decides what is in the
``Pipeline`` docstring and the README.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.providers.base import extract_json
from agents.review import ReviewEngine
from agents.review_verdicts import brief, critique
from agents.settings import LLMSettings, ReviewSettings
from agents.training import dataset
from agents.training.atomic import atomic_write_text
from agents.training.errors import StageRejected, TrainingError
from agents.training.inspection import review_data
from agents.training.jobs import JobQueue
from agents.training.pipeline_store import PipelineStore
from agents.training.registry import AdapterRegistry
from memory.db import Database

STAGES = ("spec", "data", "inspect", "train", "evaluate", "promote")
SPEC_KEYS = ("voice", "dos", "donts", "examples", "probes")
SPEC_TASK = (
    "Write the spec of a chat-assistant persona (an archetype) named {name}: {description}\n"
    'Answer with one JSON object: {{"voice": str, "dos": [str], "donts": [str], '
    '"examples": [{{"user": str, "assistant": str}}], "probes": [str]}}. The probes are '
    "messages used to evaluate the trained persona; the examples show its voice."
)
FeedbackFn = Callable[[], list[list[dict[str, str]]]]


def spec_shape_problems(spec: dict[str, Any]) -> list[str]:
    """What in a spec the later stages could not use (they iterate its lists as given)."""
    problems = []
    for key in ("dos", "donts"):
        if not isinstance(spec[key], list):
            problems.append(f"{key} is not a list")
    examples = spec["examples"]
    if not isinstance(examples, list) or not all(isinstance(e, dict) for e in examples):
        problems.append('examples is not a list of {"user", "assistant"} objects')
    probes = spec["probes"]
    if not isinstance(probes, list) or not all(isinstance(p, str) and p.strip() for p in probes):
        problems.append("probes is not a list of messages")
    return problems


class Waiting(Exception):
    """The stage waits for something outside the pipeline (the training job, an admin)."""


@dataclass
class PipelineDeps:
    db: Database
    llm: Any  # agents.llm.LLM
    registry: AdapterRegistry
    settings: Any  # TrainingSettings
    work_root: Path  # <data dir>/training/pipelines
    ctx: Any  # agents.usage.CallContext of the admin who started it
    # the review panel; default: one on ``llm`` with the default settings
    review: ReviewEngine | None = None
    embed: dataset.EmbedFn | None = None  # near-duplicate detection
    feedback: FeedbackFn | None = None  # opted-in 👍 answers, as conversations
    limits: dataset.InspectionLimits | None = None
    device: str | None = None
    clock: Callable[[], float] = field(default=time.time)  # when a failed stage may run again


class Stages:
    def __init__(self, deps: PipelineDeps) -> None:
        self.d = deps
        self.review = deps.review or ReviewEngine(deps.llm, ReviewSettings(), LLMSettings())
        self.store = PipelineStore(deps.db)
        self.jobs = JobQueue(deps.db)

    def work_dir(self, pipeline_id: int) -> Path:
        path = Path(self.d.work_root) / str(pipeline_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- stages --------------------------------------------------------------------------
    def _outputs(self, row: dict[str, Any], stage: str) -> dict[str, Any]:
        return row["stages"][stage]["outputs"]

    def _enqueue(self, pipeline_id: int, stage: str, config: dict[str, Any]) -> int:
        """Queue the stage's job and record its id in one transaction: a crash between the two
        would queue a second job on the rerun, and the runner must not start a job its stage
        does not name yet."""
        with self.d.db.transaction():
            job_id = self.jobs.enqueue(config, pipeline_id)
            self.store.stage(
                pipeline_id, stage, "waiting", inputs=config, outputs={"job_id": job_id}
            )
            return job_id

    def _keep(self, pipeline_id: int, stage: str, outputs: Any) -> None:
        """Outputs of a stage still running (its review transcripts, shown if it then fails)."""
        self.store.stage(pipeline_id, stage, "running", outputs=outputs)

    async def _done(self, pipeline_id: int, stage: str, inputs: Any, outputs: Any) -> None:
        await self.d.db.run(
            lambda: self.store.stage(pipeline_id, stage, "done", inputs=inputs, outputs=outputs)
        )

    async def _spec(self, pipeline_id: int, row: dict[str, Any]) -> None:
        task = SPEC_TASK.format(name=row["archetype"], description=row["description"])
        inputs = {"archetype": row["archetype"], "description": row["description"]}
        await self.d.db.run(lambda: self.store.stage(pipeline_id, "spec", "running", inputs=inputs))
        result = await self.review.panel(task, self.d.ctx.for_("train:spec"))
        review = brief(result)
        await self.d.db.run(
            lambda: self.store.stage(pipeline_id, "spec", "running", outputs={"review": review})
        )
        if result.outcome == "max_rounds":
            raise StageRejected(
                "the review panel did not approve the spec:\n" + critique(result),
                "describe the archetype more precisely and retry",
            )
        spec = extract_json(result.final)
        if (
            not isinstance(spec, dict)
            or any(k not in spec for k in SPEC_KEYS)
            or not spec.get("probes")
        ):
            missing = [k for k in SPEC_KEYS if not (isinstance(spec, dict) and spec.get(k))]
            raise TrainingError(
                f"the spec lacks {', '.join(missing)}",
                "retry the pipeline; the model answered with an incomplete spec",
            )
        malformed = spec_shape_problems(spec)
        if malformed:
            raise TrainingError(
                f"the spec is malformed: {'; '.join(malformed)}",
                "retry the pipeline; the model answered with a malformed spec",
            )
        atomic_write_text(
            self.work_dir(pipeline_id) / "spec.json", json.dumps(spec, indent=1, ensure_ascii=False)
        )
        await self._done(pipeline_id, "spec", inputs, {"spec": spec, "review": review})

    async def _make_data(
        self, pipeline_id: int, spec: dict[str, Any], name: str, critique: str = ""
    ) -> dict[str, Any]:
        """Generate, add the spec's examples and the opted-in answers, deduplicate, write."""
        s = self.d.settings
        generated = await dataset.generate(
            self.d.llm, self.d.ctx, spec, s.target_examples, s.examples_per_call, critique=critique
        )
        feedback = (
            await asyncio.to_thread(self.d.feedback) if self.d.feedback is not None else []
        )  # SQLite
        seeds = [
            [
                {"role": "user", "content": e["user"]},
                {"role": "assistant", "content": e["assistant"]},
            ]
            for e in spec.get("examples", [])
            if isinstance(e, dict) and e.get("user") and e.get("assistant")
        ]
        everything = seeds + generated + feedback
        unique = await asyncio.to_thread(dataset.dedupe, everything, self.d.embed)
        path = self.work_dir(pipeline_id) / name
        atomic_write_text(
            path, "".join(json.dumps({"messages": c}, ensure_ascii=False) + "\n" for c in unique)
        )
        return {
            "path": str(path),
            "generated": len(generated),
            "feedback": len(feedback),
            "unique": len(unique),
        }

    async def _data(self, pipeline_id: int, row: dict[str, Any]) -> None:
        spec = self._outputs(row, "spec")["spec"]
        s = self.d.settings
        inputs = {"target": s.target_examples, "per_call": s.examples_per_call}
        await self.d.db.run(lambda: self.store.stage(pipeline_id, "data", "running", inputs=inputs))
        outputs = await self._make_data(pipeline_id, spec, "generated.jsonl")
        await self._done(pipeline_id, "data", inputs, outputs)

    async def _inspect(self, pipeline_id: int, row: dict[str, Any]) -> None:
        """The rules drop single examples; the review panel judges a sample of the rest against
        the spec. A rejected set is regenerated once with the panel's critique and judged again;
        rejected twice, the stage fails with the critique."""
        from agents.training.data import load_chat_jsonl

        s = self.d.settings
        data = self._outputs(row, "data")
        spec = self._outputs(row, "spec")["spec"]
        path, regenerated = Path(data["path"]), None
        reviews: list[dict[str, Any]] = []
        while True:
            conversations = await asyncio.to_thread(load_chat_jsonl, path)
            report = dataset.inspect(conversations, self.d.limits or dataset.InspectionLimits())
            if not report.kept:
                raise StageRejected(
                    f"the data set is empty after inspection ({report.summary()})",
                    "adjust the description or the inspection limits and retry",
                )
            result = await review_data(
                self.review,
                self.d.ctx,
                spec,
                report.kept,
                size=s.inspection_sample,
                seed=pipeline_id + len(reviews),
                min_score=s.min_inspection_score,
            )
            reviews.append(brief(result))
            progress = {"reviews": list(reviews), "regenerated": regenerated}
            await self.d.db.run(self._keep, pipeline_id, "inspect", progress)
            if result.outcome != "rejected":
                break
            if regenerated is not None:
                raise StageRejected(
                    "the review panel rejected the generated data, and again after it was "
                    f"regenerated with their critique (mean score {reviews[-1]['mean_score']}/10, "
                    f"{s.min_inspection_score * 10:g} needed unless all approve):\n"
                    + critique(result),
                    "describe the archetype more precisely, or use a stronger model, and retry",
                )
            regenerated = await self._make_data(
                pipeline_id, spec, "regenerated.jsonl", critique=critique(result)
            )
            path = Path(regenerated["path"])
        train, held = dataset.split(report.kept, s.heldout_fraction, seed=pipeline_id)
        work = self.work_dir(pipeline_id)
        for name, rows in (("train", train), ("heldout", held)):
            atomic_write_text(
                work / f"{name}.jsonl",
                "".join(json.dumps({"messages": c}, ensure_ascii=False) + "\n" for c in rows),
            )
        outputs = {
            "summary": report.summary(),
            "rejected": dict(report.rejected),
            "panel_score": (reviews[-1]["mean_score"] or 0) / 10,
            "reviews": reviews,
            "regenerated": regenerated,
            "train": str(work / "train.jsonl"),
            "heldout": str(work / "heldout.jsonl"),
            "n_train": len(train),
            "n_heldout": len(held),
        }
        await self._done(pipeline_id, "inspect", {"data": data["path"]}, outputs)

    async def _train(self, pipeline_id: int, row: dict[str, Any]) -> None:
        from agents.training.trainer import TrainConfig

        stage = row["stages"].get("train") or {}
        job_id = (stage.get("outputs") or {}).get("job_id")
        if job_id is None:
            data = self._outputs(row, "inspect")
            config = TrainConfig.from_settings(
                self.d.settings,
                data=data["train"],
                device=self.d.device,
                out=str(self.work_dir(pipeline_id) / "train"),
                seed=pipeline_id,
            )
            job_id = await self.d.db.run(self._enqueue, pipeline_id, "train", config.to_dict())
        job = await self.d.db.run(self.jobs.get, job_id)
        if job.state == "succeeded":
            await self._done(pipeline_id, "train", None, {"job_id": job_id, **(job.result or {})})
        elif job.state == "failed":
            raise StageRejected(
                f"training job {job_id} failed: {job.error}",
                "fix the cause, then retry the pipeline",
            )
        elif job.state == "cancelled":
            raise StageRejected(
                f"training job {job_id} was cancelled", "retry the pipeline to resume it"
            )
        else:
            raise Waiting(f"training job {job_id} is {job.state}")

    async def _evaluate(self, pipeline_id: int, row: dict[str, Any]) -> None:
        """Held-out losses and probe answers come from a worker job (the models load there, not
        in the daemon); the review panel judges the answers blind here and the gate decides
        (``agents.training.gate``). The adapter enters the registry once: a rerun after a crash
        finds the version it added (same training job, same files) instead of adding another."""
        from agents.training.gate import decide, judge_probes

        s = self.d.settings
        adapter_dir = Path(self._outputs(row, "train")["adapter_dir"])
        spec = self._outputs(row, "spec")["spec"]
        stage = row["stages"].get("evaluate") or {}
        job_id = (stage.get("outputs") or {}).get("job_id")
        probes = [str(p) for p in spec["probes"]][:20]
        if job_id is None:
            config = {
                "kind": "evaluate",
                "base_model": str(s.base_model),
                "adapter_dir": str(adapter_dir),
                "heldout": self._outputs(row, "inspect")["heldout"],
                "probes": probes,
                "max_seq_len": s.max_seq_len,
                "device": self.d.device,
                "out": str(adapter_dir),
            }
            job_id = await self.d.db.run(self._enqueue, pipeline_id, "evaluate", config)
        job = await self.d.db.run(self.jobs.get, job_id)
        if job.state in ("failed", "cancelled"):
            raise StageRejected(
                f"evaluation job {job_id} {job.state}: {job.error}",
                "fix the cause, then retry the pipeline",
            )
        if job.state != "succeeded":
            raise Waiting(f"evaluation job {job_id} is {job.state}")
        measured = job.result or {}
        base_loss, adapter_loss = float(measured["base_loss"]), float(measured["adapter_loss"])
        answers = measured["answers"]
        judged = await judge_probes(
            self.review,
            self.d.ctx.for_("train:judge"),
            spec,
            probes,
            answers["base"],
            answers["adapter"],
            seed=pipeline_id,
        )
        report = {
            "base_loss": base_loss,
            "adapter_loss": adapter_loss,
            **decide(base_loss, adapter_loss, judged, s.promotion_margin),
            **judged,
        }
        train_out = self._outputs(row, "train")
        version = await asyncio.to_thread(
            self.d.registry.add,
            row["archetype"],
            adapter_dir,
            {
                "pipeline_id": pipeline_id,
                "base_model": str(s.base_model),
                "job_id": train_out.get("job_id"),
                "final_loss": (train_out.get("losses") or [None])[-1],
                "spec": spec,
            },
        )
        await asyncio.to_thread(
            self.d.registry.set_evaluation, row["archetype"], version.version, report
        )
        await self._done(
            pipeline_id,
            "evaluate",
            {"adapter_dir": str(adapter_dir)},
            {"job_id": job_id, "version": version.version, **report},
        )

    async def _promote(self, pipeline_id: int, row: dict[str, Any]) -> None:
        evaluated = self._outputs(row, "evaluate")
        if not evaluated["proposed"]:
            raise StageRejected(
                f"{row['archetype']} {evaluated['version']} did not beat the base model by the margin "
                f"(held-out loss {evaluated['adapter_loss']:.4f} vs {evaluated['base_loss']:.4f}, "
                f"probes {evaluated['adapter_wins']} won / {evaluated['base_wins']} lost / "
                f"{evaluated.get('ties', 0)} tied; it must win more than it loses)",
                f"it stays in the registry unpromoted; `familiar adapters promote {row['archetype']} "
                f"{evaluated['version']}` overrides",
            )
        raise Waiting(
            f"{row['archetype']} {evaluated['version']} is proposed for promotion: waiting for an admin"
        )
