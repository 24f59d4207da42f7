"""The archetype pipeline: spec → data → inspect → train → evaluate → promote, persisted in SQLite.

Each stage records its inputs, outputs and error in ``train_stages``; a stage already ``done`` is
never run again, one left ``running`` by a crash is run again from its inputs (its files are
written atomically), so ``advance`` after a daemon restart carries on where it stopped. The
train stage enqueues one job (once: its id is the stage's output) and waits for the
``JobRunner`` to finish it; the promote stage waits for an admin's ``approve``. The model calls
go through ``agents.llm.LLM``; the spec is written and approved by the review panel when a
``ReviewEngine`` is given.
"""

from __future__ import annotations

import asyncio
import builtins
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from agents.providers.base import LLMRequest, extract_json
from agents.training import dataset
from agents.training.atomic import atomic_write_text
from agents.training.errors import DatasetError, JobError, TrainingError
from agents.training.jobs import JobQueue, now
from agents.training.registry import AdapterRegistry, check_slug
from memory.db import Database
from memory.errors import FamiliarError

STAGES = ("spec", "data", "inspect", "train", "evaluate", "promote")
SPEC_KEYS = ("voice", "dos", "donts", "examples", "probes")
SPEC_TASK = (
    "Write the spec of a chat-assistant persona (an archetype) named {name}: {description}\n"
    'Answer with one JSON object: {{"voice": str, "dos": [str], "donts": [str], '
    '"examples": [{{"user": str, "assistant": str}}], "probes": [str]}}. The probes are '
    "messages used to evaluate the trained persona; the examples show its voice."
)
INSPECT_SYSTEM = (
    "You check samples of training data for a persona. Score 0-10 how well the set fits the spec "
    '(voice, do\'s and don\'ts, quality, safety). Answer with JSON only: {"score": number, "issues": [str]}.'
)

UpdateFn = Callable[[dict[str, Any]], Awaitable[None]]
FeedbackFn = Callable[[], list[list[dict[str, str]]]]


class PipelineStore:
    """The rows of ``train_pipelines`` and ``train_stages``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, archetype: str, description: str, chat_id: int | None = None) -> int:
        check_slug(archetype)
        with self.db.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO train_pipelines (archetype, description, chat_id, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (archetype, description, chat_id, now(), now()),
            )
            return int(cur.lastrowid or 0)

    def _rows(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            cur = conn.execute(sql, args)
            names = [c[0] for c in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def get(self, pipeline_id: int) -> dict[str, Any]:
        rows = self._rows("SELECT * FROM train_pipelines WHERE id = ?", (pipeline_id,))
        if not rows:
            raise JobError(
                f"there is no pipeline {pipeline_id}", "`familiar train status` lists them"
            )
        row = rows[0]
        row["stages"] = {
            s["stage"]: s
            for s in self._rows("SELECT * FROM train_stages WHERE pipeline_id = ?", (pipeline_id,))
        }
        for s in row["stages"].values():
            for key in ("inputs", "outputs"):
                s[key] = json.loads(s[key]) if s[key] else None
        job_id = ((row["stages"].get("train") or {}).get("outputs") or {}).get("job_id")
        row["job_progress"] = JobQueue(self.db).get(job_id).progress if job_id is not None else None
        return row

    def list(self, limit: int = 20) -> builtins.list[dict[str, Any]]:
        return self._rows("SELECT * FROM train_pipelines ORDER BY id DESC LIMIT ?", (limit,))

    def unfinished(self) -> builtins.list[int]:
        return [
            r["id"]
            for r in self._rows(
                "SELECT id FROM train_pipelines WHERE state IN ('running', 'waiting')"
            )
        ]

    def set(self, pipeline_id: int, **values: Any) -> None:
        values["updated_at"] = now()
        with self.db.transaction() as conn:
            conn.execute(
                f"UPDATE train_pipelines SET {', '.join(f'{k} = ?' for k in values)} WHERE id = ?",
                (*values.values(), pipeline_id),
            )

    def stage(
        self,
        pipeline_id: int,
        stage: str,
        state: str,
        *,
        inputs: Any = None,
        outputs: Any = None,
        error: str | None = None,
    ) -> None:
        finished = now() if state in ("done", "failed") else None
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO train_stages (pipeline_id, stage, state, inputs, outputs, error, started_at, finished_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (pipeline_id, stage) DO UPDATE SET state = excluded.state,"
                " inputs = coalesce(excluded.inputs, inputs), outputs = coalesce(excluded.outputs, outputs),"
                " error = excluded.error, finished_at = excluded.finished_at",
                (
                    pipeline_id,
                    stage,
                    state,
                    json.dumps(inputs) if inputs is not None else None,
                    json.dumps(outputs) if outputs is not None else None,
                    error,
                    now(),
                    finished,
                ),
            )

    def reset_stage(self, pipeline_id: int, stage: str) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "DELETE FROM train_stages WHERE pipeline_id = ? AND stage = ?", (pipeline_id, stage)
            )


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
    review: Any = None  # agents.review.ReviewEngine: writes and approves the spec when given
    embed: dataset.EmbedFn | None = None  # near-duplicate detection
    feedback: FeedbackFn | None = None  # opted-in 👍 answers, as conversations
    limits: dataset.InspectionLimits | None = None
    device: str | None = None


class Pipeline:
    def __init__(self, deps: PipelineDeps) -> None:
        self.d = deps
        self.store = PipelineStore(deps.db)
        self.jobs = JobQueue(deps.db)

    def work_dir(self, pipeline_id: int) -> Path:
        path = Path(self.d.work_root) / str(pipeline_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def start(self, archetype: str, description: str, chat_id: int | None = None) -> int:
        return self.store.create(archetype, description, chat_id)

    async def advance(self, pipeline_id: int, on_update: UpdateFn | None = None) -> dict[str, Any]:
        """Run stages until the pipeline is done, failed, cancelled or waiting; returns its row."""
        db = self.d.db
        row = await db.run(self.store.get, pipeline_id)
        if row["state"] == "waiting" and row["stage"] == "promote":
            return row  # only an admin's approve moves it on
        while row["state"] in ("running", "waiting"):
            stage = next(
                (s for s in STAGES if row["stages"].get(s, {}).get("state") != "done"), None
            )
            if stage is None:
                await db.run(self._mark, pipeline_id, None, None, "done", None)
            else:
                if not await db.run(self._mark, pipeline_id, stage, None, "running", None):
                    row = await db.run(self.store.get, pipeline_id)
                    continue  # cancelled meanwhile: the loop ends here, no stage starts
                try:
                    await getattr(self, f"_{stage}")(pipeline_id, row)
                except Waiting as waiting:
                    await db.run(
                        self._mark, pipeline_id, stage, "waiting", "waiting", str(waiting) or None
                    )
                    row = await db.run(self.store.get, pipeline_id)
                    if on_update is not None:
                        await on_update(row)
                    return row
                except (FamiliarError, ValueError, OSError) as exc:
                    message = (
                        exc.explain()
                        if isinstance(exc, FamiliarError)
                        else f"{type(exc).__name__}: {exc}"
                    )
                    logger.warning("pipeline {} stage {} failed: {}", pipeline_id, stage, message)
                    await db.run(self._mark, pipeline_id, stage, "failed", "failed", message)
            row = await db.run(self.store.get, pipeline_id)
            if on_update is not None:
                await on_update(row)
        return row

    def _mark(
        self,
        pipeline_id: int,
        stage: str | None,
        stage_state: str | None,
        state: str,
        error: str | None,
    ) -> bool:
        """Record a stage's state (when given) and the pipeline's, in one transaction. An admin's
        cancel that came while the stage ran is kept (returns False), never overwritten."""
        with self.d.db.transaction() as conn:
            if stage is not None and stage_state is not None:
                self.store.stage(pipeline_id, stage, stage_state, error=error)
            current = conn.execute(
                "SELECT state FROM train_pipelines WHERE id = ?", (pipeline_id,)
            ).fetchone()
            if current is not None and current[0] == "cancelled":
                return False
            values: dict[str, Any] = {"state": state}
            if stage is not None:
                values["stage"] = stage
            if state == "failed":
                values["error"] = f"{stage}: {error}"
            elif state in ("running", "done"):
                values["error"] = None
            self.store.set(pipeline_id, **values)
            return True

    # -- admin actions -------------------------------------------------------------------
    def approve(self, pipeline_id: int) -> Any:
        """Promote the evaluated adapter (the admin's button); the pipeline is then done."""
        row = self.store.get(pipeline_id)
        evaluated = row["stages"].get("evaluate", {}).get("outputs") or {}
        if row["stages"].get("promote", {}).get("state") != "waiting" or "version" not in evaluated:
            raise JobError(
                f"pipeline {pipeline_id} has no adapter waiting for promotion",
                "see `familiar train status`",
            )
        version = self.d.registry.promote(row["archetype"], evaluated["version"])
        self.store.stage(
            pipeline_id, "promote", "done", outputs={"version": version.version, "approved": True}
        )
        self.store.set(pipeline_id, state="done", error=None)
        return version

    def reject(self, pipeline_id: int) -> str:
        """The admin turns the proposed adapter down: it stays in the registry unpromoted and the
        pipeline ends failed at promote (``retry`` asks again). Returns the rejected version."""
        row = self.store.get(pipeline_id)
        evaluated = row["stages"].get("evaluate", {}).get("outputs") or {}
        if row["stages"].get("promote", {}).get("state") != "waiting" or "version" not in evaluated:
            raise JobError(
                f"pipeline {pipeline_id} has no adapter waiting for promotion",
                "see `familiar train status`",
            )
        version = str(evaluated["version"])
        with self.d.db.transaction():
            self.store.stage(
                pipeline_id,
                "promote",
                "failed",
                outputs={"version": version, "approved": False},
                error="rejected by an admin",
            )
            self.store.set(
                pipeline_id,
                state="failed",
                error=f"promote: {row['archetype']} {version} rejected by an admin; it stays unpromoted",
            )
        return version

    def cancel(self, pipeline_id: int) -> None:
        row = self.store.get(pipeline_id)
        job_id = (row["stages"].get("train", {}).get("outputs") or {}).get("job_id")
        if job_id is not None and self.jobs.get(job_id).state in ("queued", "running"):
            self.jobs.request_cancel(job_id)
        self.store.set(pipeline_id, state="cancelled", error="cancelled by an admin")

    def retry(self, pipeline_id: int) -> None:
        """Run a failed or cancelled pipeline again from its first stage that is not done."""
        row = self.store.get(pipeline_id)
        if row["state"] not in ("failed", "cancelled"):
            raise JobError(
                f"pipeline {pipeline_id} is {row['state']}",
                "only failed or cancelled pipelines are retried",
            )
        for stage, s in row["stages"].items():
            if s["state"] == "failed":
                self.store.reset_stage(pipeline_id, stage)
        job_id = (row["stages"].get("train", {}).get("outputs") or {}).get("job_id")
        if job_id is not None and self.jobs.get(job_id).state in ("failed", "cancelled"):
            self.jobs.retry(job_id)
        self.store.set(pipeline_id, state="running", error=None)

    # -- stages --------------------------------------------------------------------------
    def _outputs(self, row: dict[str, Any], stage: str) -> dict[str, Any]:
        return row["stages"][stage]["outputs"]

    async def _done(self, pipeline_id: int, stage: str, inputs: Any, outputs: Any) -> None:
        await self.d.db.run(
            lambda: self.store.stage(pipeline_id, stage, "done", inputs=inputs, outputs=outputs)
        )

    async def _spec(self, pipeline_id: int, row: dict[str, Any]) -> None:
        task = SPEC_TASK.format(name=row["archetype"], description=row["description"])
        inputs = {"archetype": row["archetype"], "description": row["description"]}
        await self.d.db.run(lambda: self.store.stage(pipeline_id, "spec", "running", inputs=inputs))
        review_run = None
        if self.d.review is not None:
            result = await self.d.review.panel(task, self.d.ctx.for_("train:spec"))
            text, review_run = (
                result.final,
                {
                    "run_id": result.run_id,
                    "outcome": result.outcome,
                    "score": result.rounds[-1].mean_score if result.rounds else None,
                },
            )
            if result.outcome == "max_rounds":
                raise TrainingError(
                    "the review panel did not approve the spec",
                    "describe the archetype more precisely and retry",
                )
        else:
            request = LLMRequest(messages=[{"role": "user", "content": task}], max_tokens=4000)
            text = (await self.d.llm.complete(request, self.d.ctx.for_("train:spec"))).text
        spec = extract_json(text)
        if (
            not isinstance(spec, dict)
            or any(k not in spec for k in SPEC_KEYS)
            or not spec.get("probes")
        ):
            raise TrainingError(
                f"the spec lacks {', '.join(k for k in SPEC_KEYS if not (isinstance(spec, dict) and spec.get(k)))}",
                "retry the pipeline; the model answered with an incomplete spec",
            )
        atomic_write_text(
            self.work_dir(pipeline_id) / "spec.json", json.dumps(spec, indent=1, ensure_ascii=False)
        )
        await self._done(pipeline_id, "spec", inputs, {"spec": spec, "review": review_run})

    async def _data(self, pipeline_id: int, row: dict[str, Any]) -> None:
        spec = self._outputs(row, "spec")["spec"]
        s = self.d.settings
        inputs = {"target": s.target_examples, "per_call": s.examples_per_call}
        await self.d.db.run(lambda: self.store.stage(pipeline_id, "data", "running", inputs=inputs))
        generated = await dataset.generate(
            self.d.llm, self.d.ctx, spec, s.target_examples, s.examples_per_call
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
        path = self.work_dir(pipeline_id) / "generated.jsonl"
        atomic_write_text(
            path, "".join(json.dumps({"messages": c}, ensure_ascii=False) + "\n" for c in unique)
        )
        await self._done(
            pipeline_id,
            "data",
            inputs,
            {
                "path": str(path),
                "generated": len(generated),
                "feedback": len(feedback),
                "unique": len(unique),
            },
        )

    async def _inspect(self, pipeline_id: int, row: dict[str, Any]) -> None:
        from agents.training.data import load_chat_jsonl

        data = self._outputs(row, "data")
        spec = self._outputs(row, "spec")["spec"]
        conversations = load_chat_jsonl(Path(data["path"]))
        report = dataset.inspect(conversations, self.d.limits or dataset.InspectionLimits())
        if not report.kept:
            raise DatasetError(
                f"the data set is empty after inspection ({report.summary()})",
                "adjust the description or the inspection limits and retry",
            )
        sample = report.kept[: min(20, len(report.kept))]
        prompt = (
            f"Spec:\n{json.dumps(spec, ensure_ascii=False)}\n\nSample of {len(sample)} examples:\n"
            + "\n".join(json.dumps(c, ensure_ascii=False) for c in sample)
        )
        request = LLMRequest(
            messages=[{"role": "user", "content": prompt}],
            system_prefix=INSPECT_SYSTEM,
            max_tokens=800,
            json_schema={
                "type": "object",
                "properties": {
                    "score": {"type": "number"},
                    "issues": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["score", "issues"],
            },
        )
        verdict = extract_json(
            (await self.d.llm.complete(request, self.d.ctx.for_("train:inspect"))).text
        )
        score = float(verdict.get("score", 0)) / 10.0
        issues = [str(i) for i in verdict.get("issues", [])][:10]
        outputs: dict[str, Any] = {
            "summary": report.summary(),
            "rejected": dict(report.rejected),
            "panel_score": score,
            "issues": issues,
        }
        if score < self.d.settings.min_inspection_score:
            raise DatasetError(
                f"the panel scored the data {score:.2f} (below {self.d.settings.min_inspection_score}): "
                + "; ".join(issues),
                "adjust the description and retry",
            )
        train, held = dataset.split(report.kept, self.d.settings.heldout_fraction, seed=pipeline_id)
        work = self.work_dir(pipeline_id)
        for name, rows in (("train", train), ("heldout", held)):
            atomic_write_text(
                work / f"{name}.jsonl",
                "".join(json.dumps({"messages": c}, ensure_ascii=False) + "\n" for c in rows),
            )
        outputs |= {
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
            job_id = await self.d.db.run(self.jobs.enqueue, config.to_dict(), pipeline_id)
            await self.d.db.run(
                lambda: self.store.stage(
                    pipeline_id,
                    "train",
                    "waiting",
                    inputs=config.to_dict(),
                    outputs={"job_id": job_id},
                )
            )
        job = await self.d.db.run(self.jobs.get, job_id)
        if job.state == "succeeded":
            await self._done(pipeline_id, "train", None, {"job_id": job_id, **(job.result or {})})
        elif job.state == "failed":
            raise TrainingError(
                f"training job {job_id} failed: {job.error}",
                "fix the cause, then retry the pipeline",
            )
        elif job.state == "cancelled":
            raise TrainingError(
                f"training job {job_id} was cancelled", "retry the pipeline to resume it"
            )
        else:
            raise Waiting(f"training job {job_id} is {job.state}")

    async def _evaluate(self, pipeline_id: int, row: dict[str, Any]) -> None:
        """Held-out losses and probe answers come from a worker job (the models load there, not
        in the daemon); the blind judging of the answers is done here by the LLM."""
        from agents.training.evaluate import judge_probes

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
            job_id = await self.d.db.run(self.jobs.enqueue, config, pipeline_id)
            await self.d.db.run(
                lambda: self.store.stage(
                    pipeline_id, "evaluate", "waiting", inputs=config, outputs={"job_id": job_id}
                )
            )
        job = await self.d.db.run(self.jobs.get, job_id)
        if job.state in ("failed", "cancelled"):
            raise TrainingError(
                f"evaluation job {job_id} {job.state}: {job.error}",
                "fix the cause, then retry the pipeline",
            )
        if job.state != "succeeded":
            raise Waiting(f"evaluation job {job_id} is {job.state}")
        measured = job.result or {}
        base_loss, adapter_loss = float(measured["base_loss"]), float(measured["adapter_loss"])
        answers = measured["answers"]
        judged = await judge_probes(
            self.d.llm,
            self.d.ctx,
            spec,
            probes,
            answers["base"],
            answers["adapter"],
            seed=pipeline_id,
        )
        improvement = (base_loss - adapter_loss) / base_loss if base_loss > 0 else 0.0
        proposed = (
            improvement >= s.promotion_margin and judged["adapter_wins"] >= judged["base_wins"]
        )
        report = {
            "base_loss": base_loss,
            "adapter_loss": adapter_loss,
            "improvement": improvement,
            "margin": s.promotion_margin,
            "proposed": proposed,
            **judged,
        }
        train_out = self._outputs(row, "train")
        version = self.d.registry.add(
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
        self.d.registry.set_evaluation(row["archetype"], version.version, report)
        await self._done(
            pipeline_id,
            "evaluate",
            {"adapter_dir": str(adapter_dir)},
            {
                "job_id": job_id,
                "version": version.version,
                **{k: v for k, v in report.items() if k != "details"},
            },
        )

    async def _promote(self, pipeline_id: int, row: dict[str, Any]) -> None:
        evaluated = self._outputs(row, "evaluate")
        if not evaluated["proposed"]:
            raise TrainingError(
                f"{row['archetype']} {evaluated['version']} did not beat the base model by the margin "
                f"(held-out loss {evaluated['adapter_loss']:.4f} vs {evaluated['base_loss']:.4f}, "
                f"probes {evaluated['adapter_wins']} won / {evaluated['base_wins']} lost)",
                f"it stays in the registry unpromoted; `familiar adapters promote {row['archetype']} "
                f"{evaluated['version']}` overrides",
            )
        raise Waiting(
            f"{row['archetype']} {evaluated['version']} is proposed for promotion: waiting for an admin"
        )
