"""The values the voice path shares: what an update says about a recording (``VoiceNote``) and
who sent it and where its answer goes (``Route``). ``handler.py`` and ``pending.py`` both build on
them, so they live here and neither of those imports the other's internals."""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass
from typing import Literal

VoiceKind = Literal["voice", "audio", "video_note"]
_EXTENSIONS = {"voice": ".ogg", "video_note": ".mp4"}


@dataclass(frozen=True)
class VoiceNote:
    """What the update says about the recording, before it is downloaded."""

    kind: VoiceKind
    file_id: str
    file_unique_id: str | None = None
    duration_s: float | None = None
    size: int | None = None
    mime_type: str | None = None

    def file_name(self) -> str:
        stem = re.sub(r"[^A-Za-z0-9_-]", "_", self.file_unique_id or self.file_id)[:80]
        ext = (
            _EXTENSIONS.get(self.kind) or mimetypes.guess_extension(self.mime_type or "") or ".bin"
        )
        return f"{self.kind}-{stem}{ext}"


@dataclass(frozen=True)
class Route:
    """Who sent a kept recording and where its answer goes."""

    chat_id: int
    user_id: int
    sender_name: str = ""
    is_admin: bool = False
    message_id: int | None = None
    is_group: bool = False
    forwarded_from: str = ""  # a forwarded recording: who made it (``Incoming.forwarded_from``)
