"""The archetype pipeline: spec → data → inspect → train → evaluate → promote, persisted in SQLite.

Each stage records its inputs, outputs and error in ``train_stages``; a stage already ``done`` is
never run again, one left ``running`` by a crash is run again from its inputs (its files are
written atomically, the registry add is idempotent), so ``advance`` after a daemon restart
carries on where it stopped. The train and evaluate stages each enqueue one job (once: its id is
the stage's output) and wait for the ``JobRunner``; the promote stage waits for an admin. This
module is the state machine (which stage runs next, failures and retries, the admin's actions);
what each stage does is in ``agents.training.stages``.

Who decides: the review panel (``agents.review.ReviewEngine``, the one engine) writes and
approves the spec, scores a sample of the generated data against it (``inspection``; a rejected
set is regenerated once with the critique, then the stage fails with it), and judges the probe
answers blind for the promotion gate (``gate``), which proposes; an admin promotes. Every review's
transcript is kept in the stage's outputs (and in ``review_runs``).

A stage that raises ``StageRejected`` (a decision) fails the pipeline at once. Any other error
(a malformed model reply, a provider outage, a bug) is recorded and the stage tried again after
``stage_backoff_s`` (doubling), at most ``stage_attempts`` times in all; then the pipeline fails
with the reason, which ``/train status`` shows. No error can make a stage repeat its paid model
calls without bound.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from loguru import logger

from agents.training.errors import JobError, StageRejected
from agents.training.pipeline_store import PipelineStore
from agents.training.stages import (
    SPEC_KEYS,
    SPEC_TASK,
    STAGES,
    FeedbackFn,
    PipelineDeps,
    Stages,
    Waiting,
)
from memory.errors import FamiliarError

__all__ = [
    "SPEC_KEYS",
    "SPEC_TASK",
    "STAGES",
    "FeedbackFn",
    "Pipeline",
    "PipelineDeps",
    "PipelineStore",
    "UpdateFn",
    "Waiting",
]

UpdateFn = Callable[[dict[str, Any]], Awaitable[None]]


class Pipeline(Stages):
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
                retry_at = (row["stages"].get(stage) or {}).get("retry_at")
                if retry_at is not None and self.d.clock() < retry_at:
                    return row  # backing off after a failed attempt
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
                # any other error: recorded, then retried with back-off a bounded number of times
                except Exception as exc:
                    if not await db.run(self._failed, pipeline_id, stage, exc):
                        row = await db.run(self.store.get, pipeline_id)
                        if on_update is not None:
                            await on_update(row)
                        return row  # tried again after the back-off, by a later advance
            row = await db.run(self.store.get, pipeline_id)
            if on_update is not None:
                await on_update(row)
        return row

    def _failed(self, pipeline_id: int, stage: str, exc: Exception) -> bool:
        """Record a stage's failed attempt; True when the pipeline failed with it, False when the
        stage will be tried again (after ``stage_backoff_s``, doubling each time)."""
        s = self.d.settings
        what = str(exc) if isinstance(exc, FamiliarError) else f"{type(exc).__name__}: {exc}"
        fix = f"\n  fix: {exc.fix}" if isinstance(exc, FamiliarError) and exc.fix else ""
        message = what + fix
        if not isinstance(exc, FamiliarError):  # not an error we foresaw: keep its traceback
            logger.opt(exception=exc).error("pipeline {} stage {} raised", pipeline_id, stage)
        with self.d.db.transaction():
            self.store.stage(pipeline_id, stage, "running", error=message)
            previous = self.store.get(pipeline_id)["stages"][stage].get("attempts") or 0
            attempts = previous + 1
            if isinstance(exc, StageRejected) or attempts >= s.stage_attempts:
                self.store.record_attempt(pipeline_id, stage, attempts, None)
                if attempts > 1:
                    message = f"{what} (attempt {attempts} of {s.stage_attempts}){fix}"
                logger.warning("pipeline {} stage {} failed: {}", pipeline_id, stage, message)
                self._mark(pipeline_id, stage, "failed", "failed", message)
                return True
            delay = s.stage_backoff_s * 2 ** (attempts - 1)
            self.store.record_attempt(pipeline_id, stage, attempts, self.d.clock() + delay)
            logger.warning(
                "pipeline {} stage {} attempt {} of {} failed ({}); trying again in {:.0f} s",
                pipeline_id,
                stage,
                attempts,
                s.stage_attempts,
                message,
                delay,
            )
            current = self.store.get(pipeline_id)
            if current["state"] != "cancelled":
                self.store.set(
                    pipeline_id,
                    error=f"{stage}: attempt {attempts} of {s.stage_attempts} failed, "
                    f"trying again in {delay:.0f} s: {message}",
                )
            return False

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
        self.store.reset_attempts(pipeline_id)
        job_id = (row["stages"].get("train", {}).get("outputs") or {}).get("job_id")
        if job_id is not None and self.jobs.get(job_id).state in ("failed", "cancelled"):
            self.jobs.retry(job_id)
        self.store.set(pipeline_id, state="running", error=None)
