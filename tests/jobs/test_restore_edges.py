"""Restore in the cases the main tests leave out: a corrupt database (the usual reason to restore),
files newer than the backup, a taken moved-aside name, a filesystem without atomic exchange, and
staging folders of killed restores that never got their lock. In each, nothing is lost.

Real SQLite data directories and real archives in ``tmp_path``.
"""

from __future__ import annotations

import os
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from jobs import restore
from jobs.backup import BackupSources, create_backup
from jobs.errors import RestoreError
from jobs.restore import RESTORE_INFIX, restore_archive

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


def archive_of(data_dir: Path, dest: Path) -> Path:
    return create_backup(BackupSources.of(data_dir), dest, app_version="test").path


def message_count(db_file: Path) -> int:
    conn = sqlite3.connect(db_file)
    try:
        return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])
    finally:
        conn.close()


def test_a_corrupt_database_is_restored_through_the_cli_and_kept_aside(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = archive_of(data_dir, tmp_path / "backups")
    expected = message_count(data_dir / "familiar.db")
    for sidecar in ("familiar.db-wal", "familiar.db-shm"):
        (data_dir / sidecar).unlink(missing_ok=True)
    garbage = b"this is not a database any more" * 200
    (data_dir / "familiar.db").write_bytes(garbage)
    monkeypatch.setenv("FAMILIAR_DATA_DIR", str(data_dir))

    dry = CliRunner().invoke(app, ["restore", "--dry-run", str(archive)])
    assert dry.exit_code == 0, dry.output
    # The unreadable database counts as empty: the plan says the rows come back.
    assert f"table messages: 0 rows now, {expected} after the restore" in dry.output
    assert (data_dir / "familiar.db").read_bytes() == garbage  # a dry run changes nothing

    result = CliRunner().invoke(app, ["restore", str(archive)])
    assert result.exit_code == 0, result.output
    assert message_count(data_dir / "familiar.db") == expected
    (aside,) = data_dir.parent.glob("data.before-restore-*")
    assert (aside / "familiar.db").read_bytes() == garbage  # kept, for whoever wants to look
    assert str(aside) in result.output


def test_a_file_newer_than_the_backup_is_named_and_kept_in_the_aside_copy(
    data_dir: Path, tmp_path: Path
) -> None:
    archive = archive_of(data_dir, tmp_path / "backups")
    newer = data_dir / "adapters" / "style-v2" / "adapter_model.safetensors"
    newer.parent.mkdir()
    newer.write_bytes(os.urandom(4096))
    content = newer.read_bytes()

    plan = restore_archive(archive, data_dir, dry_run=True, now=NOW)
    line = "adapters/style-v2/adapter_model.safetensors: removed (kept in the moved-aside copy)"
    assert line in plan.changes
    assert newer.read_bytes() == content

    plan = restore_archive(archive, data_dir, now=NOW)
    assert plan.done and not newer.exists()
    kept = plan.aside / "adapters" / "style-v2" / "adapter_model.safetensors"
    assert kept.read_bytes() == content  # the plan's promise holds


def test_a_taken_aside_name_refuses_the_restore_and_changes_nothing(
    data_dir: Path, tmp_path: Path
) -> None:
    archive = archive_of(data_dir, tmp_path / "backups")
    conn = sqlite3.connect(data_dir / "familiar.db")
    conn.execute("DELETE FROM messages WHERE chat_id = 2")
    conn.commit()
    conn.close()
    before = message_count(data_dir / "familiar.db")
    aside = data_dir.parent / "data.before-restore-20261201T120000Z"
    aside.mkdir()
    (aside / "someone-elses-file").write_text("keep me")

    with pytest.raises(RestoreError, match="already exists"):
        restore_archive(archive, data_dir, now=NOW)

    assert message_count(data_dir / "familiar.db") == before
    assert [p.name for p in aside.iterdir()] == ["someone-elses-file"]
    assert not list(data_dir.parent.glob(f".data{RESTORE_INFIX}*"))  # staging removed


def test_without_atomic_exchange_the_old_data_is_still_moved_aside(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = archive_of(data_dir, tmp_path / "backups")
    expected = message_count(data_dir / "familiar.db")
    (data_dir / "familiar.db").unlink()
    (data_dir / "notes.txt").write_text("mine")
    # A filesystem or kernel without renameat2(RENAME_EXCHANGE): the two-rename fallback.
    monkeypatch.setattr(restore, "_exchange", lambda a, b: False)

    plan = restore_archive(archive, data_dir, now=NOW)

    assert plan.done and plan.previous
    assert message_count(data_dir / "familiar.db") == expected
    assert (data_dir / "notes.txt").read_text() == "mine"  # carried over, not left behind
    assert (plan.aside / "index" / "meta.json").exists()  # the old covered files, kept aside


def test_a_lockless_staging_folder_is_removed_only_when_an_hour_old(
    data_dir: Path, tmp_path: Path
) -> None:
    archive = archive_of(data_dir, tmp_path / "backups")
    old = data_dir.parent / f".data{RESTORE_INFIX}killed-before-locking"
    fresh = data_dir.parent / f".data{RESTORE_INFIX}just-created"
    for folder in (old, fresh):
        folder.mkdir()
        (folder / "familiar.db").write_bytes(b"a partial copy")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))

    restore_archive(archive, data_dir, dry_run=True, now=NOW)

    assert not old.exists()  # a killed restore's full database copy does not pile up
    assert (fresh / "familiar.db").exists()  # one that may be another restore's is left alone
