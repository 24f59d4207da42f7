"""``familiar backup``, ``backup verify``, ``backup list`` and ``restore``, run through the CLI.

Real SQLite data directories in ``tmp_path``; the settings come from ``FAMILIAR_DATA_DIR`` and the
TOML file, exactly as a person's shell gives them.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from bot.cli import app
from jobs.backup import list_archives

runner = CliRunner()


def familiar(*args: str) -> Result:
    return runner.invoke(app, list(args))


def message_count(db_file: Path) -> int:
    conn = sqlite3.connect(db_file)
    try:
        return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])
    finally:
        conn.close()


def write_archive(data_dir: Path, dest: Path) -> Path:
    result = familiar("backup", "--dest", str(dest))
    assert result.exit_code == 0, result.output
    (archive,) = list_archives(dest)
    return archive.path


@pytest.mark.parametrize("state", ["missing", "empty"])
def test_restore_onto_a_new_machine_exits_0_with_a_plain_summary(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, state: str
) -> None:
    archive = write_archive(data_dir, tmp_path / "usb-stick")
    # The new machine: a data directory that does not exist yet, or was just created empty.
    new = tmp_path / "new-machine" / "familiar"
    new.parent.mkdir()
    if state == "empty":
        new.mkdir()
    monkeypatch.setenv("FAMILIAR_DATA_DIR", str(new))

    result = familiar("restore", str(archive))

    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "table messages: 0 rows now, 350 after the restore" in result.output
    assert "there was no previous data" in result.output
    assert message_count(new / "familiar.db") == 350
    assert (new / "index" / "meta.json").read_text() == '{"dim": 384}'
    # Nothing was there to keep: no empty ".before-restore" directory is left to puzzle over.
    assert sorted(p.name for p in new.parent.iterdir()) == ["familiar"]
