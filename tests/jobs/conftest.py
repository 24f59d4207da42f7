"""Fixtures of the jobs tests: a populated data directory on real SQLite, real files."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from jobs.schema import migrations as jobs_migrations
from memory.db import Database
from memory.schema import migrations as memory_migrations


def all_test_migrations() -> list:
    return [memory_migrations, jobs_migrations]


def fill(
    db: Database, chat_id: int, texts: list[str], ts: float | None = None, user_id: int = 7
) -> None:
    now = time.time() if ts is None else ts
    with db.transaction() as conn:
        for i, text in enumerate(texts):
            cur = conn.execute(
                "INSERT INTO memories (chat_id, user_id, kind, text, ts, created_at, content_hash)"
                " VALUES (?,?,?,?,?,?,?)",
                (chat_id, user_id, "message", text, now + i, now + i, f"h{chat_id}-{i}-{text}"),
            )
            conn.execute(
                "INSERT INTO messages (chat_id, user_id, role, text, ts, memory_id) VALUES (?,?,?,?,?,?)",
                (
                    chat_id,
                    user_id,
                    "user" if i % 2 == 0 else "assistant",
                    text,
                    now + i,
                    cur.lastrowid,
                ),
            )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    (d / "index").mkdir(parents=True)
    (d / "adapters" / "style-v1").mkdir(parents=True)
    (d / "index" / "vectors.faiss").write_bytes(os.urandom(50_000))
    (d / "index" / "meta.json").write_text('{"dim": 384}')
    (d / "adapters" / "style-v1" / "adapter_model.safetensors").write_bytes(os.urandom(20_000))
    (d / "familiar.toml").write_text(
        '[telegram]\ntoken = "123456:SECRET-token-value"\nadmins = [42]\n\n[jobs]\ntimezone = "UTC"\n'
    )
    db = Database.open(d / "familiar.db", all_test_migrations())
    fill(db, 1, [f"message number {i} about the weather and the garden" for i in range(300)])
    fill(db, 2, [f"another chat line {i}" for i in range(50)])
    db.close()
    return d


@pytest.fixture
def db_in(data_dir: Path):
    db = Database.open(data_dir / "familiar.db", all_test_migrations())
    yield db
    db.close()
