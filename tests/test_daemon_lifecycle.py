"""The real daemon as a subprocess: notify protocol, graceful SIGTERM, one instance, clear failures."""

from __future__ import annotations

import os
import pty
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SHUTDOWN_BOUND_S = 10.0


class NotifySocket:
    """A real AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET, drained by a
    thread as systemd would (the kernel queues only a few datagrams)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.extend(data.split("\n"))

    def wait_for(self, wanted: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if wanted in self.messages:
                return
            time.sleep(0.02)
        raise AssertionError(f"{wanted} not received; got {self.messages}")

    def close(self) -> None:
        self._closed.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    directory = tempfile.mkdtemp(prefix="fam-notify-", dir="/tmp")  # AF_UNIX paths are short
    path = os.path.join(directory, "notify.sock")
    notify = NotifySocket(path)
    yield notify
    notify.close()
    os.unlink(path)
    os.rmdir(directory)


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    tty: int

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.tty)


def start_daemon(
    familiar_bin: str, env: dict[str, str] | None = None, args: tuple[str, ...] = ("run",)
) -> Running:
    """``familiar run`` with a terminal on stdin, so it serves the console channel."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [familiar_bin, *args],
        stdin=follower,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    os.close(follower)
    return Running(proc, leader)


def test_sigterm_shuts_down_cleanly_with_notify_in_order(
    familiar_bin: str, data_dir: Path, notify_socket: NotifySocket
) -> None:
    daemon = start_daemon(
        familiar_bin, {"NOTIFY_SOCKET": notify_socket.path, "WATCHDOG_USEC": "200000"}
    )
    try:
        notify_socket.wait_for("READY=1")
        notify_socket.wait_for("WATCHDOG=1", timeout=5)
        sent_at = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        code = daemon.proc.wait(timeout=SHUTDOWN_BOUND_S + 5)
        took = time.monotonic() - sent_at
        notify_socket.wait_for("STOPPING=1", timeout=1)
        stderr = daemon.proc.stderr.read().decode() if daemon.proc.stderr else ""
    finally:
        daemon.stop()
    assert code == 0, stderr
    assert took < SHUTDOWN_BOUND_S
    kinds = [
        m.split("=")[0]
        for m in notify_socket.messages
        if m.split("=")[0] in ("READY", "WATCHDOG", "STOPPING")
    ]
    first = {k: kinds.index(k) for k in ("READY", "WATCHDOG", "STOPPING")}
    assert first["READY"] < first["WATCHDOG"] < first["STOPPING"]
    assert "WATCHDOG" not in kinds[first["STOPPING"] :]
    assert any(
        m.startswith("STATUS=")
        for m in notify_socket.messages[: notify_socket.messages.index("READY=1")]
    )
    conn = sqlite3.connect(data_dir / "familiar.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    assert (
        not (data_dir / "familiar.db-wal").exists()
        or (data_dir / "familiar.db-wal").stat().st_size == 0
    )


def test_second_daemon_on_the_same_data_dir_refuses(
    familiar_bin: str, data_dir: Path, notify_socket: NotifySocket
) -> None:
    first = start_daemon(familiar_bin, {"NOTIFY_SOCKET": notify_socket.path})
    try:
        notify_socket.wait_for("READY=1")
        second = start_daemon(familiar_bin)
        try:
            code = second.proc.wait(timeout=30)
            err = second.proc.stderr.read().decode() if second.proc.stderr else ""
        finally:
            second.stop()
        assert code == 2
        assert "another Familiar process" in err
        assert "Traceback" not in err
        assert first.proc.poll() is None  # the first one is unaffected
    finally:
        first.proc.send_signal(signal.SIGTERM)
        first.proc.wait(timeout=SHUTDOWN_BOUND_S + 5)
        first.stop()


def test_no_token_and_no_terminal_names_the_setting(familiar_bin: str) -> None:
    result = subprocess.run(
        [familiar_bin, "run"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "FAMILIAR_TELEGRAM__TOKEN" in result.stderr
    assert "Traceback" not in result.stderr


def test_corrupt_database_is_one_clear_message(familiar_bin: str, data_dir: Path) -> None:
    data_dir.mkdir(parents=True)
    (data_dir / "familiar.db").write_bytes(b"garbage" * 1000)
    daemon = start_daemon(familiar_bin)
    try:
        code = daemon.proc.wait(timeout=60)
        err = daemon.proc.stderr.read().decode() if daemon.proc.stderr else ""
    finally:
        daemon.stop()
    assert code == 2
    assert "not a valid SQLite database" in err and "fix:" in err
    assert "Traceback" not in err
    assert (data_dir / "familiar.db").read_bytes() == b"garbage" * 1000


def test_unwritable_data_dir_is_one_clear_message(familiar_bin: str, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = "/proc/familiar-cannot-exist"  # root can write anywhere else
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = str(locked / "data")
    result = subprocess.run(
        [familiar_bin, "health"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "FAMILIAR_DATA_DIR": target},
    )
    assert result.returncode == 2
    assert "data directory" in result.stderr and "FAMILIAR_DATA_DIR" in result.stderr
    assert "Traceback" not in result.stderr


def test_health_command_shows_the_running_daemons_snapshot(
    familiar_bin: str, data_dir: Path, notify_socket: NotifySocket
) -> None:
    import json

    daemon = start_daemon(familiar_bin, {"NOTIFY_SOCKET": notify_socket.path})
    try:
        notify_socket.wait_for("READY=1")
        deadline = time.monotonic() + 60
        names: dict[str, dict] = {}
        while time.monotonic() < deadline:
            out = subprocess.run(
                [familiar_bin, "health", "--json"], capture_output=True, text=True, timeout=60
            )
            names = {c["name"]: c for c in map(json.loads, out.stdout.splitlines())}
            if "jobs" in names:
                break
            time.sleep(0.5)
        assert out.returncode in (0, 1), out.stderr
        assert names["daemon"]["status"] == "healthy"
        for local in ("database", "disk", "config"):
            assert names[local]["status"] == "healthy"
        assert {"jobs", "backup", "memory_index"} <= set(names)  # only the daemon runs these
        assert names["jobs"]["detail"].endswith("s ago)")
    finally:
        daemon.proc.send_signal(signal.SIGTERM)
        daemon.proc.wait(timeout=SHUTDOWN_BOUND_S + 5)
        daemon.stop()


EXIT_SCRIPT = """
import sys, threading, time
from loguru import logger
from bot.cli.app import _exit_now_if_loading
from memory.service import WARM_THREAD
logger.remove()
logger.add(sys.stderr, enqueue=True)  # written by a thread of loguru's: flushed before the exit
if sys.argv[1] == "loading":
    threading.Thread(target=time.sleep, args=(30,), name=WARM_THREAD, daemon=True).start()
logger.info("logged before the exit")
print("written before the exit")
_exit_now_if_loading(3)
print("carried on")
"""


@pytest.mark.parametrize("loading", [True, False])
def test_a_daemon_stopped_while_the_model_loads_exits_without_finalising(loading: bool) -> None:
    """The model's load cannot be interrupted, and a thread still in torch when the interpreter
    finalises aborts the process ("terminate called without an active exception", seen at the
    end of a test run). Stopped meanwhile, ``familiar run`` exits at once with its code, what
    it logged and printed flushed; otherwise it carries on to the usual exit."""
    result = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, "loading" if loading else "loaded"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "logged before the exit" in result.stderr
    assert "written before the exit" in result.stdout
    if loading:
        assert result.returncode == 3
        assert "carried on" not in result.stdout
    else:
        assert result.returncode == 0
        assert "carried on" in result.stdout
