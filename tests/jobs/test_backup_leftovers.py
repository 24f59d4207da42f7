"""What a killed backup, verification or restore leaves behind is removed by the next run;
archives are private (0600)."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from jobs.backup import BackupSources, create_backup, list_archives
from jobs.datalock import DataDirLock
from jobs.errors import VerifyError
from jobs.scratch import SCRATCH_LOCK, remove_leftovers
from jobs.verify import verify_archive

REPO = Path(__file__).resolve().parents[2]
VERIFY_FOREVER = (
    "import sys\n"
    "from pathlib import Path\n"
    "from jobs.verify import verify_archive\n"
    "while True:\n"
    "    verify_archive(Path(sys.argv[1]))\n"
)


RESTORE_FOREVER = (
    "import sys\n"
    "from pathlib import Path\n"
    "from jobs.restore import restore_archive\n"
    "while True:\n"
    "    restore_archive(Path(sys.argv[1]), Path(sys.argv[2]), dry_run=True)\n"
)


def kill_midway(
    code: str, args: list[str], where: Path, pattern: str, within: float = 60.0
) -> list[Path]:
    """Run ``code`` in a child and SIGKILL it once ``where`` holds ``pattern``/familiar.db (an
    unpacked database); returns the folders it left (retrying when the kill fell between two)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for _ in range(5):
        child = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + within
            while not list(where.glob(f"{pattern}/familiar.db")):
                assert child.poll() is None, "the verifying child exited on its own"
                assert time.monotonic() < deadline, "no verification started in time"
                time.sleep(0.001)
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.kill()
            child.wait()
        left = [p for p in where.glob(pattern) if p.is_dir()]
        if left:
            return left
    raise AssertionError("every kill fell between two runs")


def test_a_verify_killed_by_sigkill_is_cleaned_by_the_next_backup(
    data_dir: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "backups"
    first = create_backup(BackupSources.of(data_dir), dest, app_version="t").path
    left = kill_midway(VERIFY_FOREVER, [str(first)], dest, ".familiar-verify-*")
    # The defect: a full copy of the database stays behind.
    assert any((p / "familiar.db").exists() for p in left)

    result = CliRunner().invoke(app, ["backup", "--dest", str(dest)])

    assert result.exit_code == 0, result.output
    assert [p.name for p in dest.iterdir() if p.name.startswith(".")] == []
    archives = list_archives(dest)
    assert [a.path for a in archives][0] == first and len(archives) == 2
    for a in archives:
        assert stat.S_IMODE(a.path.stat().st_mode) == 0o600, a.path


def test_the_cleanup_spares_a_verification_that_is_still_running(
    data_dir: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "backups"
    archive = create_backup(BackupSources.of(data_dir), dest, app_version="t").path
    running = dest / ".familiar-verify-running"
    running.mkdir()
    (running / "familiar.db").write_bytes(b"being checked right now")
    # What a running verification holds while its scratch folder exists.
    fd = os.open(running / SCRATCH_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert verify_archive(archive).integrity == "ok"
        assert (running / "familiar.db").exists()
    finally:
        os.close(fd)
    # Once it is gone (its lock with it), the folder is a leftover.
    assert verify_archive(archive).integrity == "ok"
    assert not running.exists()


def test_a_scratch_folder_without_a_lock_is_a_leftover_only_when_old(
    data_dir: Path, tmp_path: Path
) -> None:
    # Made by a verifier not yet holding its lock (or by an older Familiar): an age decides.
    dest = tmp_path / "backups"
    archive = create_backup(BackupSources.of(data_dir), dest, app_version="t").path
    young, old = dest / ".familiar-verify-young", dest / ".familiar-verify-old"
    for d in (young, old):
        d.mkdir()
        (d / "familiar.db").write_bytes(b"a copy")
    week_ago = time.time() - 7 * 24 * 3600
    os.utime(old, (week_ago, week_ago))
    assert verify_archive(archive).integrity == "ok"
    assert young.exists() and not old.exists()


def test_a_folder_removed_while_the_cleanup_looks_at_it_is_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A finishing verification removes its folder, lock file first: a cleanup that found the
    # folder and then no lock file must not fail on the folder being gone too.
    gone = tmp_path / ".familiar-verify-finishing"
    gone.mkdir()
    real_open = os.open

    def lock_then_folder_removed(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
        if Path(path).name == SCRATCH_LOCK:
            shutil.rmtree(gone)
            raise FileNotFoundError(path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", lock_then_folder_removed)
    assert remove_leftovers(tmp_path, ".familiar-verify-") == []


def test_archives_are_0600_whatever_the_umask(data_dir: Path, tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        archive = create_backup(BackupSources.of(data_dir), tmp_path / "b", app_version="t").path
    finally:
        os.umask(old)
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600


def test_a_restore_killed_by_sigkill_is_cleaned_by_the_next_restore(
    data_dir: Path, tmp_path: Path
) -> None:
    archive = create_backup(BackupSources.of(data_dir), tmp_path / "b", app_version="t").path
    left = kill_midway(
        RESTORE_FOREVER, [str(archive), str(data_dir)], data_dir.parent, ".data.restore-*"
    )
    assert any((p / "familiar.db").exists() for p in left)  # a full copy of the database
    # A restore running at the same time (its staging folder locked) is left alone.
    running = data_dir.parent / ".data.restore-running"
    running.mkdir()
    with DataDirLock(running):
        result = CliRunner().invoke(app, ["restore", "--dry-run", str(archive)])
        assert result.exit_code == 0, result.output
        assert [p.name for p in data_dir.parent.glob(".data.restore-*")] == [running.name]
    assert CliRunner().invoke(app, ["restore", "--dry-run", str(archive)]).exit_code == 0
    assert not list(data_dir.parent.glob(".data.restore-*"))


def test_an_archive_where_nothing_can_be_written_is_checked_in_the_temp_dir(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A read-only stick, as seen by root too: a path under a regular file cannot hold a folder.
    archive = create_backup(BackupSources.of(data_dir), tmp_path / "b", app_version="t").path
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    killed = system_tmp / ".familiar-verify-killed"  # so that its use there shows
    killed.mkdir()
    (killed / SCRATCH_LOCK).touch()

    assert verify_archive(archive, work_dir=blocker / "stick").integrity == "ok"
    assert list(system_tmp.iterdir()) == []  # used, cleaned up after, the leftover removed

    monkeypatch.setattr(tempfile, "tempdir", str(blocker / "tmp"))
    with pytest.raises(VerifyError, match="there is no directory to unpack the archive in"):
        verify_archive(archive, work_dir=blocker / "stick")


def test_verifications_at_the_same_time_never_remove_each_others_folders(
    data_dir: Path, tmp_path: Path
) -> None:
    # Each one cleans up before it starts: a running one's folder must survive every cleanup.
    archive = create_backup(BackupSources.of(data_dir), tmp_path / "b", app_version="t").path
    errors: list[BaseException] = []

    def verify_repeatedly() -> None:
        try:
            for _ in range(6):
                assert verify_archive(archive).integrity == "ok"
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=verify_repeatedly) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [p.name for p in archive.parent.iterdir()] == [archive.name]


BACKUP_FOREVER = (
    "import sys\n"
    "from pathlib import Path\n"
    "from jobs.backup import BackupSources, create_backup\n"
    "while True:\n"
    "    create_backup(BackupSources.of(Path(sys.argv[1])), Path(sys.argv[2]), app_version='t')\n"
)


def test_a_backup_killed_by_sigkill_while_writing_is_cleaned_by_the_next_one(
    data_dir: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "backups"
    dest.mkdir()
    left = kill_midway(
        BACKUP_FOREVER, [str(data_dir), str(dest)], dest, ".familiar-backup-staging-*"
    )
    assert any((p / "familiar.db").exists() for p in left)  # the snapshot: a full copy
    # A partial archive of an older Familiar (no staging folder): removed once it is old.
    old_partial = dest / ".familiar-backup-20250101T000000000000Z.tar.gz.partial"
    young_partial = dest / ".familiar-backup-20260101T000000000000Z.tar.gz.partial"
    for p in (old_partial, young_partial):
        p.write_bytes(b"half an archive")
    week_ago = time.time() - 7 * 24 * 3600
    os.utime(old_partial, (week_ago, week_ago))

    result = CliRunner().invoke(app, ["backup", "--dest", str(dest)])

    assert result.exit_code == 0, result.output
    assert [p.name for p in dest.iterdir() if p.name.startswith(".")] == [young_partial.name]
    for a in list_archives(dest):  # whatever the child finished before the kill, and ours
        assert verify_archive(a.path).integrity == "ok"
