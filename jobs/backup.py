"""Writing backup archives: a consistent database snapshot, the index, adapters, kept photos and settings.

The database is copied with SQLite's online backup API in steps of a few pages, from a
connection of its own, pausing between steps so the daemon's writers are not starved; it runs in
a worker thread (``sqlite3`` releases the GIL during each step) so the event loop keeps running.
In WAL mode a write by another connection restarts an online backup; after a few restarts the
copy is taken in one step instead (one read transaction: still consistent, and WAL readers never
block writers).

The archive is a gzip-compressed tar (stdlib only: zstd would be a new dependency for a file that
is written once a day). Files are hashed while they are streamed into the tar, and
``manifest.json`` (paths, sizes, SHA-256, schema versions, app version, time) is the last member.
The index and adapters are added before the database snapshot is taken, so the restored index can
only lag the database (memory re-embeds rows above the index's highest id), never lead it.

The archive is written, mode 0600 (it holds every memory), to ``<name>.partial`` in a locked
staging directory in the destination (``jobs.scratch``: a killed run's is removed by the next),
fsynced, renamed to its final name, and the directory fsynced; any error (a full disk included)
removes the partial file. ``open_output`` is the seam through which tests inject a full disk.
Credentials never live in the data directory, and files named like one are skipped all the same.
The settings file is archived without its secret fields (``jobs.redact``), or not at all when it
does not parse.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from loguru import logger

from jobs.errors import BackupError
from jobs.redact import SecretPaths, redact_settings
from jobs.scratch import locked_dir, remove_leftovers

ARCHIVE_PREFIX = "familiar-backup-"
ARCHIVE_SUFFIX = ".tar.gz"
PARTIAL_SUFFIX = ".partial"
STAGING_PREFIX = ".familiar-backup-staging-"
MANIFEST = "manifest.json"
DB_MEMBER = "familiar.db"
CONFIG_MEMBER = "familiar.toml"
DATA_SUBDIRS = ("index", "adapters", "images")
FORMAT = 1
MAX_BACKUP_RESTARTS = 3
_TIME_FORMAT = "%Y%m%dT%H%M%S%fZ"
_NAME_RE = re.compile(
    re.escape(ARCHIVE_PREFIX) + r"(\d{8}T\d{12}Z)" + re.escape(ARCHIVE_SUFFIX) + "$"
)
_CREDENTIAL_RE = re.compile(
    r"(token|secret|credential|passw|api[_-]?key|private[_-]?key|\.pem$|\.key$|^\.env|^id_rsa|^id_ed25519)",
    re.IGNORECASE,
)

OpenOutput = Callable[[Path], IO[bytes]]


def default_open_output(path: Path) -> IO[bytes]:
    # 0600 from the first byte: an archive holds every memory.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    return os.fdopen(fd, "wb")


def archive_name(when: datetime) -> str:
    return f"{ARCHIVE_PREFIX}{when.astimezone(UTC).strftime(_TIME_FORMAT)}{ARCHIVE_SUFFIX}"


def archive_time(name: str) -> datetime | None:
    """The creation time encoded in an archive's file name; None for any other file."""
    m = _NAME_RE.match(name)
    if not m:
        return None
    return datetime.strptime(m.group(1), _TIME_FORMAT).replace(tzinfo=UTC)


def is_credential_name(name: str) -> bool:
    return bool(_CREDENTIAL_RE.search(name))


@dataclass(frozen=True)
class BackupSources:
    """What a backup reads: the data directory, its database and the settings file (if any).

    ``secret_fields`` are the settings' secret paths (``("telegram", "token")``), derived from the
    settings model by the caller; a settings file is only archived with them known."""

    data_dir: Path
    db_path: Path
    config_path: Path | None = None
    secret_fields: SecretPaths = frozenset()

    def __post_init__(self) -> None:
        if self.config_path is not None and not self.secret_fields:
            raise ValueError("a settings file is only archived with its secret fields given")

    @classmethod
    def of(
        cls,
        data_dir: Path,
        config_path: Path | None = None,
        secret_fields: SecretPaths = frozenset(),
    ) -> BackupSources:
        return cls(Path(data_dir), Path(data_dir) / DB_MEMBER, config_path, secret_fields)


@dataclass
class BackupResult:
    path: Path
    size: int
    seconds: float
    manifest: dict[str, Any]
    db_restarts: int = 0
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ArchiveInfo:
    path: Path
    created: datetime
    size: int


def list_archives(dest: Path) -> list[ArchiveInfo]:
    """The finished archives in ``dest``, oldest first (partial files are not archives)."""
    if not dest.is_dir():
        return []
    found = []
    for p in dest.iterdir():
        created = archive_time(p.name)
        if created is not None and p.is_file():
            found.append(ArchiveInfo(p, created, p.stat().st_size))
    return sorted(found, key=lambda a: a.created)


# -- the database snapshot --------------------------------------------------------------------
class _TooManyRestarts(Exception):
    pass


def snapshot_database(
    src: Path, dst: Path, pages_per_step: int = 1024, step_sleep_s: float = 0.002
) -> int:
    """Copy the live database at ``src`` to ``dst`` (a new file); returns how often it restarted."""
    if not src.is_file():
        raise BackupError(f"there is no database at {src}", "check FAMILIAR_DATA_DIR")
    source = sqlite3.connect(src, timeout=30.0, check_same_thread=False)
    restarts = 0
    try:
        source.execute("PRAGMA busy_timeout=30000")
        last_remaining: list[int] = []

        def progress(status: int, remaining: int, total: int) -> None:
            nonlocal restarts
            if last_remaining and remaining > last_remaining[-1]:
                restarts += 1  # another connection wrote: SQLite started the copy over
                if restarts > MAX_BACKUP_RESTARTS:
                    raise _TooManyRestarts
            last_remaining.append(remaining)
            if step_sleep_s:
                time.sleep(step_sleep_s)

        target = sqlite3.connect(dst)
        try:
            try:
                source.backup(target, pages=pages_per_step, progress=progress)
            except _TooManyRestarts:
                logger.info("backup restarted {} times under writes; copying in one step", restarts)
                source.backup(target, pages=-1)
            # A self-contained file: no -wal needed to open it.
            target.execute("PRAGMA journal_mode=DELETE")
        finally:
            target.close()
    finally:
        source.close()
    return restarts


def schema_versions_of(db_file: Path) -> dict[str, int]:
    conn = sqlite3.connect(db_file)
    try:
        has = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='_migrations'"
        ).fetchone()
        if not has:
            return {}
        return {
            p: n
            for p, n in conn.execute(
                "SELECT package, max(number) FROM _migrations GROUP BY package"
            )
        }
    finally:
        conn.close()


# -- streaming files into the tar -------------------------------------------------------------
class _HashingReader(io.RawIOBase):
    """Hands ``tarfile`` the file's bytes while hashing them, so each file is read once."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha.update(data)
        return data


def _walk(root: Path) -> Iterator[Path]:
    """Regular files under ``root`` in a stable order; symbolic links are not followed."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath) / name


class _Writer:
    def __init__(self, tar: tarfile.TarFile, mtime: float) -> None:
        self.tar = tar
        self.mtime = mtime
        self.files: list[dict[str, Any]] = []
        self.skipped: list[str] = []

    def add_file(self, path: Path, arcname: str) -> None:
        try:
            f = open(path, "rb")  # noqa: SIM115
        except FileNotFoundError:  # replaced or removed since it was listed (a temp file)
            self.skipped.append(f"{arcname} (vanished)")
            return
        with f:
            st = os.fstat(f.fileno())
            info = tarfile.TarInfo(arcname)
            info.size, info.mtime, info.mode = st.st_size, st.st_mtime, 0o600
            reader = _HashingReader(f)
            self.tar.addfile(info, reader)
        self.files.append({"path": arcname, "size": st.st_size, "sha256": reader.sha.hexdigest()})

    def add_bytes(self, data: bytes, arcname: str, record: bool = True) -> None:
        info = tarfile.TarInfo(arcname)
        info.size, info.mtime, info.mode = len(data), self.mtime, 0o600
        self.tar.addfile(info, io.BytesIO(data))
        if record:
            self.files.append(
                {"path": arcname, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            )


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_backup(
    sources: BackupSources,
    dest: Path,
    *,
    app_version: str,
    pages_per_step: int = 1024,
    step_sleep_s: float = 0.002,
    now: datetime | None = None,
    open_output: OpenOutput = default_open_output,
    compresslevel: int = 6,
) -> BackupResult:
    """Write one archive into ``dest``. Blocking: call it through ``asyncio.to_thread``."""
    started = time.monotonic()
    now = now or datetime.now(UTC)
    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise BackupError(
            f"cannot create the backup directory {dest}: {exc.strerror}",
            "set jobs.backup_dir to a writable directory",
        ) from None
    final = dest / archive_name(now)
    try:
        remove_stale_partials(dest)
        staging_lock, staging = locked_dir(dest, STAGING_PREFIX)
    except OSError as exc:
        raise BackupError(
            f"cannot write in the backup directory {dest}: {exc.strerror or exc}",
            "set jobs.backup_dir to a writable directory",
        ) from None
    # The partial archive lives in the locked staging directory: a killed run's is recognised.
    partial = staging / f"{final.name}{PARTIAL_SUFFIX}"
    out: IO[bytes] | None = None
    restarts = 0
    try:
        out = open_output(partial)
        os.chmod(partial, 0o600)  # whatever the opener (or the umask) made of it
        with tarfile.open(fileobj=out, mode="w:gz", compresslevel=compresslevel) as tar:
            # 16 KB chunks by default: far more GIL hand-offs and system calls.
            tar.copybufsize = 1024 * 1024  # type: ignore[attr-defined]
            w = _Writer(tar, now.timestamp())
            for sub in DATA_SUBDIRS:
                root = sources.data_dir / sub
                if not root.is_dir():
                    continue
                for path in _walk(root):
                    rel = path.relative_to(sources.data_dir).as_posix()
                    if path.is_symlink() or not path.is_file():
                        w.skipped.append(f"{rel} (not a regular file)")
                    elif is_credential_name(path.name):
                        w.skipped.append(f"{rel} (named like a credential)")
                    else:
                        w.add_file(path, rel)
            snap = staging / DB_MEMBER
            restarts = snapshot_database(sources.db_path, snap, pages_per_step, step_sleep_s)
            versions = schema_versions_of(snap)
            w.add_file(snap, DB_MEMBER)
            redacted: list[str] = []
            config_origin, config_problem = None, None
            if sources.config_path is not None and sources.config_path.is_file():
                settings = redact_settings(sources.config_path.read_bytes(), sources.secret_fields)
                redacted = settings.removed
                if settings.text is None:
                    config_problem = f"not archived: {settings.problem}"
                    w.skipped.append(f"{sources.config_path.name} ({config_problem})")
                else:
                    w.add_bytes(settings.text.encode("utf-8"), CONFIG_MEMBER)
                    inside = sources.config_path.resolve().parent == sources.data_dir.resolve()
                    config_origin = "data_dir" if inside else str(sources.config_path)
            manifest: dict[str, Any] = {
                "format": FORMAT,
                "app": "familiar",
                "app_version": app_version,
                "created_at": now.astimezone(UTC).isoformat(),
                "schema_versions": versions,
                "config_origin": config_origin,
                "redacted_settings": redacted,
                "settings_problem": config_problem,
                "skipped": w.skipped,
                "files": w.files,
            }
            w.add_bytes(json.dumps(manifest, indent=1).encode(), MANIFEST, record=False)
        out.flush()
        os.fsync(out.fileno())
        out.close()
        out = None
        os.replace(partial, final)
        _fsync_dir(dest)
    except BaseException as exc:
        if out is not None:
            try:
                out.close()
            except OSError:
                pass  # the close of a file on a full disk can fail too; it is removed below
        partial.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            if exc.errno == errno.ENOSPC:
                raise BackupError(
                    f"the disk holding {dest} is full; no archive was written",
                    "free some space or set jobs.backup_dir to another disk",
                ) from exc
            raise BackupError(
                f"the backup failed: {exc}", "check the data and backup directories"
            ) from exc
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        os.close(staging_lock)
    size = final.stat().st_size
    logger.info("backup written: {} ({} bytes)", final, size)
    return BackupResult(
        final, size, time.monotonic() - started, manifest, restarts, list(manifest["skipped"])
    )


def remove_stale_partials(dest: Path, older_than_s: float = 6 * 3600) -> list[Path]:
    """Leftovers of backups killed mid-write: staging directories whose run is gone (at once,
    see ``jobs.scratch``), and partial archives of older versions (after ``older_than_s``)."""
    if not dest.is_dir():
        return []
    removed = remove_leftovers(dest, STAGING_PREFIX, older_than_s)
    cutoff = time.time() - older_than_s
    for p in dest.glob(f".*{PARTIAL_SUFFIX}"):
        if p.is_file() and p.lstat().st_mtime < cutoff:
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed
