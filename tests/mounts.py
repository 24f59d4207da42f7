"""Real storage faults for tests: a small tmpfs that can be filled, a read-only bind mount.

Mounting needs root (CI runs as root); elsewhere the tests that use these skip, saying why.
Everything mounted here is unmounted again, also when the test fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

NEEDS_ROOT = "needs root to mount a small tmpfs (CI runs as root)"


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


def umount(path: Path) -> None:
    subprocess.run(["umount", str(path)], capture_output=True)


@contextlib.contextmanager
def small_tmpfs(path: Path, size_mb: int = 16) -> Iterator[Path]:
    """A tmpfs of ``size_mb`` mounted at ``path`` (created), unmounted afterwards."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip(NEEDS_ROOT)
    path.mkdir(parents=True, exist_ok=True)
    try:
        _mount("-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path))
    except subprocess.CalledProcessError as exc:  # e.g. a container without CAP_SYS_ADMIN
        pytest.skip(f"cannot mount a tmpfs here: {exc.stderr.strip()}")
    try:
        yield path
    finally:
        umount(path)


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """``directory`` read-only (a read-only bind mount over itself) until the block ends."""
    _mount("--bind", str(directory), str(directory))
    try:
        _mount("-o", "remount,ro,bind", str(directory))
        yield
    finally:
        umount(directory)


def fill_up(directory: Path) -> Path:
    """Write a file in ``directory`` until the filesystem is full to the last byte; returns it
    (delete it to give the space back)."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass
    return filler
