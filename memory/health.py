"""Health checks: the types every package registers with, and the checks of the data directory.

A check is a callable (sync or async) that returns a ``CheckResult``. Every part of the daemon
registers its own with the ``HealthRegistry`` built by the composition root; ``familiar health``,
``/status`` and the scheduled health job all run the same registry. These types live in
memory/, the bottom layer, so that every package can register checks.
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import os
import shutil
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from loguru import logger


class Status(IntEnum):
    """Ordered by severity; the value is also ``familiar health``'s exit code."""

    HEALTHY = 0
    DEGRADED = 1
    FAILING = 2


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    detail: str

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status.name.lower()
        return d


CheckFn = Callable[[], CheckResult | Awaitable[CheckResult]]


class HealthRegistry:
    def __init__(self, timeout_s: float = 10.0) -> None:
        self._checks: dict[str, CheckFn] = {}
        self.timeout_s = timeout_s

    def register(self, name: str, check: CheckFn) -> None:
        self._checks[name] = check

    @property
    def names(self) -> list[str]:
        return list(self._checks)

    async def run(self) -> list[CheckResult]:
        """Run every check; a check that raises or hangs is reported as failing, not raised."""
        return list(await asyncio.gather(*(self._run_one(n, c) for n, c in self._checks.items())))

    async def _run_one(self, name: str, check: CheckFn) -> CheckResult:
        try:
            if inspect.iscoroutinefunction(check):
                result = await asyncio.wait_for(check(), self.timeout_s)  # type: ignore[arg-type]
            else:
                result = await asyncio.wait_for(asyncio.to_thread(check), self.timeout_s)
                if inspect.isawaitable(result):
                    result = await asyncio.wait_for(result, self.timeout_s)
            assert isinstance(result, CheckResult)
            return result
        except TimeoutError:
            return CheckResult(
                name, Status.FAILING, f"the check did not finish in {self.timeout_s:g} s"
            )
        except Exception as exc:  # a broken check must not hide the others
            logger.opt(exception=exc).warning("health check {} raised", name)
            return CheckResult(
                name, Status.FAILING, f"the check raised {type(exc).__name__}: {exc}"
            )


def overall(results: list[CheckResult]) -> Status:
    return max((r.status for r in results), default=Status.HEALTHY)


def disk_space_check(path: Path, min_free_mb: int) -> CheckFn:
    def check() -> CheckResult:
        usage = shutil.disk_usage(path)
        free_mb = usage.free // (1024 * 1024)
        detail = f"{free_mb} MB free in {path}"
        if free_mb < max(min_free_mb // 10, 1):
            return CheckResult("disk", Status.FAILING, detail)
        if free_mb < min_free_mb:
            return CheckResult("disk", Status.DEGRADED, f"{detail} (below {min_free_mb} MB)")
        return CheckResult("disk", Status.HEALTHY, detail)

    return check


def database_check(db: Any) -> CheckFn:
    """``PRAGMA quick_check`` on the open database, with its schema versions."""

    def check() -> CheckResult:
        started = time.monotonic()
        result = db.quick_check()
        ms = (time.monotonic() - started) * 1000
        if result != "ok":
            return CheckResult("database", Status.FAILING, f"quick_check: {result}")
        versions = ", ".join(f"{k} {v}" for k, v in sorted(db.schema_versions().items()))
        return CheckResult("database", Status.HEALTHY, f"ok in {ms:.0f} ms; schema {versions}")

    return check


_PROBE_ERRORS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "it is read-only",
    errno.EACCES: "this user may not write there",
    errno.EPERM: "this user may not write there",
    errno.EIO: "the disk reported an I/O error",
}


def probe_write(directory: Path) -> str | None:
    """Write, flush to disk and remove a small file in ``directory``; None when that works,
    else why not (in words a person can act on)."""
    probe = directory / f".familiar-write-probe-{os.getpid()}-{threading.get_ident()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        why = _PROBE_ERRORS.get(exc.errno or 0, exc.strerror or str(exc))
        return f"cannot write to {directory}: {why}"
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass
    return None


def storage_check(db: Any, data_dir: Path) -> CheckFn:
    """Can the daemon still store what it is told? A write probe in the data directory, the
    database's last write (tried again when it had failed), and whether the database file was
    replaced under the daemon."""

    def check() -> CheckResult:
        if db.replaced():
            return CheckResult(
                "storage",
                Status.FAILING,
                f"the database file {db.path} was replaced or moved while Familiar runs: "
                "what it stores now is not kept; restart Familiar",
            )
        probe = probe_write(data_dir)
        if probe is not None:
            return CheckResult("storage", Status.FAILING, f"{probe}; messages cannot be stored")
        if db.write_fault is not None or db.alone is not None:
            try:
                db.probe_write()  # clears the fault (and shares the database again) when it works
            except Exception:
                return CheckResult(
                    "storage", Status.FAILING, f"database writes fail: {db.write_fault}"
                )
        return CheckResult("storage", Status.HEALTHY, f"{data_dir} is writable")

    return check
