"""Recordings kept because they could not be transcribed, with who sent them and where.

When the engine is missing or crashes, the channel keeps the recording here and promises the
user an answer later; a scheduled job (``bot.telegram.voice_retry``) lists what is pending and
keeps that promise once the engine works again. Each recording is two files in one directory:

- the audio, named by ``VoiceNote.file_name()`` (sanitised from Telegram's file id, so a name
  can never leave the directory), prefixed by the chat it came from when it has a route;
- a JSON sidecar ``<audio name>.json``: the ``Route`` (chat, sender, message), what the update
  said about the note, and when it was kept (UTC, ISO 8601).

The audio is written first, then the sidecar, each atomically (``atomic_write_bytes``: a hidden
temporary name, fsync, rename), so a crash leaves either nothing, an audio file without a
sidecar, or both complete. A recording
without a sidecar (one kept by an older version, or one whose sidecar is unreadable) is listed
as unrouted: nothing answers it, and nothing deletes it; ``familiar transcribe FILE`` reads it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loguru import logger

from agents.training.atomic import atomic_write_bytes
from agents.voice.types import Route, VoiceNote

SIDECAR = ".json"
PART = ".part"  # a partial file; never listed (atomic writes use hidden temporaries)
VERSION = 1


@dataclass(frozen=True)
class PendingRecording:
    """One kept recording; ``route`` and ``note`` are None when it has no (readable) sidecar."""

    path: Path
    kept_at: datetime
    route: Route | None = None
    note: VoiceNote | None = None

    @property
    def sidecar(self) -> Path:
        return self.path.with_name(self.path.name + SIDECAR)

    @property
    def routed(self) -> bool:
        return self.route is not None and self.note is not None


class PendingVoice:
    """The keep directory. Methods block on the file system: call them through a thread."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)

    def keep(
        self, note: VoiceNote, data: bytes, route: Route | None = None, now: datetime | None = None
    ) -> Path | None:
        """Store ``data`` (and, with a route, its sidecar); None, logged, when the disk refuses."""
        name = note.file_name() if route is None else f"chat{route.chat_id}-{note.file_name()}"
        path = self.dir / name
        if path.parent != self.dir or name.startswith(
            "."
        ):  # file_name() is sanitised; a guard all the same
            logger.error("not keeping voice note {}: unsafe file name {!r}", note.file_id, name)
            return None
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, data)
            if route is not None:
                kept_at = (now or datetime.now(UTC)).astimezone(UTC)
                atomic_write_bytes(path.with_name(name + SIDECAR), _sidecar(note, route, kept_at))
        except OSError as exc:
            logger.error("could not keep voice note {}: {}", note.file_id, exc)
            return None
        return path

    def list(self) -> list[PendingRecording]:
        """Every kept recording, routed or not, oldest first."""
        if not self.dir.is_dir():
            return []
        found = []
        for path in self.dir.iterdir():
            name = path.name
            if name.endswith((SIDECAR, PART)) or name.startswith(".") or not path.is_file():
                continue
            found.append(self._read(path))
        return sorted(found, key=lambda r: (r.kept_at, r.path.name))

    def remove(self, recording: PendingRecording) -> None:
        """Delete the audio, then its sidecar (a crash between leaves a harmless stray sidecar)."""
        recording.path.unlink(missing_ok=True)
        recording.sidecar.unlink(missing_ok=True)

    def _read(self, path: Path) -> PendingRecording:
        sidecar = path.with_name(path.name + SIDECAR)
        mtime = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        if not sidecar.is_file():
            return PendingRecording(path, mtime)
        try:
            raw = json.loads(sidecar.read_text(encoding="utf-8"))
            route = Route(
                int(raw["chat_id"]),
                int(raw["user_id"]),
                str(raw.get("sender_name") or ""),
                bool(raw.get("is_admin")),
                _int(raw.get("message_id")),
                bool(raw.get("is_group")),
                str(raw.get("forwarded_from") or ""),  # absent from sidecars kept before it
            )
            note = VoiceNote(
                raw["kind"],
                str(raw["file_id"]),
                raw.get("file_unique_id"),
                raw.get("duration_s"),
                raw.get("size"),
                raw.get("mime_type"),
            )
            kept_at = datetime.fromisoformat(raw["kept_at"])
            if kept_at.tzinfo is None:
                kept_at = kept_at.replace(tzinfo=UTC)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning(
                "kept recording {} has an unreadable sidecar ({}); left for `familiar transcribe`",
                path.name,
                exc,
            )
            return PendingRecording(path, mtime)
        return PendingRecording(path, kept_at, route, note)


def _sidecar(note: VoiceNote, route: Route, kept_at: datetime) -> bytes:
    body = {"version": VERSION, **asdict(route), **asdict(note), "kept_at": kept_at.isoformat()}
    return json.dumps(body, ensure_ascii=False, indent=1).encode()


def _int(value: Any) -> int | None:
    return int(value) if value is not None else None
