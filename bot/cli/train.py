"""``familiar train start|status|cancel|retry|fit`` and ``familiar adapters list|promote|rollback``.

The lead registers them: ``app.add_typer(train_app, name="train")`` and
``app.add_typer(adapters_app, name="adapters")``. The work lives in ``agents.training``; this
module reads the settings, opens the database and prints. ``train fit`` runs its job through the
same child-process worker the daemon uses, in the foreground, printing progress.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from bot.cli.common import friendly as _friendly

train_app = typer.Typer(
    help="Train LoRA adapters: the archetype pipeline, or a direct fit on your data.",
    no_args_is_help=True,
)
adapters_app = typer.Typer(
    help="List trained adapters, promote a version, roll back.", no_args_is_help=True
)


def _settings() -> Any:
    from bot.config import load_settings

    return load_settings()


def _training(settings: Any) -> Any:
    from agents.training.settings import TrainingSettings

    return getattr(settings, "training", None) or TrainingSettings()  # type: ignore[call-arg]


def _db(settings: Any) -> Any:
    from bot.daemon.run import open_database

    return open_database(settings)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def progress_line(progress: dict[str, Any]) -> str:
    return (
        f"step {progress['step']}/{progress['total_steps']}  loss {progress['loss']:.4f}  "
        f"{progress['tokens_per_s']:.0f} tok/s  ETA {_duration(progress['eta_s'])}  "
        f"(micro-batch {progress['micro_batch']} x {progress['grad_accum']})"
    )


def _run_foreground(db: Any, settings: Any, job_id: int) -> Any:
    """Run a queued job through the worker, printing progress; Ctrl-C cancels it cleanly."""
    from agents.training.runner import JobRunner

    runner = JobRunner(db, settings.data_dir / "training" / "logs")
    last: list[Any] = [None]

    def show(job: Any) -> None:
        if job.progress and job.progress != last[0]:
            last[0] = job.progress
            typer.echo(progress_line(job.progress))

    # Ctrl-C reaches the worker too (same process group): it stops after its current step, keeps
    # its checkpoint, and the runner records the job as cancelled (`familiar train retry` resumes)
    return runner.run(job_id, show)


def _report(job: Any) -> None:
    if job.state == "succeeded":
        result = job.result or {}
        typer.echo(
            f"job {job.id} succeeded: adapter in {result.get('adapter_dir')} "
            f"(final loss {result['losses'][-1]:.4f}, {result.get('oom_retries', 0)} OOM retries)"
        )
        return
    typer.echo(f"job {job.id} {job.state}: {job.error or ''}", err=True)
    raise typer.Exit(1)


@train_app.command("fit")
@_friendly
def fit(
    base_model: Path | None = typer.Option(
        None, "--base-model", help="Local base model directory (default: training.base_model)."
    ),
    data: Path = typer.Option(
        ..., "--data", help='Chat JSONL: one {"messages": [{"role", "content"}, ...]} per line.'
    ),
    out: Path = typer.Option(
        ..., "--out", help="Output directory: checkpoints, then adapter/ and training.json."
    ),
    steps: int | None = typer.Option(
        None, "--steps", min=1, help="Optimizer steps (default: training.steps)."
    ),
    seed: int = typer.Option(
        0, "--seed", help="Seed of initialisation and data order (same seed, same adapter)."
    ),
) -> None:
    """Train an adapter directly from your own chat data, through the training worker."""
    from agents.training.data import load_chat_jsonl
    from agents.training.jobs import JobQueue
    from agents.training.trainer import TrainConfig

    settings = _settings()
    training = _training(settings)
    load_chat_jsonl(data)  # fail here, before a worker starts, on a malformed file
    config = TrainConfig.from_settings(
        training,
        base_model=(base_model or training.base_model),
        data=data.resolve(),
        out=out.resolve(),
        steps=steps,
        seed=seed,
    )
    if config.base_model is None:
        from agents.training.base_model import FIX
        from agents.training.errors import BaseModelError

        raise BaseModelError("no base model given", FIX)
    db = _db(settings)
    try:
        job_id = JobQueue(db).enqueue(
            config.to_dict() | {"base_model": str(Path(config.base_model).resolve())}
        )
        typer.echo(f"job {job_id}: training {config.steps} steps on {data}")
        _report(_run_foreground(db, settings, job_id))
    finally:
        db.close()


@train_app.command("status")
@_friendly
def status(
    job_id: int | None = typer.Argument(None, help="A job id; without it, the latest jobs."),
    pipeline: int | None = typer.Option(
        None,
        "--pipeline",
        "-p",
        help="Show this archetype pipeline with the transcript of each review.",
    ),
) -> None:
    """Show training jobs and archetype pipelines with their progress."""
    from agents.training.jobs import JobQueue

    settings = _settings()
    db = _db(settings)
    try:
        if pipeline is not None:
            from agents.training.pipeline import PipelineStore
            from agents.training.progress import pipeline_text, review_lines

            row = PipelineStore(db).get(pipeline)
            typer.echo(pipeline_text(row))
            typer.echo("\n".join(["", *(review_lines(row) or ["no reviews yet"])]))
            return
        queue = JobQueue(db)
        jobs = [queue.get(job_id)] if job_id is not None else queue.list()
        for job in jobs:
            line = f"job {job.id}  {job.state:<9}  {Path(job.config.get('out', '')).name}"
            if job.progress:
                line += "  " + progress_line(job.progress)
            typer.echo(line)
            if job.error and job_id is not None:
                typer.echo(f"  {job.error}")
        if job_id is None:
            from agents.training.pipeline import PipelineStore

            for p in PipelineStore(db).list():
                typer.echo(
                    f"pipeline {p['id']}  {p['archetype']}  {p['state']}  stage {p['stage']}"
                    + (f"  {p['error']}" if p["error"] else "")
                )
        if not jobs:
            typer.echo("no training jobs")
    finally:
        db.close()


@train_app.command("cancel")
@_friendly
def cancel(job_id: int = typer.Argument(..., help="The job to cancel.")) -> None:
    """Cancel a job: a queued one at once, a running one after its current step."""
    from agents.training.jobs import JobQueue

    db = _db(_settings())
    try:
        job = JobQueue(db).request_cancel(job_id)
        typer.echo(
            f"job {job.id}: {'cancelled' if job.state == 'cancelled' else 'cancel requested'}"
        )
    finally:
        db.close()


@train_app.command("retry")
@_friendly
def retry(
    job_id: int = typer.Argument(..., help="A failed or cancelled job."),
    now: bool = typer.Option(
        False, "--now", help="Run it here in the foreground instead of in the daemon."
    ),
) -> None:
    """Queue a failed or cancelled job again; it resumes from its last checkpoint."""
    from agents.training.jobs import JobQueue

    settings = _settings()
    db = _db(settings)
    try:
        JobQueue(db).retry(job_id)
        if now:
            _report(_run_foreground(db, settings, job_id))
        else:
            typer.echo(f"job {job_id} queued again; the daemon resumes it from its last checkpoint")
    finally:
        db.close()


@train_app.command("start")
@_friendly
def start(
    name: str = typer.Argument(..., help="Archetype name: lowercase letters, digits, '-'."),
    description: str = typer.Argument(..., help="What the persona is, in a sentence or two."),
) -> None:
    """Start the archetype pipeline (spec, data, inspect, train, evaluate, promote); the daemon runs it."""
    from agents.training.pipeline import PipelineStore
    from agents.training.registry import check_slug

    db = _db(_settings())
    try:
        pipeline_id = PipelineStore(db).create(check_slug(name), description)
        typer.echo(f"pipeline {pipeline_id} for {name} queued; `familiar train status` follows it")
    finally:
        db.close()


def _registry(settings: Any) -> Any:
    from agents.training.registry import AdapterRegistry

    return AdapterRegistry(settings.data_dir / "adapters")


@adapters_app.command("list")
@_friendly
def list_adapters(
    name: str | None = typer.Argument(None, help="One archetype; without it, all."),
) -> None:
    """List adapter versions with their evaluation; * marks the promoted one."""
    registry = _registry(_settings())
    names = [name] if name else registry.archetypes()
    if not names:
        typer.echo("no adapters yet")
    for archetype in names:
        for v in registry.versions(archetype):
            ev = v.evaluation or {}
            summary = (
                f"held-out loss {ev['adapter_loss']:.3f} vs base {ev['base_loss']:.3f}"
                if "adapter_loss" in ev
                else "not evaluated"
            )
            typer.echo(
                f"{'*' if v.promoted else ' '} {archetype} {v.version}  {v.metadata.get('created_at', '')}  {summary}"
            )


@adapters_app.command("promote")
@_friendly
def promote(
    name: str = typer.Argument(..., help="Archetype."),
    version: str = typer.Argument(..., help="Version, e.g. v2."),
) -> None:
    """Serve this version for the archetype (its checksums are verified first)."""
    v = _registry(_settings()).promote(name, version)
    typer.echo(f"{v.archetype} {v.version} promoted")


@adapters_app.command("rollback")
@_friendly
def rollback(name: str = typer.Argument(..., help="Archetype.")) -> None:
    """Serve the previously promoted version again (or the base model if there was none)."""
    v = _registry(_settings()).rollback(name)
    typer.echo(f"{name}: now serving {v.version if v else 'the base model'}")
