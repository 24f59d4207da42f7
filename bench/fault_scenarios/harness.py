"""Shared pieces of the fault campaign: a trial's record, the emulator and daemon, invariant checks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.stubs.anthropic_stub import LLMStub
from tests.stubs.anthropic_stub import Reply as StubReply
from tests.telegram.conftest import EMULATOR_DIR, VENV_BIN, DaemonRun, Emulator, launch_emulator
from tests.telegram.conftest import daemon_env as telegram_daemon_env

REPO = Path(__file__).resolve().parents[2]


ANN, BOB = 101, 102
ANSWER_MARK = "stub answer to:"


@dataclass
class Trial:
    """What one trial found. A violation is any non-zero count or ``corrupt``/``not recovered``."""

    seed: int
    recovered: bool = True
    lost: int = 0
    twice: int = 0
    rows_lost: int = 0
    corrupt: bool = False
    out_of_order: int = 0
    recovery_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.recovered and not (
            self.lost or self.twice or self.rows_lost or self.corrupt or self.out_of_order
        )

    def fail(self, why: str) -> None:
        self.notes.append(why)


@dataclass
class Context:
    emulator: Emulator
    stub: LLMStub
    work: Path
    verbose: bool = False
    outage_s: float = 60.0  # the longest Telegram outage (--outage)
    cache: dict[str, Any] = field(default_factory=dict)  # built once per campaign


def start_emulator() -> Emulator:
    if not (EMULATOR_DIR / "node_modules" / "telegram-test-api").is_dir():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=EMULATOR_DIR)
    try:
        return launch_emulator()
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None


def base_env(data_dir: Path) -> dict[str, str]:
    """A CLI command's environment: this checkout's code, whatever the venv was installed from."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAMILIAR_")}
    env.update(
        {
            "FAMILIAR_DATA_DIR": str(data_dir),
            "FAMILIAR_LOG__LEVEL": "DEBUG",
            "PYTHONPATH": str(REPO),
        }
    )
    return env


def daemon_env(data_dir: Path, token: str, base_url: str, stub: LLMStub) -> dict[str, str]:
    """The tests' daemon environment (tests/telegram/conftest.py), two allowed people, and the
    model stub as the Anthropic API."""
    return telegram_daemon_env(data_dir, token, base_url) | {
        "PYTHONPATH": str(REPO),
        "FAMILIAR_TELEGRAM__ALLOWED_USERS": f"{ANN},{BOB}",
        "FAMILIAR_LLM__PROVIDER": "anthropic",
        "ANTHROPIC_BASE_URL": stub.url,
        "ANTHROPIC_API_KEY": "test",
    }


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except (sqlite3.Error, OSError, ValueError):
            pass
        time.sleep(step)
    return False


def connected(run: DaemonRun, since: int = 0) -> bool:
    """Connected since the log was ``since`` characters long (restarts append to one log)."""
    return "connected to Telegram" in run.log_text()[since:]


def integrity(db_file: Path) -> str:
    conn = sqlite3.connect(db_file, timeout=30)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def index_agrees(data_dir: Path) -> str | None:
    """None when the saved FAISS index describes exactly the embedded rows; else why not."""
    manifest_file = data_dir / "index" / "manifest.json"
    if not manifest_file.exists():
        return "no saved index after a clean stop"
    manifest = json.loads(manifest_file.read_text())
    conn = sqlite3.connect(data_dir / "familiar.db", timeout=30)
    try:
        count, max_id = conn.execute(
            "SELECT count(*), coalesce(max(id), -1) FROM memories "
            "WHERE embedding IS NOT NULL AND embedding_model = ?",
            (manifest["model"],),
        ).fetchone()
    finally:
        conn.close()
    if (count, max_id) != (manifest["count"], manifest["max_id"]):
        return f"index has {manifest['count']} vectors up to #{manifest['max_id']}, SQLite {count} up to #{max_id}"
    return None


def came_up(run: DaemonRun, trial: Trial) -> bool:
    """Wait for the daemon to reach Telegram; a trial whose daemon never does fails unrecovered."""
    if wait_until(lambda: connected(run), 90):
        return True
    trial.recovered = False
    trial.fail("the daemon never connected")
    return False


def kill_if_running(run: DaemonRun) -> None:
    if run.proc is not None and run.proc.poll() is None:
        run.stop(signal.SIGKILL)


def check_store(trial: Trial, data_dir: Path, index: bool = False) -> None:
    """``integrity_check`` of the database and, with ``index``, the saved FAISS index against it."""
    status = integrity(data_dir / "familiar.db")
    if status != "ok":
        trial.corrupt = True
        trial.fail(f"integrity_check: {status}")
    why = index_agrees(data_dir) if index else None
    if why:
        trial.corrupt = True
        trial.fail(why)


def bot_texts(emulator: Emulator, token: str, chat_id: int) -> list[str]:
    return [m["message"].get("text") or "" for m in emulator.bot_messages(token, chat_id)]


def stub_answers(stub: LLMStub, words: int, chunk_delay_s: float) -> None:
    """Echo answers, long enough to stream for a while; JSON where a schema is asked for."""

    def respond(path: str, body: dict[str, Any]) -> StubReply:
        reply = LLMStub._default(path, body)
        if reply.json is not None:
            return reply
        return StubReply(reply.text + " " + " ".join(["more"] * words), chunk_delay_s=chunk_delay_s)

    stub.responder = respond


def write_records(path: Path, count: int, prefix: str) -> None:
    with path.open("w") as f:
        for i in range(count):
            record = {
                "text": f"{prefix}{i} notes about topic {i % 89} and the weather",
                "chat_id": 1,
            }
            f.write(json.dumps(record | {"ref": f"{prefix}{i}"}) + "\n")


def familiar(
    env: dict[str, str], *args: str, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "familiar"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def last_error(done: subprocess.CompletedProcess[str]) -> str:
    """The line of a failed command's output that says what went wrong (a traceback's last
    line, not its carets)."""
    lines = [line.strip() for line in (done.stderr or done.stdout or "").splitlines()]
    lines = [line for line in lines if line and set(line) - set("^~ ")]
    return lines[-1][:300] if lines else f"exit {done.returncode}"


# -- mounts (root only): the storage scenarios' small filesystems --------------------------------
def can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


def umount(path: Path) -> None:
    for _ in range(3):
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            break


def fill(filler: Path) -> None:
    """Write ``filler`` until its filesystem has no byte left (the last partial megabyte too)."""
    with open(filler, "wb", buffering=0) as f:
        for block in (1 << 20, 4096):
            try:
                while True:
                    f.write(b"\0" * block)
            except OSError:
                pass


def tmpfs_daemon(ctx: Context, n: int, name: str) -> tuple[str, Path, Path, DaemonRun]:
    """A daemon whose data directory is on a 96 MB tmpfs mounted for this trial, its log outside
    it (as journald's would be), admin ANN, health every 10 s: (token, root, mount point, run),
    the run not started yet. The caller unmounts the mount point."""
    token = f"{os.getpid()}{n}:faults-{name}"
    root = ctx.work / f"{name}-{n}"
    mnt = root / "mnt"
    mnt.mkdir(parents=True)
    mount("-t", "tmpfs", "-o", "size=96m", "tmpfs", str(mnt))
    data = mnt / "data"
    env = daemon_env(data, token, ctx.emulator.base_url, ctx.stub)
    env["FAMILIAR_TELEGRAM__ADMINS"] = str(ANN)
    env["FAMILIAR_JOBS__HEALTH_INTERVAL_S"] = "10"
    env["FAMILIAR_JOBS__MIN_FREE_DISK_MB"] = "16"
    run = DaemonRun(data, env)
    run.log = root / "daemon.log"
    return token, root, mnt, run
