"""Backup benchmark: backup and verify time, archive size, and the event loop's worst stall.

For each size, a synthetic memories-sized database (memory's schema, FTS triggers, a 384-float
embedding per row, ~200 characters of text) plus a 1.5 KB-per-vector index file is built in a
work directory; then, on a running asyncio loop with a 10 ms ticker task and a writer inserting a
message every 50 ms through ``db.run`` (as the daemon would), ``create_backup`` runs in a worker
thread. The ticker's largest lateness is the loop's longest stall during the backup.

    .venv/bin/python bench/backup.py --sizes 10000 100000 [--workdir /tmp/bench-backup]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import time
from pathlib import Path

import numpy as np

from jobs.backup import BackupSources, create_backup
from jobs.schema import migrations as jobs_migrations
from jobs.verify import verify_archive
from memory.db import Database
from memory.schema import migrations as memory_migrations

WORDS = (
    "garden tomato invoice roof meeting train coffee python bug deploy server budget weekend "
    "dentist birthday flight hotel paper review model memory backup index search summary"
).split()


def build(data_dir: Path, n: int) -> float:
    started = time.monotonic()
    (data_dir / "index").mkdir(parents=True, exist_ok=True)
    db = Database.open(data_dir / "familiar.db", [memory_migrations, jobs_migrations])
    rng = random.Random(n)
    vecs = np.random.default_rng(n).standard_normal((min(n, 10_000), 384)).astype(np.float32)
    batch = 5_000
    now = time.time() - n
    for start in range(0, n, batch):
        rows = []
        for i in range(start, min(n, start + batch)):
            text = " ".join(rng.choice(WORDS) for _ in range(30))
            rows.append(
                (
                    i % 50,
                    7,
                    "message",
                    text,
                    now + i,
                    now + i,
                    f"h{i}",
                    vecs[i % len(vecs)].tobytes(),
                    "all-MiniLM-L6-v2",
                    384,
                )
            )
        with db.transaction() as conn:
            conn.executemany(
                "INSERT INTO memories (chat_id, user_id, kind, text, ts, created_at, content_hash, embedding,"
                " embedding_model, embedding_dim) VALUES (?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
    db.close()
    with open(data_dir / "index" / "vectors.faiss", "wb") as f:  # the index: 1.5 KB per vector
        for start in range(0, n, 10_000):
            f.write(vecs[: min(10_000, n - start)].tobytes())
    return time.monotonic() - started


async def backup_under_load(data_dir: Path, dest: Path) -> dict:
    db = Database.open(data_dir / "familiar.db", [memory_migrations, jobs_migrations])
    lateness: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            await asyncio.sleep(0.01)
            lateness.append(time.perf_counter() - t0 - 0.01)

    def write_one() -> None:
        with db.transaction() as conn:
            conn.execute(
                "INSERT INTO messages (chat_id, user_id, role, text, ts) VALUES (1, 7, 'user', 'hello', ?)",
                (time.time(),),
            )

    async def writer() -> int:
        n = 0
        while not stop.is_set():
            await db.run(write_one)
            n += 1
            await asyncio.sleep(0.05)
        return n

    tick = asyncio.create_task(ticker())
    write = asyncio.create_task(writer())
    await asyncio.sleep(0.2)
    lateness.clear()
    t0 = time.monotonic()
    result = await asyncio.to_thread(
        create_backup, BackupSources.of(data_dir), dest, app_version="bench"
    )
    backup_s = time.monotonic() - t0
    stop.set()
    await tick
    writes = await write
    db.close()
    return {
        "result": result,
        "backup_s": backup_s,
        "max_stall_ms": max(lateness) * 1000,
        "p99_stall_ms": statistics.quantiles(lateness, n=100)[98] * 1000,
        "writes": writes,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/familiar-bench-backup"))
    args = ap.parse_args()
    print(
        f"{'memories':>9} {'db MB':>7} {'build s':>8} {'backup s':>9} {'archive MB':>11} {'verify s':>9} "
        f"{'max stall ms':>13} {'p99 ms':>7} {'restarts':>8} {'writes':>6}"
    )
    for n in args.sizes:
        shutil.rmtree(args.workdir, ignore_errors=True)
        data = args.workdir / "data"
        build_s = build(data, n)
        db_mb = (data / "familiar.db").stat().st_size / 1e6
        r = asyncio.run(backup_under_load(data, args.workdir / "backups"))
        report = verify_archive(r["result"].path)
        print(
            f"{n:>9} {db_mb:>7.1f} {build_s:>8.1f} {r['backup_s']:>9.2f} {r['result'].size / 1e6:>11.1f} "
            f"{report.seconds:>9.2f} {r['max_stall_ms']:>13.1f} {r['p99_stall_ms']:>7.1f} "
            f"{r['result'].db_restarts:>8} {r['writes']:>6}",
            flush=True,
        )
    shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
