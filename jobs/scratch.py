"""Working directories that a killed run cannot leave behind for long.

A backup writes its database snapshot and its partial archive into
``.familiar-backup-staging-XXXX``, and verification unpacks a whole archive into
``.familiar-verify-XXXX``: each a full copy of the database. A process killed meanwhile
(SIGKILL, power loss) never runs its cleanup, so the next run in the same place removes the
leftovers. Whether a directory is a leftover is decided with a lock, not an age: each run holds
an exclusive ``flock`` on a lock file inside its own directory for as long as the directory
exists, and the kernel drops a dead process's flock. Nothing lives outside these directories, so
a finished run leaves nothing behind.

The race between a new directory and a cleanup is closed the usual way for lock files: the
cleaner deletes a directory only while holding its lock, and a verifier that obtains its lock
checks that the file it locked is still the one at that path (else it starts over). A directory
with no lock file yet is only taken for a leftover after six hours (as old partial archives are).
Where the archive's own directory cannot be written (a read-only stick), the system's temporary
directory is used instead.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from loguru import logger

from jobs.errors import VerifyError

VERIFY_PREFIX = ".familiar-verify-"
SCRATCH_LOCK = ".familiar-work.lock"  # inside each working directory
UNLOCKED_STALE_S = 6 * 3600


def remove_leftovers(
    place: Path, prefix: str, unlocked_stale_s: float = UNLOCKED_STALE_S
) -> list[Path]:
    """Remove the working directories ``place/prefix*`` whose run is no longer running."""
    removed = []
    for p in place.glob(f"{prefix}*"):
        if not p.is_dir() or p.is_symlink():
            continue
        try:
            fd = os.open(p / SCRATCH_LOCK, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:  # just made and not locked yet, or left by an older version
            try:
                age = time.time() - p.stat().st_mtime
            except FileNotFoundError:  # removed meanwhile by the run that made it
                continue
            if age > unlocked_stale_s:
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
            continue
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)  # its verification is running
            continue
        try:
            shutil.rmtree(p, ignore_errors=True)  # while holding its lock: see the module doc
            removed.append(p)
        finally:
            os.close(fd)
    if removed:
        logger.info("removed {} folder(s) left by a run that was killed", len(removed))
    return removed


def locked_dir(place: Path, prefix: str) -> tuple[int, Path]:
    """A new working directory ``place/prefix*`` and the held lock inside it (close the fd once
    the directory is removed or emptied)."""
    while True:
        scratch = Path(tempfile.mkdtemp(prefix=prefix, dir=place))
        lock = scratch / SCRATCH_LOCK
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                return fd, scratch
        except (BlockingIOError, FileNotFoundError):
            pass  # a cleanup took it for a leftover between our two steps: start over
        os.close(fd)


@contextmanager
def verify_scratch(*places: Path) -> Iterator[Path]:
    """A new scratch directory in the first of ``places`` that can hold one, removed on exit;
    the leftovers of killed verifications there are removed first."""
    tried = []
    for place in places:
        try:
            place = Path(place)
            remove_leftovers(place, VERIFY_PREFIX)
            fd, scratch = locked_dir(place, VERIFY_PREFIX)
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
