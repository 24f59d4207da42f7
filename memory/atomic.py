"""Atomic directory and file writes: build under a temporary name beside the target, fsync, rename.

A reader (or a process started after a crash or a full disk) sees either the old content or the
complete new one, never a half-written adapter, checkpoint or stored image. It lives in memory/
because the image store needs it and memory imports nothing above it; the training code
reaches it through ``agents.training.atomic``.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    for child in path.rglob("*"):
        if child.is_file():
            with open(child, "rb+") as f:
                os.fsync(f.fileno())
    fsync_dir(path)


@contextmanager
def atomic_directory(final: Path, replace: bool = False) -> Iterator[Path]:
    """Yield an empty temporary directory that becomes ``final`` when the block succeeds.

    With ``replace`` an existing ``final`` is swapped out (the old one is removed after the
    rename); without it an existing ``final`` raises FileExistsError before anything is written.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not replace:
        raise FileExistsError(final)
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        fsync_tree(tmp)
        old = None
        if final.exists():
            old = final.parent / f".old-{final.name}-{os.getpid()}"
            os.rename(final, old)
        os.rename(tmp, final)
        fsync_dir(final.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """``data`` under ``path``, or the old content if anything fails; the temporary name starts
    with a dot, so directory listings that skip hidden files never see a half-written file. The
    temporary name carries the process and thread, so two threads writing the same path never
    share one."""
    path = Path(path)
    tmp = path.parent / f".tmp-{path.name}-{os.getpid()}-{threading.get_ident()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
