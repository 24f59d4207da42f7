"""Verifying an archive: every checksum against the manifest, then ``integrity_check``.

Verification streams the archive once: every member is extracted into a scratch directory
(``jobs.scratch``: a killed run's is removed by the next) while it is hashed, then compared with
``manifest.json`` (the last member), and the extracted database must pass
``PRAGMA integrity_check``. A truncated gzip stream, a changed byte, a missing or an
unlisted file each fail with the name of the file concerned. Restore extracts through the same
``extract_verified``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import sqlite3
import tarfile
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from jobs.backup import DB_MEMBER, FORMAT, MANIFEST
from jobs.errors import VerifyError
from jobs.scratch import verify_scratch

_CHUNK = 1024 * 1024


@dataclass
class VerifyReport:
    archive: Path
    manifest: dict[str, Any]
    files: int
    bytes: int
    integrity: str
    seconds: float


def _safe_member_path(name: str) -> PurePosixPath:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise VerifyError(
            f"the archive member {name!r} points outside the archive",
            "this archive was not written by Familiar; do not restore it",
        )
    return p


def extract_verified(archive: Path, into: Path) -> dict[str, Any]:
    """Extract ``archive`` into the empty directory ``into``, checking every file against the
    manifest; returns the manifest. Raises VerifyError naming the first bad file."""
    archive = Path(archive)
    if not archive.is_file():
        raise VerifyError(
            f"there is no archive at {archive}",
            "give the path of a .tar.gz made by `familiar backup`",
        )
    seen: dict[str, tuple[int, str]] = {}
    manifest_bytes: bytes | None = None
    current = "(the archive header)"
    try:
        with tarfile.open(archive, mode="r|gz") as tar:
            for member in tar:
                current = member.name
                rel = _safe_member_path(member.name)
                if not member.isfile():
                    raise VerifyError(
                        f"{member.name} in {archive.name} is not a regular file",
                        "this archive was not written by Familiar; do not restore it",
                    )
                src = tar.extractfile(member)
                assert src is not None
                if member.name == MANIFEST:
                    manifest_bytes = src.read()
                    continue
                target = into / Path(*rel.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                sha, size = hashlib.sha256(), 0
                with open(target, "xb") as out:
                    while chunk := src.read(_CHUNK):
                        sha.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
                seen[member.name] = (size, sha.hexdigest())
    except VerifyError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise VerifyError(
                f"the disk filled up while extracting {current}", "free some space and verify again"
            ) from None
        raise VerifyError(
            f"{archive.name} is truncated or corrupt (while reading {current}: {exc})",
            "use another archive; this one cannot be restored",
        ) from None
    if manifest_bytes is None:
        raise VerifyError(
            f"{archive.name} has no {MANIFEST} (truncated, or not a Familiar backup)",
            "use another archive",
        )
    try:
        manifest = json.loads(manifest_bytes)
        listed = {f["path"]: (int(f["size"]), str(f["sha256"])) for f in manifest["files"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise VerifyError(
            f"{MANIFEST} in {archive.name} cannot be read ({exc})", "use another archive"
        ) from None
    if manifest.get("format", 0) > FORMAT:
        raise VerifyError(
            f"{archive.name} was written by a newer Familiar (format {manifest.get('format')})",
            "restore it with that version or a newer one",
        )
    for path, (size, digest) in listed.items():
        if path not in seen:
            raise VerifyError(
                f"{path} is listed in the manifest but missing from {archive.name}",
                "use another archive",
            )
        got_size, got_digest = seen[path]
        if got_size != size or got_digest != digest:
            raise VerifyError(
                f"{path} in {archive.name} does not match its checksum "
                f"({got_size} bytes, expected {size})",
                "use another archive",
            )
    for path in seen:
        if path not in listed:
            raise VerifyError(
                f"{path} in {archive.name} is not in the manifest", "use another archive"
            )
    if DB_MEMBER not in seen:
        raise VerifyError(f"{archive.name} holds no database", "use another archive")
    return manifest


def integrity_check(db_file: Path) -> str:
    try:
        conn = sqlite3.connect(db_file)
        try:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return "; ".join(str(r[0]) for r in rows)


def verify_archive(archive: Path, work_dir: Path | None = None) -> VerifyReport:
    """Every checksum, then ``integrity_check`` on the database restored into a scratch dir."""
    started = time.monotonic()
    archive = Path(archive)
    with verify_scratch(work_dir or archive.parent, Path(tempfile.gettempdir())) as scratch:
        manifest = extract_verified(archive, scratch)
        result = integrity_check(scratch / DB_MEMBER)
        if result != "ok":
            raise VerifyError(
                f"{DB_MEMBER} in {archive.name} fails integrity_check: {result[:300]}",
                "use another archive",
            )
    files = manifest["files"]
    return VerifyReport(
        archive,
        manifest,
        len(files),
        sum(f["size"] for f in files),
        result,
        time.monotonic() - started,
    )
