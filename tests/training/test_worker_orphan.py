"""A training worker dies with the process that started it: a real ``familiar train fit``
process killed alone (SIGTERM or SIGKILL, not its process group) on the tiny model, and the
watch itself with a parent that is already gone."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agents.training.worker import ParentWatch

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for a parent that may never reap it (a container's init)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def job_row(db: Path) -> tuple | None:
    if not db.exists():
        return None
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            return conn.execute(
                "SELECT state, pid, progress, error FROM train_jobs WHERE id = 1"
            ).fetchone()
    except sqlite3.Error:
        return None


@pytest.mark.timeout(240)
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killing_train_fit_alone_stops_its_worker(
    tiny_model: Path, chat_data: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    env = {
        **os.environ,
        "FAMILIAR_DATA_DIR": str(data_dir),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("FAMILIAR_CONFIG", None)
    fit = subprocess.Popen(
        [sys.executable, "-m", "bot.cli.app", "train", "fit", "--base-model", str(tiny_model),
         "--data", str(chat_data), "--out", str(tmp_path / "out"), "--steps", "100000"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    db = data_dir / "familiar.db"
    worker = None
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            row = job_row(db)
            if row and row[1] and row[2] and json.loads(row[2]).get("step", 0) >= 1:
                worker = int(row[1])
                break
            assert fit.poll() is None, "train fit ended before training got going"
            time.sleep(0.2)
        assert worker is not None and alive(worker), f"no training step in time: {job_row(db)}"

        fit.send_signal(sig)  # the parent alone: the worker is not in the signal's way
        fit.wait(timeout=30)
        gone_by = time.monotonic() + 30
        while alive(worker) and time.monotonic() < gone_by:
            time.sleep(0.2)
        assert not alive(worker), "the worker outlived the `familiar train fit` that started it"
        state, pid, progress, _ = job_row(db)  # type: ignore[misc]
        # A crash, not a cancel: queued again, its progress kept, for the next daemon to resume.
        assert state == "queued" and pid is None
        assert 1 <= json.loads(progress)["step"] < 100000  # stopped, not run to its end
    finally:
        if fit.poll() is None:
            fit.kill()
            fit.wait()
        if worker is not None and alive(worker):
            os.kill(worker, signal.SIGKILL)


def test_the_watch_stops_the_worker_then_ends_it_past_the_grace() -> None:
    stop = threading.Event()
    ended: list[str] = []
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that is no parent of ours any more
    watch = ParentWatch(gone.pid, stop, poll_s=0.01, grace_s=0.2, on_hard_exit=ended.append)
    watch.start()
    assert stop.wait(5) and watch.gone
    assert "the process that started the worker (pid" in (watch.reason or "")
    deadline = time.monotonic() + 5
    while not ended and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ended == [watch.reason]  # a worker stuck past the grace is ended, saying why

    ours = threading.Event()
    ParentWatch(os.getppid(), ours, poll_s=0.01).start()
    assert not ours.wait(0.3)  # a living parent: nothing happens
