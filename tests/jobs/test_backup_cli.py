"""``familiar backup``, ``backup verify``, ``backup list`` and ``restore``, run through the CLI.

Real SQLite data directories in ``tmp_path``; the settings come from ``FAMILIAR_DATA_DIR`` and the
TOML file, exactly as a person's shell gives them.
"""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import tarfile
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from bot.cli import app
from bot.daemon.lock import InstanceLock
from jobs.backup import list_archives
from memory.db import Database
from tests.jobs.conftest import all_test_migrations, fill

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


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


@pytest.mark.parametrize("state", ["missing", "empty", "missing-parent"])
def test_restore_onto_a_new_machine_exits_0_with_a_plain_summary(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, state: str
) -> None:
    archive = write_archive(data_dir, tmp_path / "usb-stick")
    # The new machine: a data directory that does not exist yet (nor, maybe, ~/.local/state),
    # or was just created empty.
    new = tmp_path / "new-machine" / "familiar"
    if state != "missing-parent":
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


def test_backup_writes_a_verified_archive_where_the_settings_say(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without --dest: <data>/backups; with jobs.backup_dir set, there.
    result = familiar("backup")
    assert result.exit_code == 0, result.output
    (archive,) = list_archives(data_dir / "backups")
    assert f"wrote {archive.path} (" in result.output
    assert "5 files" in result.output  # database, index (2), adapter, settings
    assert "verified: every checksum matches, integrity_check ok" in result.output

    elsewhere = tmp_path / "nas" / "familiar"
    monkeypatch.setenv("FAMILIAR_JOBS__BACKUP_DIR", str(elsewhere))
    assert familiar("backup").exit_code == 0
    assert len(list_archives(elsewhere)) == 1
    assert len(list_archives(data_dir / "backups")) == 1


def test_backup_without_a_database_is_a_clear_error(tmp_path: Path) -> None:
    # clean_env points FAMILIAR_DATA_DIR at a directory that holds nothing yet.
    result = familiar("backup", "--dest", str(tmp_path / "b"))
    assert result.exit_code == 2
    assert "error: there is no database at" in result.output
    assert "fix: check FAMILIAR_DATA_DIR" in result.output
    assert "Traceback" not in result.output
    assert list_archives(tmp_path / "b") == []


def test_backup_verify_accepts_a_good_archive_and_names_the_bad_file(
    data_dir: Path, tmp_path: Path
) -> None:
    archive = write_archive(data_dir, tmp_path / "b")
    ok = familiar("backup", "verify", str(archive))
    assert ok.exit_code == 0, ok.output
    assert ok.output.startswith(f"ok: {archive} (5 files, ")
    assert "integrity_check ok" in ok.output
    assert "settings: archived without telegram.token (secrets are never archived)" in ok.output

    # The same archive with one byte of the index changed (manifest left as it was).
    tampered = tmp_path / "tampered.tar.gz"
    with tarfile.open(archive) as src, tarfile.open(tampered, "w:gz") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read()  # type: ignore[union-attr]
            if m.name == "index/meta.json":
                data = data.replace(b"384", b"385")
            dst.addfile(m, io.BytesIO(data))
    bad = familiar("backup", "verify", str(tampered))
    assert bad.exit_code == 2
    assert "error: index/meta.json in tampered.tar.gz does not match its checksum" in bad.output

    missing = familiar("backup", "verify", str(tmp_path / "nope.tar.gz"))
    assert missing.exit_code == 2
    assert "there is no archive at" in missing.output


def test_backup_list_shows_archives_oldest_first(data_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "b"
    empty = familiar("backup", "list", "--dest", str(dest))
    assert empty.exit_code == 0
    assert empty.output.strip() == f"no backups in {dest}"

    write_archive(data_dir, dest)
    assert familiar("backup", "--dest", str(dest)).exit_code == 0
    (dest / "notes.txt").write_text("not an archive")
    names = [a.path.name for a in list_archives(dest)]
    listing = familiar("backup", "list", "--dest", str(dest))
    assert listing.exit_code == 0
    lines = listing.output.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == names
    assert all(" h old " in line and "KB" in line for line in lines[:-1])
    assert lines[-1] == f"2 archive(s) in {dest}"


def test_restore_dry_run_changes_nothing_and_restore_keeps_the_old_data(
    data_dir: Path, tmp_path: Path
) -> None:
    archive = write_archive(data_dir, tmp_path / "b")
    db = Database.open(data_dir / "familiar.db", all_test_migrations())
    fill(db, 5, ["said after the backup"] * 4)
    db.close()

    dry = familiar("restore", "--dry-run", str(archive))
    assert dry.exit_code == 0, dry.output
    assert "table messages: 354 rows now, 350 after the restore" in dry.output
    assert "familiar.toml: the archived copy has no secrets (telegram.token removed)" in dry.output
    assert dry.output.rstrip().endswith("dry run: nothing was changed")
    assert message_count(data_dir / "familiar.db") == 354

    done = familiar("restore", str(archive))
    assert done.exit_code == 0, done.output
    assert message_count(data_dir / "familiar.db") == 350
    (aside,) = data_dir.parent.glob("data.before-restore-*")
    assert f"restored. The previous data is in {aside};" in done.output
    assert message_count(aside / "familiar.db") == 354


def test_restore_refuses_while_the_daemon_runs(data_dir: Path, tmp_path: Path) -> None:
    archive = write_archive(data_dir, tmp_path / "b")
    with InstanceLock(data_dir):
        result = familiar("restore", str(archive))
    assert result.exit_code == 2
    assert f"is using the data directory {data_dir}" in result.output
    assert "fix: stop it first" in result.output
    assert not list(data_dir.parent.glob("data.before-restore-*"))


def test_restore_where_no_directory_can_be_made_is_a_clear_error(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = write_archive(data_dir, tmp_path / "b")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("FAMILIAR_DATA_DIR", str(blocker / "state" / "familiar"))
    result = familiar("restore", str(archive))
    assert result.exit_code == 2, result.output
    assert "error: cannot create a directory to restore into beside" in result.output
    assert f"fix: make {blocker / 'state'} a writable directory" in result.output
    assert blocker.read_text() == "not a directory"


def test_a_settings_file_outside_the_data_dir_is_restored_beside_it_not_over_it(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = tmp_path / "etc" / "familiar.toml"
    etc.parent.mkdir()
    etc.write_text('[telegram]\ntoken = "123456:AAsecret-in-etc"\nadmins = [42]\n')
    monkeypatch.setenv("FAMILIAR_CONFIG", str(etc))
    archive = write_archive(data_dir, tmp_path / "b")
    etc.write_text("[telegram]\nadmins = [42, 43]\n")  # edited since the backup

    result = familiar("restore", str(archive))

    assert result.exit_code == 0, result.output
    assert f"settings file {etc} is left alone" in result.output
    assert etc.read_text() == "[telegram]\nadmins = [42, 43]\n"
    restored = (data_dir / "familiar.restored.toml").read_text()
    assert "secret-in-etc" not in restored
    assert tomllib.loads(restored) == {"telegram": {"admins": [42]}}


def test_the_installed_command_restores_onto_a_new_machine_with_exit_status_0(
    data_dir: Path, tmp_path: Path, familiar_bin: str
) -> None:
    # As a person types it, in a process of its own: the exit status is the shell's.
    archive = write_archive(data_dir, tmp_path / "b")
    new = tmp_path / "new-machine" / "state" / "familiar"
    env = {**os.environ, "FAMILIAR_DATA_DIR": str(new), "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [familiar_bin, "restore", str(archive)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout.rstrip().endswith(
        f"restored into {new}; there was no previous data to keep."
    )
    assert message_count(new / "familiar.db") == 350


def test_restore_from_the_backups_folder_of_a_new_data_dir_keeps_nothing_aside(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The usual move: copy the backups over first, then restore the newest of them.
    archive = write_archive(data_dir, tmp_path / "old-machine-backups")
    new = tmp_path / "new" / "familiar"
    (new / "backups").mkdir(parents=True)
    copied = new / "backups" / archive.name
    copied.write_bytes(archive.read_bytes())
    monkeypatch.setenv("FAMILIAR_DATA_DIR", str(new))

    result = familiar("restore", str(copied))

    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith("there was no previous data to keep.")
    assert message_count(new / "familiar.db") == 350
    assert copied.read_bytes() == archive.read_bytes()  # the backups came across
    assert sorted(p.name for p in new.parent.iterdir()) == ["familiar"]
