"""The queue, the worker child process and the runner: progress, cancel, retry, deaths, recovery."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from agents.training.jobs import JobQueue, migrations
from agents.training.runner import JobRunner
from agents.training.trainer import TrainConfig
from agents.training.worker import EXIT_FAILED, run_job
from memory.db import Database

from .test_trainer import config


@pytest.fixture
def db(tmp_path: Path):
    database = Database.open(tmp_path / "familiar.db", [migrations])
    yield database
    database.close()


def runner(db: Database, tmp_path: Path, **kw) -> JobRunner:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # see conftest.one_torch_thread
    return JobRunner(db, tmp_path / "logs", env=env, poll_s=0.1, **kw)


def test_worker_trains_reports_progress_is_cancelled_and_resumes_on_retry(
    db: Database, tiny_model: Path, chat_data: Path, tmp_path: Path
) -> None:
    queue = JobQueue(db)
    cfg: TrainConfig = config(tiny_model, chat_data, tmp_path / "out", steps=60, checkpoint_every=2)
    job_id = queue.enqueue(cfg.to_dict())
    seen: list[int] = []

    def cancel_after_some_steps(job) -> None:
        if job.progress:
            seen.append(job.progress["step"])
            if not job.cancel_requested:  # at the first progress the worker writes (step 1)
                queue.request_cancel(job.id)

    cancelled = runner(db, tmp_path).run(job_id, cancel_after_some_steps)
    assert cancelled.state == "cancelled", cancelled.error
    assert "cancelled at step" in (cancelled.error or "")
    stopped_at = int(cancelled.error.split("step ")[1].split()[0])
    assert 1 <= stopped_at < 60 and seen and max(seen) <= stopped_at

    queue.retry(job_id)
    done = runner(db, tmp_path).run(job_id)
    assert done.state == "succeeded", done.error
    assert done.result["resumed_from"] == stopped_at // 2 * 2  # from the last checkpoint
    assert done.progress["step"] == 60 and done.attempts == 2
    assert (Path(done.result["adapter_dir"]) / "adapter_model.safetensors").is_file()


def test_retry_resumes_from_the_checkpoint(db: Database, tiny_model: Path, chat_data: Path, tmp_path: Path) -> None:
    queue = JobQueue(db)
    cfg = config(tiny_model, chat_data, tmp_path / "out", steps=10, checkpoint_every=4)
    job_id = queue.enqueue(cfg.to_dict())
    stop = threading.Event()

    class StopAt:
        def __call__(self, step: int) -> None:
            if step == 6:
                stop.set()

    assert run_job(db, job_id, stop, fault=StopAt()) == 3
    assert queue.get(job_id).state == "cancelled"
    queue.retry(job_id)
    assert run_job(db, job_id, threading.Event()) == 0
    job = queue.get(job_id)
    assert job.state == "succeeded" and job.result["resumed_from"] == 4 and job.progress["step"] == 10


def test_a_worker_that_dies_silently_is_a_readable_failure(db: Database, tmp_path: Path) -> None:
    queue = JobQueue(db)
    job_id = queue.enqueue({"base_model": "x", "data": "y", "out": str(tmp_path)})
    die = "import os, signal; print('loading the model', flush=True); os.kill(os.getpid(), signal.SIGKILL)"
    job = runner(db, tmp_path, command=lambda _id: [sys.executable, "-c", die]).run(job_id)
    assert job.state == "failed"
    assert "died with signal SIGKILL without reporting a result" in job.error
    assert "ran out of memory" in job.error and "loading the model" in job.error


def test_a_bad_base_model_fails_the_job_with_the_fix(db: Database, chat_data: Path, tmp_path: Path) -> None:
    queue = JobQueue(db)
    job_id = queue.enqueue(config(tmp_path / "nowhere", chat_data, tmp_path / "out").to_dict())
    assert run_job(db, job_id, threading.Event()) == EXIT_FAILED
    job = queue.get(job_id)
    assert job.state == "failed" and "does not exist" in job.error and "fix: " in job.error


def test_queue_rules_cancel_retry_and_recovery(db: Database, tmp_path: Path) -> None:
    queue = JobQueue(db)
    a = queue.enqueue({"steps": 1})
    assert queue.request_cancel(a).state == "cancelled"  # queued: cancelled at once
    with pytest.raises(Exception, match="already cancelled"):
        queue.request_cancel(a)
    with pytest.raises(Exception, match="only failed or cancelled"):
        queue.retry(queue.enqueue({"steps": 1}))
    b = queue.next_queued().id
    assert queue.claim(b) and not queue.claim(b)  # a second runner cannot take it
    queue._update(b, None, pid=2**22 + 12345)  # a worker pid that no longer exists
    assert runner(db, tmp_path).recover() == [b]
    assert queue.get(b).state == "queued"
