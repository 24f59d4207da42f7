"""`familiar memory import` and `memory search --batch` exit codes a script can rely on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli.memory import app
from memory.embedder import HashingEmbedder


@pytest.fixture
def cli(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setattr(
        "memory.embedder.make_embedder", lambda model, batch_size=64: HashingEmbedder()
    )
    return CliRunner()


def _stats(cli: CliRunner) -> int:
    return int(json.loads(cli.invoke(app, ["stats", "--json"]).stdout)["memories"])


def test_import_of_only_bad_lines_exits_1(cli: CliRunner, tmp_path: Path) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_text('not json\n{"text": ""}\n{"text": "x", "chat_id": "abc"}\n')
    result = cli.invoke(app, ["import", str(source)])
    assert result.exit_code == 1
    assert "imported 0, skipped 3" in result.stdout
    assert "nothing was imported" in result.stderr
    assert "'chat_id' must be an integer (a Telegram chat id), not 'abc'" in result.stderr


def test_import_with_some_bad_lines_exits_0_and_counts_them_on_stderr(
    cli: CliRunner, tmp_path: Path
) -> None:
    source = tmp_path / "mixed.jsonl"
    source.write_text('{"text": "the red bicycle"}\n{"text": "a", "user": "bob"}\n')
    result = cli.invoke(app, ["import", str(source)])
    assert result.exit_code == 0
    assert "skipped 1 lines" in result.stderr
    assert "line 2: 'user' must be an integer (a Telegram user id)" in result.stderr
    assert _stats(cli) == 1


def test_strict_import_fails_on_one_bad_line_and_imports_nothing(
    cli: CliRunner, tmp_path: Path
) -> None:
    source = tmp_path / "mixed.jsonl"
    source.write_text('{"text": "the red bicycle"}\n{"text": "   "}\n{"text": "blue car"}\n')
    result = cli.invoke(app, ["import", "--strict", str(source)])
    assert result.exit_code == 1
    assert "line 2: the text is empty" in result.stderr
    assert _stats(cli) == 0
    good = tmp_path / "good.jsonl"
    good.write_text('{"text": "the red bicycle", "chat_id": -100123, "user": 42}\n')
    assert cli.invoke(app, ["import", "--strict", str(good)]).exit_code == 0
    assert _stats(cli) == 1


def test_search_batch_bad_line_is_an_error_and_exit_1(cli: CliRunner, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "grandma bakes apple pie", "chat_id": 5}\n')
    assert cli.invoke(app, ["import", str(source)]).exit_code == 0
    queries = tmp_path / "q.jsonl"
    queries.write_text(
        '{"query": "apple pie", "chat_id": 5}\n{"query": "pie", "chat_id": "five"}\nnot json\n'
    )
    result = cli.invoke(app, ["search", "--batch", str(queries)])
    assert result.exit_code == 1
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(out) == 3 and out[0][0]["chat_id"] == 5 and out[1] is None and out[2] is None
    assert "line 2: 'chat_id' must be an integer (a Telegram chat id)" in result.stderr
    assert "line 3: not JSON" in result.stderr


def _help(cli: CliRunner, command: str) -> str:
    """The help text as words, without rich's box drawing."""
    out = cli.invoke(app, [command, "--help"], env={"COLUMNS": "200"}).stdout
    return " ".join(out.replace("│", " ").split())


def test_help_says_ids_are_integers(cli: CliRunner) -> None:
    assert "chat_id and user must be integers (Telegram ids)" in _help(cli, "import")
    assert "chat_id an integer Telegram chat id" in _help(cli, "search")
    assert "Only this user (a Telegram user id)" in _help(cli, "export")


def test_a_file_memory_export_wrote_imports_back(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Export, then import into a new data directory: the same memories, roles kept, no
    superseded fact revived; the file is one JSON document, not JSON Lines."""
    source = tmp_path / "old.jsonl"
    source.write_text(
        '{"text": "the spare key is under the blue pot", "chat_id": 7, "user": 42}\n'
        '{"text": "where is the key?", "chat_id": 7, "user": 42, "kind": "message"}\n'
    )
    assert cli.invoke(app, ["import", str(source)]).exit_code == 0
    exported = tmp_path / "export.json"
    assert cli.invoke(app, ["export", "-o", str(exported)]).exit_code == 0
    doc = json.loads(exported.read_text())
    doc["memories"].append({**doc["memories"][0], "id": 99, "text": "old", "superseded_by": 1})
    exported.write_text(json.dumps(doc, indent=1))

    monkeypatch.setenv("FAMILIAR_DATA_DIR", str(tmp_path / "new"))
    result = cli.invoke(app, ["import", "--strict", str(exported)])
    assert result.exit_code == 0, result.output
    assert "imported 2, skipped 0" in result.stdout
    again = json.loads(cli.invoke(app, ["export", "--chat", "7"]).stdout)
    assert sorted((m["text"], m["kind"], m["user_id"]) for m in again["memories"]) == [
        ("the spare key is under the blue pot", "note", 42),
        ("where is the key?", "message", 42),
    ]
    assert [(m["role"], m["text"]) for m in again["messages"]] == [("user", "where is the key?")]


def test_a_json_document_that_is_no_export_is_reported_not_guessed(
    cli: CliRunner, tmp_path: Path
) -> None:
    source = tmp_path / "list.json"
    source.write_text('{\n "notes": ["a", "b"]\n}\n')
    result = cli.invoke(app, ["import", str(source)])
    assert result.exit_code == 1
    assert "nothing was imported" in result.stderr


def test_a_rerun_after_an_interrupted_import_stores_only_what_is_missing(
    cli: CliRunner, tmp_path: Path
) -> None:
    lines = [
        json.dumps({"text": f"note {i} about topic {i % 7}", "chat_id": 1, "ref": f"r{i}"})
        for i in range(500)
    ]
    # Same text as r0 but another ref, another chat, another kind: other records, all stored.
    lines += [
        json.dumps({"text": "note 0 about topic 0", "chat_id": 1, "ref": "other"}),
        json.dumps({"text": "note 0 about topic 0", "chat_id": 2, "ref": "r0"}),
        json.dumps({"text": "note 0 about topic 0", "chat_id": 1, "ref": "r0", "kind": "fact"}),
    ]
    full = tmp_path / "all.jsonl"
    full.write_text("\n".join(lines) + "\n")
    killed = tmp_path / "committed.jsonl"  # what a run killed mid-import had committed: batches
    killed.write_text("\n".join(lines[:320]) + "\n")
    assert cli.invoke(app, ["import", str(killed), "--batch", "64"]).exit_code == 0

    again = cli.invoke(app, ["import", str(full), "--batch", "64"])
    assert again.exit_code == 0, again.output
    assert "imported 183, already present 320, skipped 0" in again.stdout
    assert _stats(cli) == 503

    complete = cli.invoke(app, ["import", str(full)])
    assert complete.exit_code == 0, complete.output  # nothing missing is no error
    assert "imported 0, already present 503" in complete.stdout
    assert _stats(cli) == 503
