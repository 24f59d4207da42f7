"""Images for tests, made with Pillow (and one hand-made PNG header: a decompression bomb)."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def make_jpeg(
    width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 30, 30)
) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "JPEG", quality=90)
    return out.getvalue()


def make_png(
    width: int = 32, height: int = 32, color: tuple[int, int, int] = (10, 120, 240)
) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(side: int = 100_000) -> bytes:
    """A few hundred bytes whose header claims side x side pixels (far past Pillow's limit):
    made by hand because drawing the real thing would take gigabytes."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit greyscale
    body = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", body)
        + _chunk(b"IEND", b"")
    )


def make_noisy_jpeg(width: int = 200, height: int = 150) -> bytes:
    """A JPEG with detail in it (so that cutting it short leaves a visibly truncated stream)."""
    out = io.BytesIO()
    Image.effect_noise((width, height), 64).convert("RGB").save(out, "JPEG", quality=95)
    return out.getvalue()
