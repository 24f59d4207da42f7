"""Backups: round trip through restore, corruption, full disk, secrets, the daemon's lock."""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import json
import sqlite3
import tarfile
import threading
import tomllib
from pathlib import Path

import pytest

from bot.config import secret_field_paths
from bot.daemon.lock import InstanceLock
from jobs.backup import BackupSources, create_backup, list_archives
from jobs.errors import BackupError, RestoreError, VerifyError
from jobs.restore import restore_archive
from jobs.schema import migrations as jobs_migrations
from jobs.verify import verify_archive
from memory.db import Database
from memory.schema import migrations as memory_migrations
from tests.jobs.conftest import all_test_migrations, fill


def rows(db_file: Path) -> dict[str, list[tuple]]:
    conn = sqlite3.connect(db_file)
    try:
        return {
            t: conn.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall()
            for t in ("memories", "messages", "_migrations")
        }
    finally:
        conn.close()


def checksums(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for sub in ("index", "adapters")
        for p in sorted((root / sub).rglob("*"))
        if p.is_file()
    }


def backup(data_dir: Path, **kw) -> Path:
    return create_backup(
        BackupSources.of(data_dir, data_dir / "familiar.toml", secret_field_paths()),
        data_dir / "backups",
        app_version="test",
        **kw,
    ).path


def test_backup_then_restore_reproduces_rows_and_files(data_dir: Path) -> None:
    before_rows, before_files = rows(data_dir / "familiar.db"), checksums(data_dir)
    archive = backup(data_dir)

    # Change everything the archive covers, then restore.
    db = Database.open(data_dir / "familiar.db", all_test_migrations())
    fill(db, 3, ["written after the backup"] * 5)
    with db.transaction() as conn:
        conn.execute("DELETE FROM messages WHERE chat_id = 2")
    db.close()
    (data_dir / "index" / "vectors.faiss").write_bytes(b"newer index")
    (data_dir / "adapters" / "style-v1" / "adapter_model.safetensors").unlink()
    (data_dir / "notes.txt").write_text("not covered by backups")

    plan = restore_archive(archive, data_dir, dry_run=True)
    assert not plan.done
    assert any(c.startswith("table messages: 305 rows now, 350 after") for c in plan.changes), (
        plan.changes
    )
    assert "index/vectors.faiss: replaced" in plan.changes
    assert "adapters/style-v1/adapter_model.safetensors: added" in plan.changes
    assert rows(data_dir / "familiar.db") != before_rows  # dry run changed nothing

    plan = restore_archive(archive, data_dir)
    assert plan.done
    assert rows(data_dir / "familiar.db") == before_rows
    assert checksums(data_dir) == before_files
    # The previous data was moved aside, not deleted; what backups do not cover came across.
    assert (plan.aside / "index" / "vectors.faiss").read_bytes() == b"newer index"
    assert (data_dir / "notes.txt").read_text() == "not covered by backups"
    assert list_archives(data_dir / "backups")[0].path.name == archive.name
    # The restored database opens through the normal path (migrations validated).
    Database.open(data_dir / "familiar.db", all_test_migrations()).close()


def test_settings_are_archived_without_secrets_and_credential_files_skipped(data_dir: Path) -> None:
    (data_dir / "adapters" / "hf_token").write_text("hf_secret")
    result = create_backup(
        BackupSources.of(data_dir, data_dir / "familiar.toml", secret_field_paths()),
        data_dir / "backups",
        app_version="test",
    )
    with tarfile.open(result.path) as tar:
        names = tar.getnames()
        settings = tar.extractfile("familiar.toml").read().decode()  # type: ignore[union-attr]
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert "adapters/hf_token" not in names
    assert "SECRET" not in settings
    # Everything else survives, as values: the archived copy is loaded like the original.
    assert tomllib.loads(settings) == {"telegram": {"admins": [42]}, "jobs": {"timezone": "UTC"}}
    assert manifest["redacted_settings"] == ["telegram.token"]
    assert manifest["schema_versions"] == {
        "memory": memory_migrations.latest,
        "jobs": jobs_migrations.latest,
    }
    assert names[-1] == "manifest.json"
    assert {f["path"] for f in manifest["files"]} == {
        "index/meta.json",
        "index/vectors.faiss",
        "adapters/style-v1/adapter_model.safetensors",
        "familiar.db",
        "familiar.toml",
    }


def test_snapshot_is_consistent_under_concurrent_writes(data_dir: Path) -> None:
    db = Database.open(data_dir / "familiar.db", all_test_migrations())
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            fill(db, 9, ["concurrent write"] * 3)

    t = threading.Thread(target=writer)
    t.start()
    try:
        # One page per step so writes land between steps and SQLite restarts the copy.
        result = create_backup(
            BackupSources.of(data_dir),
            data_dir / "backups",
            app_version="t",
            pages_per_step=1,
            step_sleep_s=0.001,
        )
    finally:
        stop.set()
        t.join()
        db.close()
    report = verify_archive(result.path)
    assert report.integrity == "ok"
    with tarfile.open(result.path) as tar:
        snap = data_dir.parent / "snap.db"
        snap.write_bytes(tar.extractfile("familiar.db").read())  # type: ignore[union-attr]
    conn = sqlite3.connect(snap)
    # Each write is one transaction of 3 memories + 3 messages: a snapshot never splits one.
    n_mem = conn.execute("SELECT count(*) FROM memories WHERE chat_id = 9").fetchone()[0]
    n_msg = conn.execute("SELECT count(*) FROM messages WHERE chat_id = 9").fetchone()[0]
    conn.close()
    assert n_mem == n_msg and n_mem % 3 == 0


def _rewrite(archive: Path, out: Path, change: dict[str, bytes]) -> None:
    with tarfile.open(archive) as src, tarfile.open(out, "w:gz") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read()  # type: ignore[union-attr]
            data = change.get(m.name, data)
            m.size = len(data)
            dst.addfile(m, io.BytesIO(data))


def test_tampered_file_is_named(data_dir: Path, tmp_path: Path) -> None:
    archive = backup(data_dir)
    assert verify_archive(archive).integrity == "ok"
    bad = tmp_path / "tampered.tar.gz"
    _rewrite(archive, bad, {"index/meta.json": b'{"dim": 385}'})
    with pytest.raises(VerifyError, match=r"index/meta\.json .* does not match its checksum"):
        verify_archive(bad)


def test_truncated_archive_is_rejected(data_dir: Path, tmp_path: Path) -> None:
    archive = backup(data_dir)
    bad = tmp_path / "truncated.tar.gz"
    bad.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(VerifyError, match="truncated or corrupt"):
        verify_archive(bad)


def test_flipped_byte_is_rejected(data_dir: Path, tmp_path: Path) -> None:
    archive = backup(data_dir)
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "flipped.tar.gz"
    bad.write_bytes(bytes(data))
    with pytest.raises(VerifyError):
        verify_archive(bad)


def test_corrupt_database_fails_integrity_check(data_dir: Path, tmp_path: Path) -> None:
    archive = backup(data_dir)
    with tarfile.open(archive) as tar:
        db_bytes = bytearray(tar.extractfile("familiar.db").read())  # type: ignore[union-attr]
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    # Garbage in the middle of the b-tree pages, with a manifest that agrees (a consistent forgery).
    page = 4096
    db_bytes[3 * page : 3 * page + 200] = b"\x07" * 200
    for f in manifest["files"]:
        if f["path"] == "familiar.db":
            f["sha256"] = hashlib.sha256(bytes(db_bytes)).hexdigest()
    bad = tmp_path / "corrupt-db.tar.gz"
    _rewrite(
        archive,
        bad,
        {"familiar.db": bytes(db_bytes), "manifest.json": json.dumps(manifest).encode()},
    )
    with pytest.raises(VerifyError, match="familiar.db .* integrity_check"):
        verify_archive(bad)
    # And restore refuses it without touching the data directory.
    before = rows(data_dir / "familiar.db")
    with pytest.raises(VerifyError):
        restore_archive(bad, data_dir)
    assert rows(data_dir / "familiar.db") == before
    assert not list(data_dir.parent.glob("data.before-restore-*"))


class FullDisk(io.FileIO):
    """A file that behaves like one on a disk that fills up after ``room`` bytes."""

    def __init__(self, path: Path, room: int) -> None:
        super().__init__(path, "xb")
        self.room = room

    def write(self, b) -> int:  # type: ignore[override]
        if self.room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(b)
        return super().write(b)


def test_full_disk_leaves_no_partial_archive(data_dir: Path) -> None:
    dest = data_dir / "backups"
    with pytest.raises(BackupError, match="full"):
        create_backup(
            BackupSources.of(data_dir),
            dest,
            app_version="t",
            open_output=lambda p: FullDisk(p, room=30_000),
        )
    assert list(dest.iterdir()) == []


def test_restore_refuses_while_the_daemon_holds_the_lock(data_dir: Path) -> None:
    archive = backup(data_dir)
    before = rows(data_dir / "familiar.db")
    with InstanceLock(data_dir):  # exactly what the daemon holds while it runs
        with pytest.raises(RestoreError, match="daemon .* is using the data directory"):
            restore_archive(archive, data_dir)
    assert rows(data_dir / "familiar.db") == before
    assert not list(data_dir.parent.glob("data.before-restore-*"))
    assert restore_archive(archive, data_dir).done  # once it stopped


def test_gzip_of_garbage_is_not_an_archive(tmp_path: Path) -> None:
    bad = tmp_path / "familiar-backup-x.tar.gz"
    bad.write_bytes(gzip.compress(b"not a tar file at all" * 100))
    with pytest.raises(VerifyError):
        verify_archive(bad)


def test_kept_photos_are_archived_and_restored(data_dir: Path) -> None:
    images = data_dir / "images"
    images.mkdir()
    photo = images / f"{'ab' * 32}.jpg"
    photo.write_bytes(b"\xff\xd8 a photo's bytes")
    archive = backup(data_dir)
    with tarfile.open(archive) as tar:
        assert f"images/{photo.name}" in tar.getnames()
    photo.unlink()
    restore_archive(archive, data_dir, dry_run=False)
    assert photo.read_bytes() == b"\xff\xd8 a photo's bytes"
