"""Scratch directories for verifying an archive, which a killed run cannot leave behind for long.

Verification unpacks a whole archive (a full copy of the database) into
``.familiar-verify-XXXX`` beside it. A process killed meanwhile (SIGKILL, power loss) never runs
its cleanup, so the next verification in the same directory removes the leftovers. Whether a
directory is a leftover is decided with a lock, not an age: every verification holds a shared
``flock`` on ``.familiar-verify.lock`` while its directory exists; one that gets the lock
exclusively knows no other verification is running there, so every scratch directory present
belongs to a dead process. The kernel drops a dead process's flock, so nothing goes stale.
Where the archive's own directory cannot be written (a read-only stick), the system's temporary
directory is used instead.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from loguru import logger

from jobs.errors import VerifyError

VERIFY_PREFIX = ".familiar-verify-"
VERIFY_LOCK = ".familiar-verify.lock"


def _remove_leftovers(work_dir: Path) -> list[Path]:
    removed = []
    for p in work_dir.iterdir():
        if p.name.startswith(VERIFY_PREFIX) and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    if removed:
        logger.info("removed {} scratch folder(s) of a verification that was killed", len(removed))
    return removed


def _open_scratch(place: Path) -> tuple[int, Path]:
    """Lock ``place`` for a verification, remove leftovers if alone, make the scratch directory."""
    fd = os.open(place / VERIFY_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # another verification is running here; a later one cleans up
        else:
            _remove_leftovers(place)
        # From exclusive to shared (or wait while another run cleans up): from here on, this
        # run's directory is never taken for a leftover.
        fcntl.flock(fd, fcntl.LOCK_SH)
        return fd, Path(tempfile.mkdtemp(prefix=VERIFY_PREFIX, dir=place))
    except BaseException:
        os.close(fd)
        raise


@contextmanager
def verify_scratch(*places: Path) -> Iterator[Path]:
    """A new scratch directory in the first of ``places`` that can hold one (an archive on a
    read-only stick is checked in the next), removed on exit; leftovers are removed first."""
    tried = []
    for place in places:
        try:
            fd, scratch = _open_scratch(Path(place))
        except OSError as exc:
            tried.append(f"{place} ({exc.strerror or exc})")
            continue
        try:
            yield scratch
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            os.close(fd)
        return
    raise VerifyError(
        "there is no directory to unpack the archive in to check it: tried " + ", ".join(tried),
        "free some space, or make one of them writable",
    )
