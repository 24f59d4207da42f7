"""The queue, the worker child process and the runner: progress, cancel, retry, deaths, recovery."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest
import torch

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


def test_worker_is_cancelled_then_killed_and_still_ends_with_the_uninterrupted_weights(
    db: Database, tiny_model: Path, chat_data: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    from agents.training.trainer import train

    queue = JobQueue(db)
    cfg: TrainConfig = config(tiny_model, chat_data, tmp_path / "out", steps=80, checkpoint_every=5)
    job_id = queue.enqueue(cfg.to_dict())
    seen: list[int] = []

    def cancel_at_first_progress(job) -> None:
        if job.progress:
            seen.append(job.progress["step"])
            if not job.cancel_requested:
                queue.request_cancel(job.id)

    cancelled = runner(db, tmp_path).run(job_id, cancel_at_first_progress)
    assert cancelled.state == "cancelled", cancelled.error
    stopped_at = int(cancelled.error.split("cancelled at step ")[1].split()[0])
    assert 1 <= stopped_at < 80 and seen and max(seen) <= stopped_at

    queue.retry(job_id)
    killer = runner(db, tmp_path)

    def kill_at_first_progress(job) -> None:
        if job.progress and job.progress["step"] > stopped_at and killer.current is not None:
            killer.current[1].kill()  # SIGKILL: no handler runs, nothing is recorded by the worker

    killed = killer.run(job_id, kill_at_first_progress)
    assert killed.state == "failed" and "signal SIGKILL" in killed.error, killed.error
    last_step = killed.progress["step"]
    assert last_step < 80

    queue.retry(job_id)
    done = runner(db, tmp_path).run(job_id)
    assert done.state == "succeeded", done.error
    assert done.result["resumed_from"] >= stopped_at // 5 * 5  # from a checkpoint, not from scratch
    assert done.progress["step"] == 80 and done.attempts == 3

    straight = train(
        config(tiny_model, chat_data, tmp_path / "straight", steps=80, checkpoint_every=5)
    )
    a = load_file(str(Path(done.result["adapter_dir"]) / "adapter_model.safetensors"))
    b = load_file(str(straight.adapter_dir / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_retry_resumes_from_the_checkpoint(
    db: Database, tiny_model: Path, chat_data: Path, tmp_path: Path
) -> None:
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
    assert (
        job.state == "succeeded" and job.result["resumed_from"] == 4 and job.progress["step"] == 10
    )


def test_a_worker_that_dies_silently_is_a_readable_failure(db: Database, tmp_path: Path) -> None:
    queue = JobQueue(db)
    job_id = queue.enqueue({"base_model": "x", "data": "y", "out": str(tmp_path)})
    die = "import os, signal; print('loading the model', flush=True); os.kill(os.getpid(), signal.SIGKILL)"
    job = runner(db, tmp_path, command=lambda _id: [sys.executable, "-c", die]).run(job_id)
    assert job.state == "failed"
    assert "died with signal SIGKILL without reporting a result" in job.error
    assert "ran out of memory" in job.error and "loading the model" in job.error


def test_a_bad_base_model_fails_the_job_with_the_fix(
    db: Database, chat_data: Path, tmp_path: Path
) -> None:
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
