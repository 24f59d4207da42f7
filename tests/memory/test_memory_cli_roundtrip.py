"""``familiar memory`` import, search, stats and export as a person uses them: what goes in comes
back out, in its own chat only, and every kind of bad line is named and skipped.

Real SQLite in the test's data directory; the hashing embedder stands in for the model (as in
test_memory_cli_exit.py), so the semantic half is deterministic and quick.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli.memory import app
from memory.embedder import HashingEmbedder

RECORDS = [
    {"text": "Grandma's apple pie needs three sour apples", "chat_id": 5, "ref": "recipe-1"},
    {
        "text": "I booked the dentist for Tuesday",
        "chat_id": 5,
        "user": 42,
        "kind": "message",
        "ts": "2026-11-30T09:15:00Z",
    },
    {"text": "The apple orchard visit is private to chat 6", "chat_id": 6, "user": 43},
]


@pytest.fixture
def cli(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setattr(
        "memory.embedder.make_embedder", lambda model, batch_size=64: HashingEmbedder()
    )
    return CliRunner()


@pytest.fixture
def imported(cli: CliRunner, tmp_path: Path) -> CliRunner:
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n\n")
    # Batches of 2: the third record is committed in a second batch.
    result = cli.invoke(app, ["import", "--batch", "2", str(source)])
    assert result.exit_code == 0, result.output
    assert "imported 3, skipped 0" in result.stdout
    return cli


def test_search_prints_hits_of_its_own_chat_only(imported: CliRunner) -> None:
    result = imported.invoke(app, ["search", "apple pie", "--chat", "5"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    # "#id score [kind date ref=...] text", the best hit first.
    assert lines[0].startswith("#") and "[note " in lines[0]
    assert lines[0].endswith(" ref=recipe-1] " + RECORDS[0]["text"])
    assert "orchard" not in result.stdout  # chat 6's memory stays in chat 6

    nothing = imported.invoke(app, ["search", "apple", "--chat", "7"])
    assert nothing.exit_code == 0 and nothing.stdout == "no matches\n"


def test_search_needs_exactly_one_of_a_query_and_a_batch(
    imported: CliRunner, tmp_path: Path
) -> None:
    neither = imported.invoke(app, ["search"])
    assert neither.exit_code == 2
    assert "give either a QUERY or --batch FILE" in neither.output
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"query": "apple"}\n')
    both = imported.invoke(app, ["search", "apple", "--batch", str(queries)])
    assert both.exit_code == 2


def test_a_message_record_keeps_its_time_and_becomes_a_conversation_turn(
    imported: CliRunner,
) -> None:
    exported = json.loads(imported.invoke(app, ["export", "--chat", "5"]).stdout)
    (turn,) = exported["messages"]
    assert (turn["role"], turn["text"], turn["user_id"]) == ("user", RECORDS[1]["text"], 42)
    (memory,) = [m for m in exported["memories"] if m["kind"] == "message"]
    assert str(memory["ts"]).startswith("2026-11-30")


def test_stats_counts_by_kind_and_names_the_saved_index(imported: CliRunner) -> None:
    result = imported.invoke(app, ["stats"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("memories: 3 in 2 chats; messages: 1;")
    assert "  message: 1" in lines and "  note: 2" in lines
    assert any(line.startswith("saved index: 3 vectors") for line in lines)
    assert "  embedded with hashing-256: 3" in lines


def test_stats_says_how_many_rows_wait_for_their_vectors(
    imported: CliRunner, data_dir: Path
) -> None:
    import sqlite3

    conn = sqlite3.connect(data_dir / "familiar.db")
    with conn:  # as the migration leaves rows to be embedded again at the next start
        conn.execute("UPDATE memories SET embedding = NULL, embedding_model = NULL WHERE id = 1")
    conn.close()
    lines = imported.invoke(app, ["stats"]).stdout.splitlines()
    assert "  embedded with hashing-256: 2" in lines
    assert "  not embedded yet (the next start or `familiar memory reindex` does): 1" in lines


def test_export_to_a_file_holds_one_users_data_and_nothing_else(
    imported: CliRunner, tmp_path: Path
) -> None:
    out = tmp_path / "mine.json"
    result = imported.invoke(app, ["export", "--user", "43", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote 1 memories and 0 messages to {out}" in result.stderr
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["user_id"] == 43
    assert [m["text"] for m in data["memories"]] == [RECORDS[2]["text"]]


def test_each_kind_of_bad_line_is_named_and_the_good_ones_still_land(
    cli: CliRunner, tmp_path: Path
) -> None:
    source = tmp_path / "mixed.jsonl"
    source.write_text(
        "\n".join(
            [
                '["a", "list"]',
                '{"note": "no text field"}',
                '{"text": "when?", "ts": "last Tuesday"}',
                '{"text": "flagged", "chat_id": true}',
                '{"text": "the blue bicycle is in the shed", "chat_id": 9}',
            ]
        )
        + "\n"
    )
    result = cli.invoke(app, ["import", str(source)])
    assert result.exit_code == 0, result.output
    assert "imported 1, skipped 4" in result.stdout
    assert "line 1: not a JSON object" in result.stderr
    assert "line 2: 'text' missing or not a string" in result.stderr
    assert "line 3: 'ts' is not ISO-8601: 'last Tuesday'" in result.stderr
    assert "line 4: 'chat_id' must be an integer (a Telegram chat id), not True" in result.stderr
    found = cli.invoke(app, ["search", "blue bicycle", "--chat", "9", "--json"])
    assert [h["text"] for h in json.loads(found.stdout)] == ["the blue bicycle is in the shed"]


def test_a_text_over_the_size_limit_is_skipped_not_truncated(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAMILIAR_MEMORY__MAX_TEXT_BYTES", "1000")
    source = tmp_path / "big.jsonl"
    too_big = "é" * 501  # 501 characters, 1,002 bytes in UTF-8
    source.write_text(json.dumps({"text": too_big}) + "\n" + json.dumps({"text": "short enough"}))
    result = cli.invoke(app, ["import", str(source)])
    assert result.exit_code == 0, result.output
    assert "imported 1, skipped 1" in result.stdout
    assert "line 1: the text is 1,002 bytes, over the limit of 1,000" in result.stderr
    exported = json.loads(cli.invoke(app, ["export"]).stdout)
    assert [m["text"] for m in exported["memories"]] == ["short enough"]
