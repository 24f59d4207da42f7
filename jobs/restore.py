"""Restoring an archive, never leaving the data directory half-restored.

Restore refuses while a daemon holds the data directory's lock, and holds that lock itself
throughout. It verifies (``jobs.verify``) and extracts into a directory beside the data directory
(same file system, so renames are atomic), shows what will change, then swaps: the current
directory becomes ``<data>.before-restore-<time>`` (kept, not deleted) and the restored one takes
its name, with ``renameat2(RENAME_EXCHANGE)`` where the kernel has it (one atomic step) and two
renames otherwise. What the archive does not cover (the backups themselves, logs) is moved
across into the restored directory afterwards. On a new machine (no data directory, or an empty
one, or no parent directory either) there is nothing to keep, and no ``.before-restore``
directory is left behind. The staging directory is locked from its creation, so the staging
directory of a restore that was killed is told apart and removed by the next restore.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loguru import logger

from jobs.backup import CONFIG_MEMBER, DATA_SUBDIRS, DB_MEMBER, _fsync_dir
from jobs.datalock import LOCK_NAME, DataDirBusy, DataDirLock, held_elsewhere
from jobs.errors import RestoreError, VerifyError
from jobs.verify import extract_verified, integrity_check

RESTORE_INFIX = ".restore-"
DB_SIDECARS = (DB_MEMBER, f"{DB_MEMBER}-wal", f"{DB_MEMBER}-shm", f"{DB_MEMBER}-journal")
_CHUNK = 1024 * 1024


# -- restore ----------------------------------------------------------------------------------
@dataclass
class RestorePlan:
    archive: Path
    data_dir: Path
    aside: Path
    manifest: dict[str, Any]
    changes: list[str] = field(default_factory=list)
    dry_run: bool = True
    done: bool = False
    # False on a new machine (the data directory is missing or empty): nothing is moved aside;
    # after the restore, whether anything was kept aside.
    previous: bool = True

    def describe(self) -> str:
        m = self.manifest
        head = [
            f"archive: {self.archive.name} (made {m.get('created_at')}, Familiar {m.get('app_version')}, "
            f"schema {m.get('schema_versions')})",
            f"data directory: {self.data_dir}",
            f"the current data will be moved to: {self.aside}"
            if self.previous
            else "there was no previous data in it: nothing is moved aside",
        ]
        return "\n".join(head + [f"  {c}" for c in self.changes or ["  (nothing changes)"]])


def _table_counts(db_file: Path) -> dict[str, int]:
    if not db_file.is_file():
        return {}
    conn = sqlite3.connect(db_file)
    try:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
                " AND sql NOT LIKE 'CREATE VIRTUAL%' AND name NOT LIKE '%_fts_%'"
            )
        ]
        return {n: conn.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}
    except sqlite3.DatabaseError:
        return {}
    finally:
        conn.close()


def _sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def _covered_files(root: Path, with_config: bool) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for sub in DATA_SUBDIRS:
        if (root / sub).is_dir():
            for p in sorted((root / sub).rglob("*")):
                if p.is_file() and not p.is_symlink():
                    out[p.relative_to(root).as_posix()] = p
    if with_config and (root / CONFIG_MEMBER).is_file():
        out[CONFIG_MEMBER] = root / CONFIG_MEMBER
    return out


def plan_changes(data_dir: Path, restored: Path, manifest: dict[str, Any]) -> list[str]:
    """What the restore changes: database rows per table, then files added, replaced, removed."""
    changes = []
    before, after = _table_counts(data_dir / DB_MEMBER), _table_counts(restored / DB_MEMBER)
    for t in sorted(set(before) | set(after)):
        if before.get(t, 0) != after.get(t, 0):
            changes.append(
                f"table {t}: {before.get(t, 0)} rows now, {after.get(t, 0)} after the restore"
            )
    with_config = manifest.get("config_origin") == "data_dir"
    old = {k: _sha256(p) for k, p in _covered_files(data_dir, with_config).items()}
    new = {f["path"]: f["sha256"] for f in manifest["files"] if f["path"] != DB_MEMBER}
    if not with_config:
        new.pop(CONFIG_MEMBER, None)
    for path in sorted(set(old) | set(new)):
        if path not in old:
            changes.append(f"{path}: added")
        elif path not in new:
            changes.append(f"{path}: removed (kept in the moved-aside copy)")
        elif old[path] != new[path]:
            changes.append(f"{path}: replaced")
    if with_config and manifest.get("redacted_settings"):
        keys = ", ".join(manifest["redacted_settings"])
        changes.append(
            f"familiar.toml: the archived copy has no secrets ({keys} removed); "
            "give them again through systemd credentials or FAMILIAR_* variables"
        )
    if manifest.get("settings_problem"):
        changes.append(
            f"the settings file was {manifest['settings_problem']}; the current one is left alone"
        )
    if manifest.get("config_origin") not in (None, "data_dir"):
        changes.append(
            f"settings file {manifest['config_origin']} is left alone; the archived copy "
            f"is written to familiar.restored.toml in the data directory"
        )
    return changes


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EPERM, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(a))


def restore_archive(
    archive: Path, data_dir: Path, *, dry_run: bool = False, now: datetime | None = None
) -> RestorePlan:
    """Restore ``archive`` into ``data_dir`` (or only say what would change, with ``dry_run``)."""
    archive, data_dir = Path(archive).resolve(), Path(data_dir).expanduser().resolve()
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    parent = data_dir.parent
    previous = _has_data(data_dir)
    lock = DataDirLock(data_dir) if data_dir.is_dir() else None
    if lock is not None:
        try:
            lock.acquire()
        except DataDirBusy as busy:
            raise RestoreError(
                f"a Familiar daemon (pid {busy.holder}) is using the data directory {data_dir}",
                "stop it first (`systemctl stop familiar`), then run the restore again",
            ) from None
    try:
        parent.mkdir(parents=True, exist_ok=True)  # a new machine may lack ~/.local/state too
        _remove_restore_leftovers(parent, data_dir.name)
        staging = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}{RESTORE_INFIX}", dir=parent))
    except BaseException as exc:
        if lock is not None:
            lock.release()
        if isinstance(exc, OSError):
            raise RestoreError(
                f"cannot create a directory to restore into beside {data_dir}: "
                f"{exc.strerror or exc}",
                f"make {parent} a writable directory, or set FAMILIAR_DATA_DIR elsewhere",
            ) from None
        raise
    # The restored directory is locked from its creation until we are done: a daemon cannot
    # start on it, and a later restore can tell it from a killed one's leftover.
    new_lock = DataDirLock(staging)
    try:
        new_lock.acquire()
        manifest = extract_verified(archive, staging)
        result = integrity_check(staging / DB_MEMBER)
        if result != "ok":
            raise VerifyError(
                f"{DB_MEMBER} in {archive.name} fails integrity_check: {result[:300]}",
                "use another archive",
            )
        aside = parent / f"{data_dir.name}.before-restore-{stamp}"
        plan = RestorePlan(
            archive,
            data_dir,
            aside,
            manifest,
            plan_changes(data_dir, staging, manifest),
            dry_run=dry_run,
            previous=previous,
        )
        if dry_run:
            return plan
        if data_dir.exists() and aside.exists():
            raise RestoreError(
                f"{aside} already exists", "move it away, or wait a second and retry"
            )
        if (
            manifest.get("config_origin") not in (None, "data_dir")
            and (staging / CONFIG_MEMBER).exists()
        ):
            os.replace(staging / CONFIG_MEMBER, staging / "familiar.restored.toml")
        os.chmod(staging, 0o700)
        _swap(staging, data_dir, aside)
        if previous:
            _carry_over(aside, data_dir, with_config=(data_dir / CONFIG_MEMBER).exists())
        # Nothing left in it once backups and logs came across (or it was empty): not kept.
        _remove_if_only_lock(aside)
        plan.previous = aside.exists()
        _fsync_dir(parent)
        plan.done = True
        kept = f"previous data in {aside}" if plan.previous else "no previous data to keep"
        logger.info("restored {} into {}; {}", archive, data_dir, kept)
        return plan
    finally:
        new_lock.release()
        if lock is not None:
            lock.release()
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _remove_restore_leftovers(parent: Path, name: str) -> None:
    """Staging directories of restores that were killed (each holds a full database copy).

    A running restore holds the lock in its staging directory; one whose lock is free was
    killed. One without a lock file is only taken for a leftover after an hour (a restore that
    has just created it has not locked it yet)."""
    for p in parent.glob(f".{name}{RESTORE_INFIX}*"):
        if not p.is_dir() or p.is_symlink():
            continue
        if (p / LOCK_NAME).exists():
            stale = not held_elsewhere(p)
        else:
            stale = time.time() - p.stat().st_mtime > 3600
        if stale:
            shutil.rmtree(p, ignore_errors=True)
            logger.info("removed {}, left by a restore that was killed", p)


def _has_data(data_dir: Path) -> bool:
    """Whether ``data_dir`` holds anything a restore must keep (a lock file alone is nothing)."""
    if not data_dir.is_dir():
        return False
    return any(entry.name != LOCK_NAME for entry in data_dir.iterdir())


def _remove_if_only_lock(aside: Path) -> None:
    """The moved-aside directory, when it holds nothing but the lock file: removed."""
    if not aside.is_dir() or any(e.name != LOCK_NAME for e in aside.iterdir()):
        return
    try:
        (aside / LOCK_NAME).unlink(missing_ok=True)
        aside.rmdir()
    except OSError as exc:  # something appeared in it meanwhile: it is kept
        logger.warning("kept {}: {}", aside, exc)


def _swap(staging: Path, data_dir: Path, aside: Path) -> None:
    if not data_dir.exists():
        os.rename(staging, data_dir)
        return
    if _exchange(staging, data_dir):
        os.rename(staging, aside)  # staging now holds the previous data
        return
    os.rename(data_dir, aside)
    try:
        os.rename(staging, data_dir)
    except OSError:
        os.rename(aside, data_dir)
        raise


def _carry_over(aside: Path, data_dir: Path, with_config: bool) -> None:
    """Move what the archive does not cover (backups, logs, ...) from the old data into the new."""
    if not aside.is_dir():
        return
    covered = set(DB_SIDECARS) | set(DATA_SUBDIRS) | {LOCK_NAME}
    if with_config:
        covered.add(CONFIG_MEMBER)
    for entry in aside.iterdir():
        if entry.name in covered or (data_dir / entry.name).exists():
            continue
        try:
            os.rename(entry, data_dir / entry.name)
        except OSError as exc:
            logger.warning("left {} in {}: {}", entry.name, aside, exc)
