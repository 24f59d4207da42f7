"""Adapters on disk: ``<data dir>/adapters/<archetype>/<version>/``, checksummed, promoted, rolled back.

Each version directory holds the adapter's files and ``metadata.json`` (the SHA-256 of every
file, the training config and result); an evaluation report goes to ``evaluation.json`` beside
it. ``<archetype>/promoted.json`` names the served version and keeps the promotion history
that rollback walks back. Archetype names are strict ASCII slugs; every path is resolved and
must stay inside the adapters directory (names, symlinks and copied files alike); every write
goes through a temporary name and a rename, so a crash or a full disk leaves the registry as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agents.training.atomic import atomic_directory, atomic_write_text
from agents.training.errors import RegistryError

SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
VERSION = re.compile(r"v[1-9][0-9]{0,5}")
SLUG_FIX = (
    "use 1-40 characters: lowercase ASCII letters, digits and '-', starting with a letter or digit"
)
METADATA, EVALUATION, PROMOTED = "metadata.json", "evaluation.json", "promoted.json"


def check_slug(name: str) -> str:
    """``name`` itself if it is a safe archetype name, else RegistryError (no normalising)."""
    if not isinstance(name, str) or not name.isascii() or not SLUG.fullmatch(name):
        raise RegistryError(f"{name!r} is not a valid archetype name", SLUG_FIX)
    return name


def check_version(version: str) -> str:
    if not isinstance(version, str) or not version.isascii() or not VERSION.fullmatch(version):
        raise RegistryError(
            f"{version!r} is not an adapter version", "versions look like v1, v2, ..."
        )
    return version


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class AdapterVersion:
    archetype: str
    version: str
    path: Path
    metadata: dict[str, Any]
    evaluation: dict[str, Any] | None
    promoted: bool

    @property
    def number(self) -> int:
        return int(self.version[1:])


class AdapterRegistry:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- paths ---------------------------------------------------------------------------
    def _base(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root.resolve()

    def _inside(self, path: Path) -> Path:
        """``path`` resolved (symlinks followed); RegistryError unless it stays under the root."""
        base = self._base()
        resolved = path.resolve()
        if resolved != base and not resolved.is_relative_to(base):
            raise RegistryError(
                f"{path} leads outside the adapters directory {base}",
                "remove the symlink or the stray path; nothing was read or written",
            )
        return resolved

    def archetype_dir(self, archetype: str) -> Path:
        return self._inside(self._base() / check_slug(archetype))

    def version_dir(self, archetype: str, version: str) -> Path:
        return self._inside(self.archetype_dir(archetype) / check_version(version))

    # -- reading -------------------------------------------------------------------------
    def archetypes(self) -> list[str]:
        base = self._base()
        return sorted(
            p.name
            for p in base.iterdir()
            if p.is_dir() and SLUG.fullmatch(p.name) and p.name.isascii()
        )

    def versions(self, archetype: str) -> list[AdapterVersion]:
        directory = self.archetype_dir(archetype)
        if not directory.is_dir():
            return []
        names = [
            p.name
            for p in directory.iterdir()
            if VERSION.fullmatch(p.name) and (p / METADATA).is_file()
        ]
        return sorted((self.get(archetype, n) for n in names), key=lambda v: v.number)

    def get(self, archetype: str, version: str) -> AdapterVersion:
        path = self.version_dir(archetype, version)
        try:
            metadata = json.loads((path / METADATA).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise RegistryError(
                f"adapter {archetype} {version} does not exist or has no metadata",
                "`familiar adapters list` shows the versions",
            ) from None
        evaluation = None
        if (path / EVALUATION).is_file():
            evaluation = json.loads((path / EVALUATION).read_text(encoding="utf-8"))
        promoted = self._promotion(archetype).get("version") == version
        return AdapterVersion(archetype, version, path, metadata, evaluation, promoted)

    def verify(self, archetype: str, version: str) -> AdapterVersion:
        """The version, after checking every file against its recorded SHA-256."""
        found = self.get(archetype, version)
        for rel, digest in found.metadata.get("files", {}).items():
            file = self._inside(found.path / rel)
            if not file.is_file() or sha256(file) != digest:
                raise RegistryError(
                    f"adapter {archetype} {version}: {rel} is missing or altered",
                    "train it again, or roll back to an earlier version",
                )
        return found

    # -- writing -------------------------------------------------------------------------
    def add(
        self, archetype: str, source: Path, metadata: dict[str, Any] | None = None
    ) -> AdapterVersion:
        """Copy an adapter directory in as the next version, with checksums; atomic.

        Idempotent for a training job: when ``metadata`` names a ``job_id`` and a version of the
        same job with the same files (``source_checksum``) is already here, that version is
        returned and nothing is written, so a pipeline rerun after a crash adds no duplicate.
        """
        directory = self.archetype_dir(archetype)
        files = self._source_files(Path(source))
        checksum = hashlib.sha256(
            json.dumps({rel: sha256(Path(source) / rel) for rel in files}, sort_keys=True).encode()
        ).hexdigest()
        job_id = (metadata or {}).get("job_id")
        if job_id is not None:
            for existing_version in self.versions(archetype):
                found = existing_version.metadata
                if found.get("job_id") == job_id and found.get("source_checksum") == checksum:
                    return existing_version
        directory.mkdir(parents=True, exist_ok=True)
        existing = [int(p.name[1:]) for p in directory.iterdir() if VERSION.fullmatch(p.name)]
        version = f"v{max(existing, default=0) + 1}"
        final = self.version_dir(archetype, version)
        try:
            with atomic_directory(final) as tmp:
                digests = {}
                for rel in files:
                    target = tmp / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(Path(source) / rel, target)
                    digests[rel] = sha256(target)
                record = {
                    **(metadata or {}),
                    "source_checksum": checksum,
                    "archetype": archetype,
                    "version": version,
                    "files": digests,
                    "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                }
                (tmp / METADATA).write_text(
                    json.dumps(record, indent=1, sort_keys=True), encoding="utf-8"
                )
        except OSError as exc:
            raise RegistryError(
                f"adapter {archetype} {version} could not be written ({exc.strerror or exc})",
                "free disk space in the data directory; the registry was left unchanged",
            ) from None
        return self.get(archetype, version)

    def _source_files(self, source: Path) -> list[str]:
        if not source.is_dir() or source.is_symlink():
            raise RegistryError(
                f"{source} is not an adapter directory", "point at the trainer's adapter/ output"
            )
        files = []
        for dirpath, dirnames, filenames in os.walk(source):
            for name in dirnames + filenames:
                path = Path(dirpath) / name
                if path.is_symlink():
                    raise RegistryError(
                        f"{path} is a symlink; adapters are copied only as plain files",
                        "replace the link with the file it points to",
                    )
            for name in filenames:
                rel = (Path(dirpath) / name).relative_to(source).as_posix()
                if name not in (METADATA, EVALUATION):
                    files.append(rel)
        if not any(f.endswith(".safetensors") for f in files):
            raise RegistryError(
                f"{source} holds no .safetensors weights", "point at the trainer's adapter/ output"
            )
        return sorted(files)

    def set_evaluation(self, archetype: str, version: str, report: dict[str, Any]) -> None:
        path = self.version_dir(archetype, version)
        self.get(archetype, version)
        atomic_write_text(path / EVALUATION, json.dumps(report, indent=1, sort_keys=True))

    def _promotion(self, archetype: str) -> dict[str, Any]:
        file = self.archetype_dir(archetype) / PROMOTED
        if not file.is_file():
            return {}
        return dict(json.loads(self._inside(file).read_text(encoding="utf-8")))

    def promoted_version(self, archetype: str) -> str | None:
        """The served version's name (no checksums read): cheap enough for every chat message."""
        version = self._promotion(archetype).get("version")
        return str(version) if version else None

    def promoted(self, archetype: str) -> AdapterVersion | None:
        version = self._promotion(archetype).get("version")
        return self.verify(archetype, version) if version else None

    def promote(self, archetype: str, version: str) -> AdapterVersion:
        self.verify(archetype, version)
        state = self._promotion(archetype)
        history = list(state.get("history", []))
        if state.get("version") == version:
            return self.get(archetype, version)
        if state.get("version"):
            history.append(state["version"])
        self._write_promotion(archetype, {"version": version, "history": history})
        return self.get(archetype, version)

    def rollback(self, archetype: str) -> AdapterVersion | None:
        """Serve the previously promoted version again (None: back to the base model)."""
        state = self._promotion(archetype)
        if not state.get("version"):
            raise RegistryError(f"no version of {archetype} is promoted", "nothing to roll back")
        history = list(state.get("history", []))
        previous = history.pop() if history else None
        self._write_promotion(archetype, {"version": previous, "history": history})
        return self.get(archetype, previous) if previous else None

    def _write_promotion(self, archetype: str, state: dict[str, Any]) -> None:
        atomic_write_text(self.archetype_dir(archetype) / PROMOTED, json.dumps(state, indent=1))
