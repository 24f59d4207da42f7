"""Packs an export for sending as files: JSON as it is when small, zipped when large, and the zip
cut into numbered parts when it is still over the channel's file limit (Telegram lets a bot send
50 MB). The parts are byte ranges of one zip: ``cat NAME.zip.* > NAME.zip`` joins them."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

ZIP_OVER_BYTES = 1024 * 1024
PART_BYTES = 45 * 1024 * 1024  # under Telegram's 50 MB for a bot's upload, with room to spare


@dataclass(frozen=True)
class ExportFile:
    filename: str
    data: bytes
    caption: str


def export_files(
    stem: str,
    payload: bytes,
    what: str,
    *,
    zip_over: int = ZIP_OVER_BYTES,
    part_bytes: int = PART_BYTES,
) -> list[ExportFile]:
    """``stem``.json, or ``stem``.zip holding it, or ``stem``.zip.001, .002, ... (CPU work: run it
    in a thread). ``what`` starts each caption ("Your memory in this chat")."""
    if part_bytes < 1:
        raise ValueError("part_bytes must be positive")
    if len(payload) <= min(zip_over, part_bytes):
        return [ExportFile(f"{stem}.json", payload, f"{what}.")]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        archive.writestr(f"{stem}.json", payload)
    packed = buffer.getvalue()
    if len(packed) <= part_bytes:
        return [ExportFile(f"{stem}.zip", packed, f"{what} (JSON, zipped).")]
    parts = [packed[i : i + part_bytes] for i in range(0, len(packed), part_bytes)]
    return [
        ExportFile(
            f"{stem}.zip.{n:03d}",
            part,
            f"{what}: part {n} of {len(parts)} of a zip. "
            f"Join them with `cat {stem}.zip.* > {stem}.zip`, then unzip.",
        )
        for n, part in enumerate(parts, start=1)
    ]
