"""The composition root: builds every service once, runs them, and shuts them down.

One asyncio loop. Services start in dependency order and stop in reverse; SIGTERM and SIGINT
stop the daemon within ``daemon.shutdown_timeout_s``. systemd is told STATUS while starting,
READY once the daemon can answer, WATCHDOG from the event loop, STOPPING on the way out.
Slow parts (the embedding model) load in the background and never delay READY.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from loguru import logger

from bot import __version__
from bot.config import Settings
from bot.daemon.lifecycle import FunctionService, Lifecycle, Service
from bot.daemon.lock import InstanceLock
from bot.daemon.sd_notify import Notifier, watchdog_interval, watchdog_loop
from bot.daemon.services import Services, attach_channel, build_services
from bot.errors import ConfigError, DataDirError, FamiliarError
from bot.exits import leave_now_if_threads_linger
from memory.db import DB_NAME, Database, Migrations
from memory.health import (
    CheckResult,
    HealthRegistry,
    Status,
    database_check,
    disk_space_check,
    storage_check,
)


def all_migrations() -> list[Migrations]:
    """Every package's migrations, in dependency order (memory first)."""
    from agents.schema import migrations as agents_migrations
    from agents.training.jobs import migrations as training_migrations
    from bot.core.schema import migrations as bot_migrations
    from jobs.schema import migrations as jobs_migrations
    from memory.schema import migrations as memory_migrations

    return [
        memory_migrations,
        agents_migrations,
        training_migrations,
        jobs_migrations,
        bot_migrations,
    ]


def prepare_data_dir(path: Path) -> Path:
    """Create the data directory (0700) or explain why it cannot be used."""
    path = path.expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise DataDirError(
            f"cannot create the data directory {path}: {exc.strerror}",
            "set FAMILIAR_DATA_DIR to a directory this user can write",
        ) from None
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise DataDirError(
            f"the data directory {path} is not readable and writable by this user",
            f"fix its permissions (chown/chmod {path}) or set FAMILIAR_DATA_DIR",
        )
    return path


def open_database(settings: Settings) -> Database:
    return Database.open(prepare_data_dir(settings.data_dir) / DB_NAME, all_migrations())


def config_check(settings: Settings) -> CheckResult:
    notes = []
    status = Status.HEALTHY
    if settings.telegram.token is None:
        notes.append("no Telegram token: console only")
    if settings.llm.provider == "none":
        notes.append("no language model: retrieval-only answers")
    elif settings.llm.provider == "anthropic" and settings.llm.anthropic_api_key is None:
        notes.append("provider anthropic has no API key (ANTHROPIC_API_KEY)")
        status = Status.DEGRADED
    return CheckResult("config", status, "; ".join(notes) or "ok")


def build_health(settings: Settings, db: Database) -> HealthRegistry:
    health = HealthRegistry()
    health.register("database", database_check(db))
    health.register("disk", disk_space_check(settings.data_dir, settings.jobs.min_free_disk_mb))
    health.register("storage", storage_check(db, settings.data_dir))
    health.register("config", lambda: config_check(settings))
    return health


def daemon_checks(settings: Settings, db: Database, skip: set[str]) -> list[CheckResult]:
    """Whether the daemon runs, and its latest snapshot of the checks only it can run."""
    from jobs.health import load_snapshot

    running = InstanceLock(settings.data_dir).is_held_elsewhere()
    snapshot = [(r, at) for r, at in load_snapshot(db) if r.name not in skip]
    if not running:
        return [CheckResult("daemon", Status.DEGRADED, f"not running on {settings.data_dir}")]
    results = [CheckResult("daemon", Status.HEALTHY, "running")]
    stale_after = 2 * settings.jobs.health_interval_s + 60
    for result, at in snapshot:
        age = time.time() - at
        if age > stale_after:
            results.append(
                CheckResult(
                    result.name,
                    Status.DEGRADED,
                    f"no fresh result from the daemon ({age / 60:.0f} min old): {result.detail}",
                )
            )
        else:
            results.append(
                CheckResult(result.name, result.status, f"{result.detail} ({age:.0f} s ago)")
            )
    return results


def choose_channel(settings: Settings, console: bool, stdin: TextIO) -> str:
    """ "console" or "telegram": the console when asked for, or with no token and a terminal."""
    if console:
        return "console"
    if settings.telegram.token is not None:
        return "telegram"
    if stdin.isatty():
        return "console"
    raise ConfigError(
        "no Telegram token is configured and there is no terminal to chat in",
        "set FAMILIAR_TELEGRAM__TOKEN (or the systemd credential 'telegram_token'), "
        "or run `familiar chat` in a terminal",
    )


@dataclass
class Daemon:
    """The running daemon. ``console`` picks the console channel instead of Telegram."""

    settings: Settings
    console: bool = False
    stdin: TextIO | None = None
    stdout: TextIO | None = None
    notifier: Notifier = field(default_factory=Notifier)

    def __post_init__(self) -> None:
        self.stop_event = asyncio.Event()
        self.fatal: FamiliarError | None = None
        self.lifecycle = Lifecycle(on_status=self.notifier.status)
        self.started_at = time.monotonic()

    def request_stop(self) -> None:
        self.stop_event.set()

    def fail(self, error: FamiliarError) -> None:
        """A service found a problem only a person can fix (a rejected token): stop with it."""
        if self.fatal is None:
            self.fatal = error
        self.stop_event.set()

    def _build_services(self, db: Database, health: HealthRegistry) -> Services:
        channel = choose_channel(self.settings, self.console, self.stdin or sys.stdin)
        services = build_services(
            self.settings, db, health, self.lifecycle, started_at=self.started_at
        )
        attach_channel(
            services,
            self.lifecycle,
            channel,
            self.settings,
            db,
            health,
            fail=self.fail,
            request_stop=self.request_stop,
            stdin=self.stdin,
            stdout=self.stdout,
        )
        return services

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT (or console EOF). Returns the process exit code."""
        data_dir = prepare_data_dir(self.settings.data_dir)
        lock = InstanceLock(data_dir)
        lock.acquire()
        db: Database | None = None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        watchdog: asyncio.Task[None] | None = None
        clean = True
        try:
            self.notifier.status("opening the database")
            db = Database.open(data_dir / DB_NAME, all_migrations())
            health = build_health(self.settings, db)
            self.lifecycle.add(FunctionService("database", stop=None))
            self._build_services(db, health)
            await self.lifecycle.start_all()
            interval = watchdog_interval()
            if interval:
                watchdog = asyncio.create_task(
                    watchdog_loop(self.notifier, interval), name="watchdog"
                )
            self.notifier.ready()
            self.notifier.status("ready")
            logger.info(
                "Familiar {} ready in {:.2f} s (data in {})",
                __version__,
                time.monotonic() - self.started_at,
                data_dir,
            )
            await self.stop_event.wait()
        finally:
            if watchdog:
                watchdog.cancel()  # systemd stops watching once told STOPPING
            self.notifier.stopping()
            self.notifier.status("stopping")
            logger.info("stopping")
            clean = await self.lifecycle.stop_all(self.settings.daemon.shutdown_timeout_s)
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            if db is not None:
                db.close()
            lock.release()
            self.notifier.close()
        if self.fatal is not None:
            raise self.fatal
        logger.info("stopped {}", "cleanly" if clean else "after cutting work short")
        return 0 if clean else 1


async def _finish_loop() -> None:
    """Cancel what is left, and give asyncio.to_thread workers a short while, never forever."""
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in pending:
        task.cancel()
    if pending:  # a task that ignores its cancellation must not hold the exit forever
        _, stuck = await asyncio.wait(pending, timeout=5)
        if stuck:
            logger.warning("{} task(s) did not end when cancelled; leaving them", len(stuck))
    loop = asyncio.get_running_loop()
    await asyncio.wait([asyncio.create_task(loop.shutdown_default_executor())], timeout=2)


def run_daemon(settings: Settings, console: bool = False, stdout: TextIO | None = None) -> int:
    """Entry point of ``familiar run`` and ``familiar chat``; ``stdout``: the console's output
    (the CLI hands it a ``bot.terminal.Terminal``)."""
    daemon = Daemon(settings, console=console, stdout=stdout)
    loop = asyncio.new_event_loop()
    error: FamiliarError | None = None
    code = 2
    try:
        code = loop.run_until_complete(daemon.run())
    except FamiliarError as exc:
        error = exc
    finally:
        try:
            loop.run_until_complete(_finish_loop())
        finally:
            loop.close()
    if error is not None:
        sys.stderr.write(f"error: {error.explain()}\n")
        leave_now_if_threads_linger(error.exit_code)
        raise SystemExit(error.exit_code)
    leave_now_if_threads_linger(code)
    return code


__all__ = ["Daemon", "Service", "all_migrations", "open_database", "run_daemon"]
