"""``familiar train status|cancel|retry|start`` and ``adapters list`` on the job table, through the
CLI: a queued job is cancelled at once, a finished one cannot be, only failed or cancelled jobs
are retried, and every refusal is a message with a fix (exit 2, as every refusal of the CLI),
never a traceback.

Real SQLite in the test's data directory; no worker runs here (test_cli.py trains for real).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from agents.training.jobs import JobQueue
from bot.cli.train import adapters_app, train_app
from bot.config import load_settings
from bot.daemon.run import open_database


def train(*args: str) -> Result:
    return CliRunner().invoke(train_app, list(args))


@pytest.fixture
def queue(data_dir: Path) -> Iterator[JobQueue]:
    db = open_database(load_settings())
    yield JobQueue(db)
    db.close()


def job_config(name: str) -> dict:
    return {"out": f"/tmp/runs/{name}", "steps": 10}


def test_a_fresh_install_has_no_jobs_and_no_adapters(data_dir: Path) -> None:
    assert train("status").stdout == "no training jobs\n"
    assert CliRunner().invoke(adapters_app, ["list"]).stdout == "no adapters yet\n"


def test_a_queued_job_is_cancelled_at_once_and_then_cannot_be_cancelled_again(
    queue: JobQueue,
) -> None:
    job_id = queue.enqueue(job_config("style"))

    result = train("cancel", str(job_id))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"job {job_id}: cancelled\n"
    assert queue.get(job_id).state == "cancelled"

    again = train("cancel", str(job_id))
    assert again.exit_code == 2
    assert f"training job {job_id} has already cancelled" in again.output
    assert "Traceback" not in again.output


def test_a_running_job_is_asked_to_stop_after_its_step(queue: JobQueue) -> None:
    job_id = queue.enqueue(job_config("style"))
    assert queue.claim(job_id)
    result = train("cancel", str(job_id))
    assert result.stdout == f"job {job_id}: cancel requested\n"
    assert queue.get(job_id).state == "running" and queue.cancel_requested(job_id)


def test_a_failed_job_is_shown_with_its_error_and_queued_again_by_retry(
    queue: JobQueue,
) -> None:
    job_id = queue.enqueue(job_config("style"))
    assert queue.claim(job_id)
    assert queue.fail(job_id, "CUDA out of memory at micro-batch 1")

    shown = train("status", str(job_id))
    assert shown.exit_code == 0, shown.output
    first, detail = shown.stdout.splitlines()
    assert first.split() == ["job", str(job_id), "failed", "style"]
    assert detail.strip() == "CUDA out of memory at micro-batch 1"

    retried = train("retry", str(job_id))
    assert retried.exit_code == 0, retried.output
    assert "queued again" in retried.stdout
    job = queue.get(job_id)
    assert (job.state, job.error) == ("queued", None)


def test_only_failed_or_cancelled_jobs_are_retried(queue: JobQueue) -> None:
    job_id = queue.enqueue(job_config("style"))
    result = train("retry", str(job_id))
    assert result.exit_code == 2
    assert f"training job {job_id} is queued; only failed or cancelled jobs" in result.output
    assert queue.get(job_id).state == "queued"


def test_an_unknown_job_is_named_with_where_to_look(data_dir: Path) -> None:
    for args in (["status", "41"], ["cancel", "41"], ["retry", "41"]):
        result = train(*args)
        assert result.exit_code == 2, args
        assert "there is no training job 41" in result.output
        assert "familiar train status" in result.output


def test_start_queues_a_pipeline_that_status_then_lists(data_dir: Path) -> None:
    started = train("start", "pirate-captain", "Speaks like an old sea captain.")
    assert started.exit_code == 0, started.output
    assert started.stdout.startswith("pipeline 1 for pirate-captain queued")

    listed = train("status")
    assert listed.exit_code == 0, listed.output
    assert "pipeline 1  pirate-captain  running  stage spec" in listed.stdout


def test_start_refuses_a_name_that_is_not_a_slug(data_dir: Path) -> None:
    result = train("start", "../../etc", "a path, not a name")
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert train("status").stdout == "no training jobs\n"  # nothing was queued
