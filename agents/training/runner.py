"""The daemon side of training: one job at a time, each in its own child process.

``JobRunner.run(job_id)`` claims a queued job, starts ``python -m agents.training.worker``, relays
progress from SQLite, turns a cancel request into SIGTERM (then SIGKILL after a grace period),
and records a worker that died without reporting (OOM killer, segfault, ``kill -9``) as a
failure that says how it died and what it last wrote. ``serve`` loops over the queue for the
daemon; ``recover`` re-queues jobs left running by a previous daemon, so they resume. The worker
is told this process's pid and stops when it ends (``worker.ParentWatch``), however it ends.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from loguru import logger

from agents.training.jobs import QUEUED, RUNNING, Job, JobQueue
from memory.db import Database

CommandFn = Callable[[int], list[str]]
ProgressFn = Callable[[Job], None]
LOG_TAIL_CHARS = 1500


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit status {returncode}"


class JobRunner:
    def __init__(
        self,
        db: Database,
        log_dir: Path,
        *,
        command: CommandFn | None = None,
        env: dict[str, str] | None = None,
        poll_s: float = 0.5,
        cancel_grace_s: float = 30.0,
    ) -> None:
        self.db = db
        self.queue = JobQueue(db)
        self.log_dir = Path(log_dir)
        self.command = command or self.worker_command
        self.env = env
        self.poll_s = poll_s
        self.cancel_grace_s = cancel_grace_s
        self.current: tuple[int, subprocess.Popen[bytes]] | None = None

    def worker_command(self, job_id: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "agents.training.worker",
            str(job_id),
            "--db",
            str(self.db.path),
            "--parent-pid",  # the worker stops when this process ends, however it ends
            str(os.getpid()),
        ]

    def log_path(self, job_id: int) -> Path:
        return self.log_dir / f"job-{job_id}.log"

    def run(self, job_id: int, on_progress: ProgressFn | None = None) -> Job:
        """Run a queued job to its end in a child process (blocking); returns the final row."""
        if not self.queue.claim(job_id):
            return self.queue.get(job_id)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path(job_id), "ab") as log:
            proc = subprocess.Popen(
                self.command(job_id),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        self.current = (job_id, proc)
        logger.info("training job {} started in process {}", job_id, proc.pid)
        try:
            self._watch(job_id, proc, on_progress)
        except (
            KeyboardInterrupt
        ):  # Ctrl-C in `familiar train fit`: stop the worker cleanly, then report
            self.queue._update(job_id, None, cancel_requested=1)
            proc.terminate()
            try:
                proc.wait(timeout=self.cancel_grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        finally:
            self.current = None
        return self._settle(job_id, proc.returncode)

    def _watch(
        self, job_id: int, proc: subprocess.Popen[bytes], on_progress: ProgressFn | None
    ) -> None:
        seen = None
        term_at: float | None = None
        while True:
            try:
                proc.wait(timeout=self.poll_s)
                break
            except subprocess.TimeoutExpired:
                pass
            job = self.queue.get(job_id)
            if on_progress is not None and job.progress != seen:
                seen = job.progress
                on_progress(job)
            if job.cancel_requested and term_at is None:
                proc.terminate()
                term_at = time.monotonic()
            elif term_at is not None and time.monotonic() - term_at > self.cancel_grace_s:
                logger.warning(
                    "training job {} ignored SIGTERM for {} s: killing it",
                    job_id,
                    self.cancel_grace_s,
                )
                proc.kill()
        if on_progress is not None:
            on_progress(self.queue.get(job_id))

    def _settle(self, job_id: int, returncode: int) -> Job:
        job = self.queue.get(job_id)
        if job.state in (QUEUED, RUNNING):  # the worker ended without recording an outcome
            if job.cancel_requested:
                self.queue.mark_cancelled(
                    job_id, f"cancelled (worker ended with {describe_exit(returncode)})"
                )
            else:
                self.queue.fail(job_id, self._death_message(job_id, returncode))
            job = self.queue.get(job_id)
        logger.info("training job {} {}", job_id, job.state)
        return job

    def _death_message(self, job_id: int, returncode: int) -> str:
        try:
            tail = (
                self.log_path(job_id)
                .read_text(encoding="utf-8", errors="replace")[-LOG_TAIL_CHARS:]
                .strip()
            )
        except OSError:
            tail = ""
        message = (
            f"the training worker died with {describe_exit(returncode)} without reporting a result"
            f" (log: {self.log_path(job_id)})"
        )
        if returncode == -signal.SIGKILL:
            message += "; SIGKILL usually means the system ran out of memory"
        return message + (f"\nlast output:\n{tail}" if tail else "")

    def recover(self) -> list[int]:
        """Jobs left 'running' by a previous daemon whose worker is gone go back to the queue."""
        requeued = []
        for job in self.queue.running():
            if job.pid is not None and _alive(job.pid):
                continue  # a worker of the previous daemon still runs; it will record its outcome
            self.queue.requeue(job.id)
            requeued.append(job.id)
        return requeued

    async def serve(self, stop: asyncio.Event, on_progress: ProgressFn | None = None) -> None:
        """The daemon's loop: run queued jobs one at a time until ``stop`` is set."""
        await self.db.run(self.recover)
        while not stop.is_set():
            job = await self.db.run(self.queue.next_queued)
            if job is None:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=max(self.poll_s, 2.0))
                except TimeoutError:
                    pass
                continue
            task = asyncio.create_task(asyncio.to_thread(self.run, job.id, on_progress))
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set() and not task.done():
                # shutting down: stop the worker cleanly; the job goes back to the queue to resume
                if self.current is not None:
                    self.current[1].terminate()
                await task
                await self.db.run(self._requeue_if_cancelled_by_shutdown, job.id)
            stopper.cancel()

    def _requeue_if_cancelled_by_shutdown(self, job_id: int) -> None:
        job = self.queue.get(job_id)
        if job.state == "cancelled" and not job.cancel_requested:
            self.queue.retry(job_id)
