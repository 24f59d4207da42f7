"""The training child process: ``python -m agents.training.worker JOB_ID --db PATH``.

It runs one job from ``train_jobs`` (a training run, or with ``kind: evaluate`` the model side
of an evaluation) and records its outcome there, so that an out-of-memory
error, a crash or a hung GPU takes down this process and never the daemon. SIGTERM (or SIGINT,
or ``cancel_requested`` set in the row) stops it between two steps; the last checkpoint stays,
so ``retry`` resumes. Exit status: 0 succeeded, 1 failed, 3 cancelled, 4 not startable.

Started with ``--parent-pid`` (the runner always passes it) the worker dies with the process that
started it (``ParentWatch``): killed alone, ``familiar train fit`` or the daemon would otherwise
leave a worker nobody relays or cancels, holding the GPU a new daemon may give another job. Such a
stop is a crash, not a cancel: the job goes back to the queue (as the daemon's ``recover`` does
with a job whose worker is gone), so the next daemon resumes it from its checkpoint.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loguru import logger

from memory.db import Database
from memory.errors import FamiliarError

EXIT_OK, EXIT_FAILED, EXIT_CANCELLED, EXIT_NOT_STARTABLE = 0, 1, 3, 4
PROGRESS_EVERY_S = (
    1.0  # SQLite writes of progress, at most this often (and at checkpoints, the end)
)
CANCEL_POLL_S = 0.25  # a cheap SQLite read; cancel should feel immediate
ORPHANED = "{}; job {} is queued again and resumes from its last checkpoint when a daemon runs"


GRACE_S = 30.0  # after the parent ended: time to stop between two steps before a hard exit


class ParentWatch:
    """Sets ``stop`` once the process that started the worker has ended, then, if the worker is
    still there ``grace_s`` later (loading a model, in a long step), calls ``on_hard_exit``.

    It polls ``os.getppid()``, which changes when the parent dies (the worker is re-parented to
    init or a subreaper). ``PR_SET_PDEATHSIG`` would be immediate but is Linux-only and fires
    when the *thread* that started the child ends, and the daemon starts workers from a thread
    pool; a check every half second is soon enough for a run of minutes."""

    def __init__(
        self,
        parent_pid: int,
        stop: threading.Event,
        *,
        poll_s: float = 0.5,
        grace_s: float = GRACE_S,
        on_hard_exit: Callable[[str], None] | None = None,
    ) -> None:
        self.parent_pid, self.stop = parent_pid, stop
        self.poll_s, self.grace_s = poll_s, grace_s
        self.on_hard_exit = on_hard_exit
        self.gone = False

    @property
    def reason(self) -> str | None:
        if not self.gone:
            return None
        return f"the process that started the worker (pid {self.parent_pid}) ended"

    def start(self) -> None:
        threading.Thread(target=self._watch, name="parent-watch", daemon=True).start()

    def _watch(self) -> None:
        while os.getppid() == self.parent_pid:
            time.sleep(self.poll_s)
        self.gone = True
        logger.warning("{}: stopping after the current step", self.reason)
        self.stop.set()
        time.sleep(self.grace_s)  # a daemon thread: a worker that ended by then never gets here
        if self.on_hard_exit is not None:
            self.on_hard_exit(self.reason or "")


def run_job(
    db: Database,
    job_id: int,
    stop: threading.Event,
    fault: Any = None,
    why_stopped: Callable[[], str | None] = lambda: None,
) -> int:
    """Run job ``job_id`` to its end and record the outcome; returns the exit status.
    ``why_stopped`` names a stop that is no one's cancel (the parent ended) for the record."""

    from agents.training.errors import Cancelled
    from agents.training.jobs import JobQueue
    from agents.training.trainer import TrainConfig, train

    queue = JobQueue(db)
    if not queue.start(job_id, os.getpid()):
        logger.warning("training job {} is not startable (cancelled or finished)", job_id)
        return EXIT_NOT_STARTABLE
    job = queue.get(job_id)
    checkpoint_every = int(job.config.get("checkpoint_every") or 0)
    last_write = 0.0
    last_poll = time.monotonic()

    def on_progress(progress: Any) -> None:
        nonlocal last_write
        at = time.monotonic()
        at_checkpoint = checkpoint_every > 0 and progress.step % checkpoint_every == 0
        if (
            at - last_write >= PROGRESS_EVERY_S
            or at_checkpoint
            or progress.step == progress.total_steps
        ):
            queue.set_progress(job_id, progress.as_dict())
            last_write = at

    def should_stop() -> bool:
        nonlocal last_poll
        if stop.is_set():
            return True
        if time.monotonic() - last_poll >= CANCEL_POLL_S:
            last_poll = time.monotonic()
            return queue.cancel_requested(job_id)
        return False

    try:
        if job.config.get("kind") == "evaluate":
            from agents.training.evaluate import evaluate_job

            queue.succeed(job_id, evaluate_job(job.config))
            return EXIT_OK
        config = TrainConfig.from_dict(job.config)
        result = train(config, on_progress=on_progress, should_stop=should_stop, fault=fault)
    except Cancelled as exc:
        why = why_stopped()
        if why is None:
            queue.mark_cancelled(job_id, str(exc))
        else:  # no one cancelled it: a crash of the starter, which the daemon's recover() undoes
            queue.requeue(job_id)
            logger.warning(ORPHANED, why, job_id)
        return EXIT_CANCELLED
    except FamiliarError as exc:
        queue.fail(job_id, exc.explain())
        return EXIT_FAILED
    except (
        Exception
    ) as exc:  # anything else is recorded with its type; the traceback goes to the log
        traceback.print_exc()
        queue.fail(job_id, f"training crashed: {type(exc).__name__}: {exc}")
        return EXIT_FAILED
    queue.succeed(job_id, result.as_dict())
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    from agents.training.jobs import JobQueue, migrations

    parser = argparse.ArgumentParser(prog="python -m agents.training.worker", description=__doc__)
    parser.add_argument("job_id", type=int)
    parser.add_argument("--db", type=Path, required=True, help="path of familiar.db")
    parser.add_argument(
        "--parent-pid", type=int, default=None, help="stop when this process (the starter) ends"
    )
    args = parser.parse_args(argv)
    stop = threading.Event()
    watch = None

    def on_signal(signum: int, _frame: Any) -> None:
        logger.info("signal {} received: stopping after the current step", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        db = Database.open(args.db, [migrations])
    except FamiliarError as exc:
        print(exc.explain(), file=sys.stderr)
        return EXIT_FAILED
    if args.parent_pid is not None:

        def hard_exit(why: str) -> None:
            # Stuck past the grace (a model still loading): back to the queue, then go at once.
            try:
                JobQueue(db).requeue(args.job_id)
                logger.warning(ORPHANED, why, args.job_id)
            except Exception:
                logger.opt(exception=True).warning("could not record why the worker stopped")
            finally:
                os._exit(EXIT_CANCELLED)

        watch = ParentWatch(args.parent_pid, stop, on_hard_exit=hard_exit)
        watch.start()
    try:
        return run_job(db, args.job_id, stop, why_stopped=lambda: watch.reason if watch else None)
    finally:
        db.close()


if __name__ == "__main__":
    sys.exit(main())
