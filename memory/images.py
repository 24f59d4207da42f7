"""Photos people send: checked with Pillow, kept content-addressed in the data directory.

``check_image`` refuses what is not an image a model can take (JPEG, PNG, GIF, WebP), what is
over the byte limit, and what would decode to more than ``max_pixels`` (a decompression bomb:
Pillow reads the size from the header, so that check comes before any decoding); an image
within the limits is then decoded once, so a truncated or corrupt one is refused here rather
than by the model's API. ``ImageStore`` keeps an
accepted image as ``<data dir>/images/<sha256>.<ext>``, written atomically (temporary name
starting with a dot, fsync, rename), so the same photo sent twice is one file. Memory rows name
their images in ``meta["photos"]`` (sha256 list); ``sweep`` deletes the files no row names any
more (after /forget or /forgetme), sparing the ones being stored right now.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from memory.atomic import atomic_write_bytes
from memory.db import Database

# MPO (a camera's JPEG with extra frames) is a JPEG file to the APIs: its first frame is shown.
MEDIA_TYPES = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
}
SUFFIXES = {"image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif", "image/webp": ".webp"}


class ImageError(ValueError):
    """An image that cannot be taken; the message names the problem, ``fix`` what to do."""

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.fix = fix


@dataclass(frozen=True)
class CheckedImage:
    data: bytes
    media_type: str
    width: int
    height: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def check_image(data: bytes, max_bytes: int, max_pixels: int) -> CheckedImage:
    """The image if it is one a model can take; else ``ImageError`` saying why (CPU-bound:
    call it off the event loop)."""
    if len(data) > max_bytes:
        raise ImageError(
            f"it is {len(data) / 1e6:.1f} MB, over the {max_bytes / 1e6:g} MB limit for images",
            "send a smaller picture",
        )
    try:
        with warnings.catch_warnings():
            # Pillow warns past its own pixel limit and raises past twice that; any warning is
            # refused here, and our own (lower) limit is checked from the header below.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                fmt, (width, height) = probe.format, probe.size
                if width * height > max_pixels:
                    raise ImageError(
                        f"it is {width}×{height} pixels, over the limit of "
                        f"{max_pixels / 1e6:g} million pixels",
                        "send a smaller picture",
                    )
                if fmt not in MEDIA_TYPES:
                    raise ImageError(f"{fmt} images are not supported", "send a JPEG, PNG or WebP")
                probe.load()  # decodes it all: a truncated or corrupt file fails here
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(
            "it would decode to far more pixels than a photo has (a decompression bomb)",
            "send an ordinary photo",
        ) from exc
    except Exception as exc:  # Pillow raises many kinds for bytes that are not an image
        raise ImageError("it is not an image I can read", "send a JPEG, PNG or WebP") from exc
    return CheckedImage(data, MEDIA_TYPES[fmt or ""], width, height)


class ImageStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()
        self._storing: dict[str, int] = {}  # sha256 -> images being stored that no row names yet

    def path(self, sha256: str, media_type: str) -> Path:
        return self.root / f"{sha256}{SUFFIXES.get(media_type, '.img')}"

    def put(self, image: CheckedImage) -> str:
        """Keep the image (once per content); returns its sha256. Call ``release`` once the
        memory row that names it is stored (or was not)."""
        sha = image.sha256
        with self._lock:
            self._storing[sha] = self._storing.get(sha, 0) + 1
        target = self.path(sha, image.media_type)
        if not target.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(target, image.data)
        return sha

    def release(self, shas: list[str]) -> None:
        with self._lock:
            for sha in shas:
                left = self._storing.get(sha, 0) - 1
                if left > 0:
                    self._storing[sha] = left
                else:
                    self._storing.pop(sha, None)

    def files(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_file() and not p.name.startswith("."))

    def sweep(self, db: Database) -> int:
        """Delete the images no memory row names any more; returns how many."""
        named = referenced(db)
        removed = 0
        with self._lock:
            busy = set(self._storing)
            for path in self.files():
                sha = path.name.split(".", 1)[0]
                if sha in named or sha in busy:
                    continue
                path.unlink(missing_ok=True)
                removed += 1
        return removed


def referenced(db: Database) -> set[str]:
    """The sha256 of every image a memory row names."""
    with db.read() as conn:
        rows = conn.execute("SELECT meta FROM memories WHERE meta LIKE '%\"photos\"%'").fetchall()
    out: set[str] = set()
    for (meta,) in rows:
        try:
            photos = json.loads(meta).get("photos") or []
        except (ValueError, AttributeError):
            continue
        out.update(str(p) for p in photos)
    return out
