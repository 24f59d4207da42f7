"""The adapter pipeline in the daemon: provider, registry, runner, pipeline, commands, lifecycle.

``build_training`` is called by ``bot.daemon.services.build_services``; it keeps the composition root's
body short and puts every training part in one place. ``TrainingLoop`` runs ``TrainingService``
for the daemon's lifetime: ``start`` spawns its task (the runner re-queues jobs a previous daemon
left running, so they resume), ``stop`` sets the stop event and waits: the worker child gets
SIGTERM, stops after its current step and keeps its checkpoint; were the stop bound to run out
first, the child is killed rather than left behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loguru import logger

from agents.providers import build_provider
from agents.providers.base import Provider
from agents.training.pipeline import Pipeline, PipelineDeps
from agents.training.registry import AdapterRegistry
from agents.training.runner import JobRunner
from agents.training.service import TrainingService
from agents.usage import CallContext
from bot.core.assistant import Assistant
from bot.core.signing import ButtonSigner
from bot.core.train_commands import TrainCommands, TrainingPrefs
from bot.daemon.lifecycle import Service
from memory.db import Database

ADAPTERS_DIR = "adapters"


def adapter_registry(data_dir: Any) -> AdapterRegistry:
    return AdapterRegistry(data_dir / ADAPTERS_DIR)


def build_llm_provider(settings: Any, registry: AdapterRegistry) -> Provider:
    """``build_provider``, with the local provider (transformers + peft) when it is chosen."""
    if settings.llm.provider != "local":
        return build_provider(settings.llm)
    from agents.training.local_provider import local_factory  # imports torch: only when used

    return build_provider(settings.llm, local_factory=local_factory(settings.training, registry))


class TrainingLoop(Service):
    name = "training"

    def __init__(self, service: TrainingService) -> None:
        self.service = service
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.create_task(self.service.run(self._stop), name="training")
        self._task.add_done_callback(self._report)

    @staticmethod
    def _report(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.opt(exception=task.exception()).error(
                "the training service stopped with an error"
            )

    async def stop(self) -> None:
        if self._task is None:
            return
        self._stop.set()
        try:
            await asyncio.shield(self._task)
        except asyncio.CancelledError:  # the daemon's stop bound ran out: no orphan worker
            current = self.service.runner.current
            if current is not None:
                logger.warning("killing training worker {} at shutdown", current[1].pid)
                current[1].kill()
            raise
        except Exception:  # already logged by _report; the other services still stop
            pass


@dataclass
class Training:
    commands: TrainCommands
    service: TrainingService
    loop: TrainingLoop


def build_training(
    settings: Any,
    db: Database,
    *,
    llm: Any,
    review: Any,
    registry: AdapterRegistry,
    embed: Callable[[list[str]], Any] | None,
    assistant: Assistant,
    signer: ButtonSigner,
    poll_s: float = 5.0,
) -> Training:
    """Everything /train needs; the caller adds ``loop`` to the lifecycle."""
    data_dir = settings.data_dir
    runner = JobRunner(
        db,
        data_dir / "training" / "logs",
        cancel_grace_s=max(1.0, settings.daemon.shutdown_timeout_s / 2),
    )
    prefs = TrainingPrefs(db)
    pipeline = None
    if llm is not None and llm.capabilities.generates:
        pipeline = Pipeline(
            PipelineDeps(
                db=db,
                llm=llm,
                registry=registry,
                settings=settings.training,
                work_root=data_dir / "training" / "pipelines",
                ctx=CallContext(purpose="train", is_admin=True),
                review=review,
                embed=embed,
                feedback=prefs.liked_answers,
            )
        )
    commands = TrainCommands(
        db,
        pipeline,
        registry,
        signer,
        prefs,
        base_model_set=settings.training.base_model is not None,
    )
    commands.register(assistant)
    service = TrainingService(runner, pipeline, commands.on_update, poll_s=poll_s)
    commands.poke = service.poke
    return Training(commands, service, TrainingLoop(service))
