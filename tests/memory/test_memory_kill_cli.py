"""A real `familiar memory import` process killed with SIGKILL mid-import, then the CLI itself."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli.memory import app
from memory.embedder import HashingEmbedder
from memory.types import Scope

from .conftest import run


@pytest.mark.slow
def test_sigkill_during_import_leaves_every_committed_row_searchable(
    tmp_path, data_dir, make_memory, minilm
) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "big.jsonl"
    with source.open("w") as f:
        for i in range(6000):
            f.write(
                json.dumps(
                    {
                        "text": f"record{i} about topic {i % 97} and more words",
                        "chat_id": 1,
                        "ref": f"r{i}",
                    }
                )
                + "\n"
            )
    env = {
        **os.environ,
        "FAMILIAR_MEMORY__INDEX_SAVE_EVERY": "100",
        "FAMILIAR_MEMORY__EMBEDDING_BATCH_SIZE": "32",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bot.cli.memory",
            "import",
            str(source),
            "--batch",
            "64",
            "--pool",
            "64",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db_path = data_dir / "familiar.db"
    deadline = time.monotonic() + 120
    committed = 0
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.3)
        if db_path.exists():
            try:
                with sqlite3.connect(db_path, timeout=1) as conn:
                    committed = conn.execute("SELECT count(*) FROM memories").fetchone()[0]
            except sqlite3.Error:
                continue
            if committed >= 320:  # a few index saves have happened; more batches are in flight
                break
    assert proc.poll() is None, "the import finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    memory = make_memory(minilm, path=data_dir)  # what the daemon does on restart
    stats = memory.stats_sync()
    n = stats["memories"]
    assert 320 <= n < 6000
    assert memory.index.ntotal == n == stats["by_embedding_model"][minilm.model_name]
    assert memory.health_checks()["memory_index"]().status.name == "HEALTHY"
    with memory.db.read() as conn:
        refs = [r[0] for r in conn.execute("SELECT ref FROM memories ORDER BY id")]
    assert refs == [f"r{i}" for i in range(n)]  # whole batches, in order, no gaps
    for i in (0, n // 2, n - 1):
        hits = run(memory.search(f"record{i}", Scope(1), k=3))
        assert hits[0].ref == f"r{i}"
    memory.save_index()
    leftovers = [p.name for p in (data_dir / "index").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_cli_add_import_search_stats_export(data_dir, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # The hashing embedder keeps this fast; the model path is the one the daemon uses.
    monkeypatch.setattr(
        "memory.embedder.make_embedder", lambda model, batch_size=64: HashingEmbedder()
    )
    cli = CliRunner()
    added = cli.invoke(
        app, ["add", "the red bicycle is in the garage", "--chat", "5", "--ref", "note-1"]
    )
    assert added.exit_code == 0, added.output
    lines = tmp_path / "in.jsonl"
    lines.write_text(
        '{"text": "grandma bakes apple pie on sundays", "chat_id": 5, "ts": "2024-03-01T10:00:00Z", "kind": "fact"}\n'
        'not json\n{"text": ""}\n{"text": "other chat pie", "chat_id": 6}\n'
    )
    imported = cli.invoke(app, ["import", str(lines)])
    assert imported.exit_code == 0 and "imported 2, skipped 2" in imported.output
    found = cli.invoke(app, ["search", "bicycle", "--chat", "5", "--json"])
    hits = json.loads(found.stdout)
    assert hits[0]["ref"] == "note-1" and set(hits[0]) == {
        "id",
        "text",
        "score",
        "kind",
        "chat_id",
        "ts",
        "ref",
    }
    turns = tmp_path / "turns.jsonl"
    turns.write_text(
        '{"text": "where is the canoe?", "chat_id": 7, "kind": "message", "user": 3}\n'
        '{"text": "in the boathouse", "chat_id": 7, "kind": "message", "role": "assistant"}\n'
    )
    assert cli.invoke(app, ["import", str(turns)]).exit_code == 0
    # The question by its words, then the answer by the question's (tests/memory/
    # test_memory_turn_words.py); the answer is also attached to the question.
    turn, answer = json.loads(cli.invoke(app, ["search", "canoe", "--chat", "7", "--json"]).stdout)
    assert answer["text"] == "in the boathouse" and answer["score"] < turn["score"]
    assert [t["text"] for t in turn["after"]] == ["in the boathouse"] and turn["before"] == []
    assert "user_id" not in turn["after"][0]
    queries = tmp_path / "q.jsonl"
    queries.write_text(
        '{"query": "apple pie", "chat_id": 5, "k": 1}\n{"query": "((("}\n{"query": "pie", "chat_id": 6}\n'
    )
    batch = cli.invoke(app, ["search", "--batch", str(queries)])
    out = [json.loads(line) for line in batch.stdout.splitlines()]
    assert (
        len(out) == 3 and out[0][0]["kind"] == "fact" and out[1] == [] and out[2][0]["chat_id"] == 6
    )
    stats = cli.invoke(app, ["stats", "--json"])
    assert json.loads(stats.stdout)["memories"] == 5
    exported = cli.invoke(app, ["export", "--chat", "6"])
    assert [m["text"] for m in json.loads(exported.stdout)["memories"]] == ["other chat pie"]
    reindexed = cli.invoke(app, ["reindex"])
    assert reindexed.exit_code == 0 and "5 vectors" in reindexed.output
    empty = cli.invoke(app, ["add", "   "])
    assert empty.exit_code == 2 and "empty" in empty.output


def test_module_entry_point_has_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bot.cli.memory", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0
    for command in ("add", "import", "search", "stats", "reindex", "export"):
        assert command in out.stdout
    assert Path(__file__).exists()
