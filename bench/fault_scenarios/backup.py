"""Scenario 3: SIGKILL during ``familiar backup``; the last good archive restores on a new machine."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.fault_scenarios.harness import (
    Context,
    Trial,
    base_env,
    familiar,
    last_error,
    write_records,
)
from tests.telegram.conftest import VENV_BIN


def memory_rows(db: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute(
            "SELECT id, kind, text, content_hash FROM memories ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


def backup_kill(ctx: Context, trial: Trial, rng: random.Random, n: int) -> None:
    data = ctx.work / f"backup-{n}" / "data"
    data.mkdir(parents=True)
    dest = data.parent / "archives"
    env = base_env(data)
    source = data.parent / "records.jsonl"
    write_records(source, rng.choice([300, 1200]), f"bk{n}r")
    seeded = familiar(env, "memory", "import", str(source))
    if seeded.returncode != 0:
        trial.recovered = False
        trial.fail(f"could not seed memory: {last_error(seeded)}")
        return
    first = familiar(env, "backup", "--dest", str(dest))
    if first.returncode != 0:
        trial.recovered = False
        trial.fail(f"the first backup failed: {last_error(first)}")
        return
    good = sorted(p for p in dest.iterdir() if p.is_file() and not p.name.startswith("."))
    proc = subprocess.Popen(
        [str(VENV_BIN / "familiar"), "backup", "--dest", str(dest)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(rng.uniform(0.0, 4.0))
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    finals = sorted(p for p in dest.iterdir() if p.is_file() and not p.name.startswith("."))
    for archive in finals:
        verified = familiar(env, "backup", "verify", str(archive))
        if verified.returncode != 0:
            trial.corrupt = True
            trial.fail(f"{archive.name} is under its final name but does not verify")
    restarted = time.monotonic()
    later = familiar(env, "backup", "--dest", str(dest))
    trial.recovery_s = time.monotonic() - restarted
    if later.returncode != 0:
        trial.recovered = False
        trial.fail(f"the next backup failed: {last_error(later)}")
    leftovers = [p.name for p in dest.iterdir() if p.name.startswith(".")]
    leftovers += [p.name for p in data.iterdir() if p.name.startswith(".familiar-verify")]
    leftovers += [p.name for p in Path(tempfile.gettempdir()).glob(".familiar-verify-*")]
    if leftovers:
        trial.corrupt = True
        trial.fail(f"partials left after the next backup: {leftovers[:3]}")
    newest = good[-1]
    fresh = data.parent / "new-machine" / "data"  # a new machine: the data dir does not exist
    restored = familiar(base_env(fresh), "restore", str(newest))
    if restored.returncode != 0:
        trial.recovered = False
        trial.fail(f"restore onto a new machine failed: {last_error(restored)}")
        return
    if memory_rows(fresh / "familiar.db") != memory_rows(data / "familiar.db"):
        trial.rows_lost += 1
        trial.fail("the restored memory differs from the original")
