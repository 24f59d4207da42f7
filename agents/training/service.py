"""The daemon's training service: the job runner and the pipelines, until the daemon stops.

The composition root builds it with a ``JobRunner`` and, when an LLM is configured, a
``Pipeline``; ``run(stop)`` runs queued jobs one at a time in child processes and advances every
unfinished pipeline (after a restart too), calling ``on_update`` with the pipeline's row so the
bot can edit its progress message. The pipelines advance every ``poll_s``, at once when ``poke``d
(a pipeline was just started) and whenever the running job reports progress or ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from loguru import logger

from agents.training.pipeline import Pipeline, PipelineStore
from agents.training.runner import JobRunner

UpdateFn = Callable[[dict[str, Any]], Awaitable[None]]


class TrainingService:
    def __init__(
        self,
        runner: JobRunner,
        pipeline: Pipeline | None = None,
        on_update: UpdateFn | None = None,
        poll_s: float = 5.0,
    ) -> None:
        self.runner = runner
        self.pipeline = pipeline
        self.on_update = on_update
        self.poll_s = poll_s
        self._wake = asyncio.Event()

    def poke(self) -> None:
        """Advance the pipelines now instead of at the next poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()

        def job_moved(_job: object) -> None:  # called on the runner's thread
            loop.call_soon_threadsafe(self._wake.set)

        jobs = asyncio.create_task(self.runner.serve(stop, job_moved), name="training-jobs")
        try:
            while not stop.is_set():
                self._wake.clear()
                if self.pipeline is not None:
                    await self.advance_all()
                waits = [
                    asyncio.ensure_future(stop.wait()),
                    asyncio.ensure_future(self._wake.wait()),
                ]
                await asyncio.wait(waits, timeout=self.poll_s, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waits:
                    waiter.cancel()
        finally:
            await jobs

    async def advance_all(self) -> None:
        assert self.pipeline is not None
        store = PipelineStore(self.runner.db)
        for pipeline_id in await self.runner.db.run(store.unfinished):
            try:
                await self.pipeline.advance(pipeline_id, self.on_update)
            except Exception as exc:  # one pipeline's bug must not stop the others or the daemon
                logger.opt(exception=exc).error("pipeline {} could not advance", pipeline_id)
