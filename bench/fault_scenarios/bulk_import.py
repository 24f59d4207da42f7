"""Scenario 2: SIGKILL during ``familiar memory import``, then the same import again."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import time

from bench.fault_scenarios.harness import (
    Context,
    Trial,
    base_env,
    check_store,
    familiar,
    last_error,
    wait_until,
    write_records,
)
from tests.telegram.conftest import VENV_BIN


def import_kill(ctx: Context, trial: Trial, rng: random.Random, n: int) -> None:
    data = ctx.work / f"import-{n}" / "data"
    data.mkdir(parents=True)
    source = data.parent / "records.jsonl"
    total = rng.choice([800, 1500, 3000])
    prefix = f"rec{n}k"
    write_records(source, total, prefix)
    env = base_env(data) | {"FAMILIAR_MEMORY__INDEX_SAVE_EVERY": str(rng.choice([50, 200, 1000]))}
    proc = subprocess.Popen(
        [str(VENV_BIN / "familiar"), "memory", "import", str(source), "--batch", "64"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db = data / "familiar.db"
    target = rng.randint(0, total)  # kill once about this many rows are committed

    def committed() -> int:
        conn = sqlite3.connect(db, timeout=1)
        try:
            return int(conn.execute("SELECT count(*) FROM memories").fetchone()[0])
        finally:
            conn.close()

    wait_until(
        lambda: proc.poll() is not None or (db.exists() and committed() >= target), 300, 0.05
    )
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    after_kill = committed() if db.exists() else 0
    conn = sqlite3.connect(db, timeout=30)
    try:
        refs = [r[0] for r in conn.execute("SELECT ref FROM memories ORDER BY id")]
        unembedded = conn.execute(
            "SELECT count(*) FROM memories WHERE embedding IS NULL"
        ).fetchone()[0]
    finally:
        conn.close()
    if refs != [f"{prefix}{i}" for i in range(len(refs))]:
        trial.rows_lost += 1
        trial.fail("rows after the kill are not a whole prefix of the file")
    if unembedded:
        trial.corrupt = True
        trial.fail(f"{unembedded} rows committed without their vector")
    restarted = time.monotonic()
    again = familiar(env, "memory", "import", str(source), "--batch", "64")
    trial.recovery_s = time.monotonic() - restarted
    if again.returncode != 0:
        trial.recovered = False
        trial.fail(f"the rerun failed: {last_error(again)}")
    conn = sqlite3.connect(db, timeout=30)
    try:
        distinct, rows = conn.execute(
            "SELECT count(DISTINCT ref), count(*) FROM memories"
        ).fetchone()
    finally:
        conn.close()
    if distinct < total:
        trial.rows_lost += total - distinct
        trial.fail(f"after the rerun {distinct} of {total} records are stored")
    if rows > distinct:
        trial.twice += rows - distinct
        trial.notes.append(
            f"the rerun stored {rows - distinct} records a second time (killed at {after_kill})"
        )
    probes = data.parent / "probes.jsonl"
    picks = sorted({rng.randrange(total) for _ in range(3)})
    probes.write_text(
        "".join(json.dumps({"query": f"{prefix}{i}", "chat_id": 1, "k": 3}) + "\n" for i in picks)
    )
    found = familiar(env, "memory", "search", "--batch", str(probes))
    lines = [json.loads(line) for line in found.stdout.splitlines() if line.strip()]
    for i, hits in zip(picks, lines, strict=False):
        if not any(h.get("ref") == f"{prefix}{i}" for h in hits):
            trial.rows_lost += 1
            trial.fail(f"{prefix}{i} is stored but not found")
    check_store(trial, data, index=True)
