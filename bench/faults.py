"""Fault campaign: the real daemon killed, starved and cut off at random points, invariants checked.

Each trial runs ``familiar run`` (or a CLI command) as a subprocess against the Telegram emulator
(``tests/telegram/emulator``) and the project's model stub (``tests/stubs/anthropic_stub.py``),
puts one fault at a random point, recovers, and checks what must hold afterwards. The trial's
seed is derived from ``--seed`` and its number, so a violation is reproduced with
``--scenario NAME --seed S --trials N`` (the table prints the seed of the first violation).

Scenarios built so far (see ``SCENARIOS``):

- ``conversation``: two people send plain messages (long streamed answers), ``/remember`` and
  ``/remind``; SIGKILL at a random moment, restart. Every delivered message answered, none with
  two complete answers, every turn stored once, one fact and one reminder per command, the
  FAISS index agrees with SQLite, ``integrity_check`` ok.
- ``import``: SIGKILL during ``familiar memory import``, then the same import run again. Only
  whole batches behind after the kill, every committed row findable, the rerun completes the set
  with no duplicates, index consistent.
- ``backup``: SIGKILL during ``familiar backup``. No archive under its final name unless it
  verifies; the next backup clears the partials; the last good archive restores (onto a new
  machine: an empty data directory) to identical memory.
- ``telegram_down``: the Telegram API cut off (a TCP proxy between daemon and emulator closes)
  for a random spell while people keep writing; afterwards every message answered once, in order.
- ``provider``: the model provider drops streams mid-answer, answers 529, or hangs past the
  deadline; every message gets a clear sentence within the bound, nothing unanswered, and once
  the provider is well again a message gets a real answer (the breaker recovered).

- ``reminder``: SIGKILL a few seconds before or after reminders fall due, restart: each one
  delivered, and a second delivery (the kill fell between the send and its record) says so.

- ``disk_full`` (root only: a 96 MB tmpfs holds the data directory, filled to the last byte):
  the daemon stays up, the sender hears back, the admins are told; once space returns it answers
  again by itself; ``integrity_check`` ok.
- ``readonly`` (root only): the data directory remounted read-only, or the database file
  replaced under the running daemon: the admins are told, the daemon stays up, and recovers
  once the directory is writable again.

- ``training``: ``familiar train fit`` of the tiny random Llama of tests/training (built here,
  nothing downloaded; 30 steps, a checkpoint every 5) SIGKILLed with its worker at a random step,
  then run again: it resumes from its checkpoint and the adapter is identical, tensor for
  tensor, to an uninterrupted run with the same seed.

Not built yet (issue 19): SIGKILL around a scheduled agent task.

    .venv/bin/python bench/faults.py [--trials 5] [--seed 1] [--scenario conversation ...]

Exits 1 on any violation. Needs node and npm (the emulator) and the bundled MiniLM.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.stubs.anthropic_stub import LLMStub  # noqa: E402
from tests.stubs.anthropic_stub import Reply as StubReply  # noqa: E402
from tests.telegram.conftest import (  # noqa: E402
    EMULATOR_DIR,
    VENV_BIN,
    DaemonRun,
    Emulator,
    free_port,
)

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
    cache: dict[str, Any] = field(default_factory=dict)  # built once per campaign


# -- shared pieces ---------------------------------------------------------------------------
def start_emulator() -> Emulator:
    if not (EMULATOR_DIR / "node_modules" / "telegram-test-api").is_dir():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=EMULATOR_DIR)
    port = free_port()
    proc = subprocess.Popen(
        ["node", "server.js", str(port), "3600"],
        cwd=EMULATOR_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if not line.startswith("listening"):
        proc.kill()
        raise SystemExit(f"the Telegram emulator did not start: {line}")
    return Emulator(port, proc)


def base_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAMILIAR_")}
    env.update(
        {
            "FAMILIAR_DATA_DIR": str(data_dir),
            "FAMILIAR_LOG__LEVEL": "DEBUG",
            "PYTHONPATH": str(REPO),  # this checkout's code, whatever the venv was installed from
        }
    )
    return env


def daemon_env(data_dir: Path, token: str, base_url: str, stub: LLMStub) -> dict[str, str]:
    env = base_env(data_dir)
    env.update(
        {
            "FAMILIAR_TELEGRAM__TOKEN": token,
            "FAMILIAR_TELEGRAM__BASE_URL": base_url,
            "FAMILIAR_TELEGRAM__POLL_IDLE_S": "0.05",
            "FAMILIAR_TELEGRAM__CHAT_SEND_INTERVAL_S": "0.05",
            "FAMILIAR_TELEGRAM__ALLOWED_USERS": f"{ANN},{BOB}",
            "FAMILIAR_LLM__PROVIDER": "anthropic",
            "ANTHROPIC_BASE_URL": stub.url,
            "ANTHROPIC_API_KEY": "test",
        }
    )
    return env


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


# -- scenario 1: SIGKILL during conversation ------------------------------------------------
def conversation(ctx: Context, trial: Trial, rng: random.Random, n: int) -> None:
    token = f"{os.getpid()}{n}:faults-conv"
    data = ctx.work / f"conv-{n}" / "data"
    stub_answers(ctx.stub, words=rng.choice([30, 200, 400]), chunk_delay_s=0.01)
    env = daemon_env(data, token, ctx.emulator.base_url, ctx.stub)
    run = DaemonRun(data, env).start()
    try:
        if not came_up(run, trial):
            return
        plan: list[tuple[float, int, str, str]] = []  # (at, user, kind, tag)
        at = 0.0
        for i in range(rng.randint(3, 7)):
            at += rng.uniform(0.0, 0.6)
            kind = rng.choices(["text", "remember", "remind"], [6, 2, 2])[0]
            plan.append((at, rng.choice([ANN, BOB]), kind, f"t{n}x{i}q{rng.randrange(10**6)}"))
        kill_at = rng.uniform(0.0, at + 1.0)
        began = time.monotonic()
        killed = False
        for when, user, kind, tag in plan:
            if not killed and when >= kill_at:
                time.sleep(max(0.0, began + kill_at - time.monotonic()))
                run.stop(signal.SIGKILL)
                killed = True
            time.sleep(max(0.0, began + when - time.monotonic()))
            text = {
                "text": f"please think about {tag}",
                "remember": f"/remember my code word is {tag}",
                "remind": f"/remind in 3h water the plant {tag}",
            }[kind]
            ctx.emulator.say(token, user, text)
        if not killed:
            time.sleep(max(0.0, began + kill_at - time.monotonic()))
            run.stop(signal.SIGKILL)
        restarted = time.monotonic()
        mark = len(run.log_text())
        run = DaemonRun(data, env).start()

        def answered(user: int, tag: str, kind: str) -> int:
            texts = bot_texts(ctx.emulator, token, user)
            if kind == "text":  # complete answers; one cut by the kill may say it was interrupted
                return sum(1 for t in texts if tag in t and "interrupted" not in t.lower())
            if kind == "remind":
                return sum(1 for t in texts if tag in t)
            return 1  # /remember's reply does not name the fact: its row is checked below

        def all_answered() -> bool:
            if not connected(run, mark):
                return False
            pending = run.query("SELECT count(*) FROM inbox WHERE state = 'pending'")[0][0]
            return pending == 0 and all(
                answered(u, tag, k) >= 1 for _, u, k, tag in plan if k != "remember"
            )

        trial.recovered = wait_until(all_answered, 120, 0.3)
        trial.recovery_s = time.monotonic() - restarted
        time.sleep(1.0)  # let late duplicates, if any, arrive
        # Searchable: every stored row gets its vector once the model is up (it loads in the
        # background after a restart), and the clean stop then saves an index that agrees.
        unembedded = "SELECT count(*) FROM memories WHERE embedding IS NULL"
        if not wait_until(lambda: run.query(unembedded)[0][0] == 0, 180, 0.5):
            trial.rows_lost += run.query(unembedded)[0][0]
            trial.fail("stored rows still have no vector (not searchable)")
        run.stop(signal.SIGTERM)

        for _, user, kind, tag in plan:
            got = answered(user, tag, kind)
            if got == 0:
                trial.lost += 1
                trial.fail(f"no answer to {kind} {tag}")
            elif got > 1:
                trial.twice += 1
                trial.fail(f"{got} complete answers to {kind} {tag}")
            like = f"%{tag}%"
            if kind == "text":
                rows = run.query(
                    "SELECT count(*) FROM messages WHERE role = 'user' AND text LIKE ?", like
                )
            elif kind == "remember":
                rows = run.query(
                    "SELECT count(*) FROM memories WHERE kind = 'fact' AND text LIKE ? "
                    "AND superseded_by IS NULL",
                    like,
                )
            else:
                rows = run.query(
                    "SELECT count(*) FROM reminders WHERE text LIKE ? AND active = 1", like
                )
            stored = rows[0][0]
            if stored == 0:
                trial.rows_lost += 1
                trial.fail(f"{kind} {tag} not stored")
            elif stored > 1:
                trial.twice += 1
                trial.fail(f"{kind} {tag} stored {stored} times")
        check_store(trial, data, index=True)
    finally:
        kill_if_running(run)


# -- scenario 2: SIGKILL during bulk import --------------------------------------------------
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


def import_kill(ctx: Context, trial: Trial, rng: random.Random, n: int) -> None:
    data = ctx.work / f"import-{n}" / "data"
    data.mkdir(parents=True)
    source = data.parent / "records.jsonl"
    total = rng.choice([800, 1500, 3000])
    prefix = f"rec{n}k"
    write_records(source, total, prefix)
    env = base_env(data) | {"FAMILIAR_MEMORY__INDEX_SAVE_EVERY": str(rng.choice([50, 200, 1000]))}
    proc = subprocess.Popen(
        [str(VENV_BIN / "familiar"), "memory", "import", str(source), "--batch", "64"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db = data / "familiar.db"
    target = rng.randint(0, total)  # kill once about this many rows are committed

    def committed() -> int:
        conn = sqlite3.connect(db, timeout=1)
        try:
            return int(conn.execute("SELECT count(*) FROM memories").fetchone()[0])
        finally:
            conn.close()

    wait_until(
        lambda: proc.poll() is not None or (db.exists() and committed() >= target), 300, 0.05
    )
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    after_kill = committed() if db.exists() else 0
    conn = sqlite3.connect(db, timeout=30)
    try:
        refs = [r[0] for r in conn.execute("SELECT ref FROM memories ORDER BY id")]
        unembedded = conn.execute(
            "SELECT count(*) FROM memories WHERE embedding IS NULL"
        ).fetchone()[0]
    finally:
        conn.close()
    if refs != [f"{prefix}{i}" for i in range(len(refs))]:
        trial.rows_lost += 1
        trial.fail("rows after the kill are not a whole prefix of the file")
    if unembedded:
        trial.corrupt = True
        trial.fail(f"{unembedded} rows committed without their vector")
    restarted = time.monotonic()
    again = familiar(env, "memory", "import", str(source), "--batch", "64")
    trial.recovery_s = time.monotonic() - restarted
    if again.returncode != 0:
        trial.recovered = False
        trial.fail(f"the rerun failed: {last_error(again)}")
    conn = sqlite3.connect(db, timeout=30)
    try:
        distinct, rows = conn.execute(
            "SELECT count(DISTINCT ref), count(*) FROM memories"
        ).fetchone()
    finally:
        conn.close()
    if distinct < total:
        trial.rows_lost += total - distinct
        trial.fail(f"after the rerun {distinct} of {total} records are stored")
    if rows > distinct:
        trial.twice += rows - distinct
        trial.notes.append(
            f"the rerun stored {rows - distinct} records a second time (killed at {after_kill})"
        )
    probes = data.parent / "probes.jsonl"
    picks = sorted({rng.randrange(total) for _ in range(3)})
    probes.write_text(
        "".join(json.dumps({"query": f"{prefix}{i}", "chat_id": 1, "k": 3}) + "\n" for i in picks)
    )
    found = familiar(env, "memory", "search", "--batch", str(probes))
    lines = [json.loads(line) for line in found.stdout.splitlines() if line.strip()]
    for i, hits in zip(picks, lines, strict=False):
        if not any(h.get("ref") == f"{prefix}{i}" for h in hits):
            trial.rows_lost += 1
            trial.fail(f"{prefix}{i} is stored but not found")
    check_store(trial, data, index=True)


# -- scenario 3: SIGKILL during backup -------------------------------------------------------
def memory_rows(db: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute(
            "SELECT id, kind, text, content_hash FROM memories ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


def backup_kill(ctx: Context, trial: Trial, rng: random.Random, n: int) -> None:
    data = ctx.work / f"backup-{n}" / "data"
    data.mkdir(parents=True)
    dest = data.parent / "archives"
    env = base_env(data)
    source = data.parent / "records.jsonl"
    write_records(source, rng.choice([300, 1200]), f"bk{n}r")
    seeded = familiar(env, "memory", "import", str(source))
    if seeded.returncode != 0:
        trial.recovered = False
        trial.fail(f"could not seed memory: {last_error(seeded)}")
        return
    first = familiar(env, "backup", "--dest", str(dest))
    if first.returncode != 0:
        trial.recovered = False
        trial.fail(f"the first backup failed: {last_error(first)}")
        return
    good = sorted(p for p in dest.iterdir() if p.is_file() and not p.name.startswith("."))
    proc = subprocess.Popen(
        [str(VENV_BIN / "familiar"), "backup", "--dest", str(dest)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(rng.uniform(0.0, 4.0))
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    finals = sorted(p for p in dest.iterdir() if p.is_file() and not p.name.startswith("."))
    for archive in finals:
        verified = familiar(env, "backup", "verify", str(archive))
        if verified.returncode != 0:
            trial.corrupt = True
            trial.fail(f"{archive.name} is under its final name but does not verify")
    restarted = time.monotonic()
    later = familiar(env, "backup", "--dest", str(dest))
    trial.recovery_s = time.monotonic() - restarted
    if later.returncode != 0:
        trial.recovered = False
        trial.fail(f"the next backup failed: {last_error(later)}")
    leftovers = [p.name for p in dest.iterdir() if p.name.startswith(".")]
    leftovers += [p.name for p in data.iterdir() if p.name.startswith(".familiar-verify")]
    leftovers += [p.name for p in Path(tempfile.gettempdir()).glob(".familiar-verify-*")]
    if leftovers:
        trial.corrupt = True
        trial.fail(f"partials left after the next backup: {leftovers[:3]}")
    newest = good[-1]
    fresh = data.parent / "new-machine" / "data"  # a new machine: the data dir does not exist
    restored = familiar(base_env(fresh), "restore", str(newest))
    if restored.returncode != 0:
        trial.recovered = False
        trial.fail(f"restore onto a new machine failed: {last_error(restored)}")
        return
    if memory_rows(fresh / "familiar.db") != memory_rows(data / "familiar.db"):
        trial.rows_lost += 1
        trial.fail("the restored memory differs from the original")


# -- scenario 7: Telegram unreachable ---------------------------------------------------------
class CutProxy:
    """A TCP proxy on 127.0.0.1 that can be cut (listener closed, connections reset) and restored."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.port = free_port()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        if listener is not None:
            listener.close()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def telegram_down(ctx: Context, trial: Trial, rng: random.Random, n: int) -> None:
    token = f"{os.getpid()}{n}:faults-down"
    data = ctx.work / f"down-{n}" / "data"
    stub_answers(ctx.stub, words=rng.choice([10, 80]), chunk_delay_s=0.01)
    proxy = CutProxy(ctx.emulator.port)
    env = daemon_env(data, token, f"http://127.0.0.1:{proxy.port}/bot", ctx.stub)
    run = DaemonRun(data, env).start()
    try:
        if not came_up(run, trial):
            return
        tags = [f"d{n}m{i}q{rng.randrange(10**6)}" for i in range(rng.randint(3, 6))]
        outage = rng.uniform(2.0, ctx_outage_s)
        cut_after = rng.randrange(len(tags))
        for i, tag in enumerate(tags):
            if i == cut_after:
                time.sleep(rng.uniform(0.0, 1.0))
                proxy.cut()
                cut_at = time.monotonic()
            ctx.emulator.say(token, ANN, f"note {i}: {tag}")
            time.sleep(rng.uniform(0.0, 0.5))
        time.sleep(max(0.0, cut_at + outage - time.monotonic()))
        proxy.restore()
        restored = time.monotonic()

        def done() -> bool:
            texts = bot_texts(ctx.emulator, token, ANN)
            return all(any(tag in t for t in texts) for tag in tags)

        trial.recovered = wait_until(done, 180, 0.3)
        trial.recovery_s = time.monotonic() - restored
        time.sleep(1.0)
        texts = bot_texts(ctx.emulator, token, ANN)
        order = []
        for tag in tags:
            hits = [i for i, t in enumerate(texts) if tag in t and "interrupted" not in t.lower()]
            if not hits:
                trial.lost += 1
                trial.fail(f"no answer to {tag} (outage {outage:.0f} s)")
            elif len(hits) > 1:
                trial.twice += 1
                trial.fail(f"{len(hits)} answers to {tag}: {[texts[i][:60] for i in hits]}")
            else:
                order.append(hits[0])
        if order != sorted(order):
            trial.out_of_order += 1
            trial.fail(f"answers out of order: {order}")
        run.stop(signal.SIGTERM)
        check_store(trial, data)
    finally:
        proxy.cut()
        kill_if_running(run)


ctx_outage_s = 60.0  # set from --outage


# -- scenario 6: model provider faults --------------------------------------------------------
def provider(ctx: Context, trial: Trial, rng: random.Random, n: int) -> None:
    token = f"{os.getpid()}{n}:faults-llm"
    data = ctx.work / f"llm-{n}" / "data"
    fault = rng.choice(["stream_error", "529", "hang"])
    fault_until = [0.0]

    def respond(path: str, body: dict[str, Any]) -> StubReply:
        reply = LLMStub._default(path, body)
        if time.monotonic() < fault_until[0]:
            if fault == "stream_error":
                return StubReply(reply.text + " partial words", fault="stream_error")
            if fault == "529":
                return StubReply.error(529, retry_after=1, message="Overloaded")
            return StubReply(reply.text, delay_s=120)
        return reply

    ctx.stub.responder = respond
    env = daemon_env(data, token, ctx.emulator.base_url, ctx.stub)
    env.update(
        {
            "FAMILIAR_LLM__REQUEST_TIMEOUT_S": "10",
            "FAMILIAR_LLM__ANSWER_DEADLINE_S": "30",
            "FAMILIAR_LLM__BREAKER_RESET_S": "5",
        }
    )
    run = DaemonRun(data, env).start()
    try:
        if not came_up(run, trial):
            return
        bound = (
            45.0  # the answer's deadline (30 s) and some slack: every message hears back by then
        )
        fault_until[0] = time.monotonic() + rng.uniform(5.0, 20.0)
        sent: dict[str, float] = {}
        for i in range(rng.randint(2, 4)):
            tag = f"p{n}m{i}q{rng.randrange(10**6)}"
            ctx.emulator.say(token, ANN, f"question {tag}")
            sent[tag] = time.monotonic()
            time.sleep(rng.uniform(0.5, 3.0))

        def heard_back(since: int) -> bool:
            return len(ctx.emulator.bot_messages(token, ANN)) >= since

        if not wait_until(lambda: heard_back(len(sent)), bound, 0.3):
            trial.lost += len(sent) - len(ctx.emulator.bot_messages(token, ANN))
            trial.fail(f"{fault}: not every message heard back within {bound:.0f} s")
        wait_until(lambda: time.monotonic() > fault_until[0], 60)
        time.sleep(2.0)
        probe = f"p{n}after{rng.randrange(10**6)}"
        recovered_at = time.monotonic()
        ctx.emulator.say(token, ANN, f"question {probe}")
        trial.recovered = wait_until(
            lambda: any(
                probe in t and ANSWER_MARK in t for t in bot_texts(ctx.emulator, token, ANN)
            ),
            90,
            0.3,
        )
        trial.recovery_s = time.monotonic() - recovered_at
        if not trial.recovered:
            trial.fail(f"{fault}: no real answer once the provider was well again")
        run.stop(signal.SIGTERM)
        pending = run.query("SELECT count(*) FROM inbox WHERE state = 'pending'")[0][0]
        if pending:
            trial.lost += pending
            trial.fail(f"{pending} updates left pending")
    finally:
        kill_if_running(run)


# -- scenario 5: SIGKILL around a reminder's due time ----------------------------------------
def reminder(ctx: Context, trial: Trial, rng: random.Random, n: int) -> None:
    token = f"{os.getpid()}{n}:faults-remind"
    data = ctx.work / f"remind-{n}" / "data"
    env = daemon_env(data, token, ctx.emulator.base_url, ctx.stub)
    run = DaemonRun(data, env).start()
    try:
        if not came_up(run, trial):
            return
        due = {
            f"r{n}m{i}q{rng.randrange(10**6)}": rng.randint(4, 10) for i in range(rng.randint(1, 4))
        }
        sent = time.monotonic()
        for tag, seconds in due.items():
            ctx.emulator.say(token, ANN, f"/remind in {seconds}s ping {tag}")

        def confirmations() -> int:
            return sum("remind you" in t for t in bot_texts(ctx.emulator, token, ANN))

        if not wait_until(lambda: confirmations() >= len(due), 60):
            trial.fail("not every /remind was confirmed before the kill")
        kill_at = min(due.values()) + rng.uniform(-2.0, 4.0)
        time.sleep(max(0.0, sent + kill_at - time.monotonic()))
        run.stop(signal.SIGKILL)
        time.sleep(rng.uniform(0.0, 3.0))
        restarted = time.monotonic()
        run = DaemonRun(data, env).start()

        def deliveries(tag: str) -> list[str]:
            return [
                t for t in bot_texts(ctx.emulator, token, ANN) if tag in t and "remind you" not in t
            ]

        trial.recovered = wait_until(lambda: all(deliveries(tag) for tag in due), 120, 0.3)
        trial.recovery_s = time.monotonic() - restarted
        time.sleep(2.0)
        for tag in due:
            got = deliveries(tag)
            if not got:
                trial.lost += 1
                trial.fail(f"reminder {tag} never delivered")
            # At least once; a second delivery must say it may be a repeat.
            unmarked = [t for t in got[1:] if "again" not in t.lower()]
            if unmarked:
                trial.twice += 1
                trial.fail(f"reminder {tag} delivered {len(got)} times: {got}")
        run.stop(signal.SIGTERM)
        active = run.query("SELECT count(*) FROM reminders WHERE active = 1")[0][0]
        if active:
            trial.fail(f"{active} delivered one-shot reminders still active")
            trial.twice += active
        check_store(trial, data)
    finally:
        kill_if_running(run)


# -- scenario 4: SIGKILL during training ------------------------------------------------------
TRAIN_STEPS = 30


def train_env(data_dir: Path) -> dict[str, str]:
    """The tiny model's settings (as tests/training use them), one torch thread each."""
    return base_env(data_dir) | {
        "OMP_NUM_THREADS": "1",
        "FAMILIAR_TRAINING__CHECKPOINT_EVERY": "5",
        "FAMILIAR_TRAINING__LORA_RANK": "8",
        "FAMILIAR_TRAINING__LORA_ALPHA": "16",
        "FAMILIAR_TRAINING__MICRO_BATCH": "4",
        "FAMILIAR_TRAINING__GRAD_ACCUM": "2",
        "FAMILIAR_TRAINING__LR": "0.01",
        "FAMILIAR_TRAINING__WARMUP_STEPS": "2",
        "FAMILIAR_TRAINING__MAX_SEQ_LEN": "256",
    }


def tiny_training_setup(ctx: Context) -> tuple[Path, Path, dict[str, Any]]:
    """The tiny random Llama of tests/training (built here, nothing downloaded), its chat data,
    and the adapter of one uninterrupted run with the campaign's seed; built once per campaign."""
    if "training" in ctx.cache:
        return ctx.cache["training"]  # type: ignore[no-any-return]
    from tests.training.conftest import build_tiny_model, conversations, corpus, write_jsonl

    root = ctx.work / "training"
    model = build_tiny_model(root / "tiny-llama", corpus())
    data = write_jsonl(root / "data.jsonl", conversations())
    ref_dir = root / "reference"
    done = familiar(train_env(ref_dir / "data"), *train_args(model, data, ref_dir))
    if done.returncode != 0:
        raise RuntimeError(f"the uninterrupted training run failed: {done.stderr[-500:]}")
    reference = adapter_tensors(ref_dir / "out")
    ctx.cache["training"] = (model, data, reference)
    return model, data, reference


def train_args(model: Path, data: Path, root: Path) -> list[str]:
    return [
        "train",
        "fit",
        "--base-model",
        str(model),
        "--data",
        str(data),
        "--out",
        str(root / "out"),
        "--steps",
        str(TRAIN_STEPS),
        "--seed",
        "11",
    ]


def adapter_tensors(out: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(out / "adapter" / "adapter_model.safetensors"))


def training_kill(ctx: Context, trial: Trial, rng: random.Random, n: int) -> None:
    import torch

    model, data, reference = tiny_training_setup(ctx)
    root = ctx.work / f"train-{n}"
    env = train_env(root / "data")
    args = train_args(model, data, root)
    proc = subprocess.Popen(
        [str(VENV_BIN / "familiar"), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the CLI and its worker: killed together, as a power cut would
    )
    kill_at_step = rng.randint(0, TRAIN_STEPS - 1)
    db = root / "data" / "familiar.db"

    def step() -> int:
        conn = sqlite3.connect(db, timeout=1)
        try:
            row = conn.execute("SELECT progress FROM train_jobs ORDER BY id DESC").fetchone()
        finally:
            conn.close()
        return int(json.loads(row[0])["step"]) if row and row[0] else 0

    if kill_at_step == 0:  # while it starts: loading the model, before any progress
        time.sleep(rng.uniform(0.0, 4.0))
    else:
        wait_until(lambda: proc.poll() is not None or step() >= kill_at_step, 300, 0.05)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = step() if db.exists() else 0
    restarted = time.monotonic()
    again = familiar(env, *args)
    trial.recovery_s = time.monotonic() - restarted
    if again.returncode != 0:
        trial.recovered = False
        trial.fail(f"the run after the kill failed: {last_error(again)}")
        return
    record = json.loads((root / "out" / "training.json").read_text())
    resumed = record["result"].get("resumed_from")
    if killed_at >= 5 and not resumed:
        trial.fail(f"killed at step {killed_at}, the rerun started from scratch")
        trial.rows_lost += 1
    got = adapter_tensors(root / "out")
    if got.keys() != reference.keys() or not all(torch.equal(got[k], reference[k]) for k in got):
        trial.corrupt = True
        trial.fail(f"killed at step {killed_at}: the adapter differs from the uninterrupted run")


# -- scenarios 8 and 9: disk full, read-only data directory, database replaced ---------------
def can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


def umount(path: Path) -> None:
    for _ in range(3):
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            break


def admin_heard(ctx: Context, token: str, since: int, words: tuple[str, ...]) -> bool:
    texts = bot_texts(ctx.emulator, token, ANN)[since:]
    return any(any(w in t.lower() for w in words) for t in texts)


def storage_fault(ctx: Context, trial: Trial, rng: random.Random, n: int, fault: str) -> None:
    token = f"{os.getpid()}{n}:faults-{fault}"
    root = ctx.work / f"{fault}-{n}"
    mnt = root / "mnt"
    mnt.mkdir(parents=True)
    mount("-t", "tmpfs", "-o", "size=96m", "tmpfs", str(mnt))
    data = mnt / "data"
    env = daemon_env(data, token, ctx.emulator.base_url, ctx.stub)
    env["FAMILIAR_TELEGRAM__ADMINS"] = str(ANN)
    env["FAMILIAR_JOBS__HEALTH_INTERVAL_S"] = "10"
    env["FAMILIAR_JOBS__MIN_FREE_DISK_MB"] = "16"
    run = DaemonRun(data, env)
    run.log = root / "daemon.log"  # outside the filesystem under test, as journald would be
    run.start()
    filler = mnt / "filler"
    try:
        if not came_up(run, trial):
            return
        ctx.emulator.say(token, BOB, f"hello before {fault}")
        wait_until(lambda: any(ANSWER_MARK in t for t in bot_texts(ctx.emulator, token, BOB)), 60)
        admin_before = len(bot_texts(ctx.emulator, token, ANN))
        bob_before = len(bot_texts(ctx.emulator, token, BOB))
        if fault == "disk_full":
            with open(filler, "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * (1 << 20))
                        f.flush()
                except OSError:
                    pass
            words: tuple[str, ...] = ("disk", "space", "full", "failing", "store")
        elif fault == "readonly":
            mount("--bind", str(data), str(data))
            mount("-o", "remount,ro,bind", str(data))
            words = ("read-only", "read only", "failing", "write", "store")
        else:  # the database file replaced under the running daemon
            copy = data / "familiar.db.copy"
            shutil.copyfile(data / "familiar.db", copy)
            os.replace(copy, data / "familiar.db")
            words = ("replaced", "database", "failing")
        faulted = time.monotonic()
        tags = [f"{fault[:2]}{n}m{i}q{rng.randrange(10**6)}" for i in range(2)]
        for tag in tags:
            ctx.emulator.say(token, BOB, f"during the fault {tag}")
        if not wait_until(lambda: len(bot_texts(ctx.emulator, token, BOB)) >= bob_before + 1, 90):
            trial.lost += 1
            trial.fail(f"{fault}: the sender heard nothing while the fault lasted")
        if not wait_until(lambda: admin_heard(ctx, token, admin_before, words), 120):
            trial.fail(f"{fault}: no admin alert")
            trial.recovered = False
        if run.proc is not None and run.proc.poll() is not None:
            trial.recovered = False
            trial.fail(f"{fault}: the daemon stopped (exit {run.proc.returncode})")
            return
        # The fault ends; the daemon must recover by itself.
        if fault == "disk_full":
            filler.unlink()
        elif fault == "readonly":
            umount(data)
        healed = time.monotonic()
        probe = f"after{n}q{rng.randrange(10**6)}"
        ctx.emulator.say(token, BOB, f"after the fault {probe}")
        ok = wait_until(
            lambda: any(
                probe in t and ANSWER_MARK in t for t in bot_texts(ctx.emulator, token, BOB)
            ),
            120,
            0.3,
        )
        trial.recovery_s = time.monotonic() - healed
        if fault == "replaced":
            ok = ok  # a replaced database may need a restart; the alert is what is required
        elif not ok:
            trial.recovered = False
            trial.fail(f"{fault}: no answer once the fault ended")
        del faulted
        run.stop(signal.SIGTERM)
        check_store(trial, data)
    finally:
        kill_if_running(run)
        if fault == "readonly":
            umount(data)
        umount(mnt)


def disk_full(ctx: Context, trial: Trial, rng: random.Random, n: int) -> None:
    if not can_mount():
        trial.notes.append("skipped: needs root to mount a small filesystem")
        return
    storage_fault(ctx, trial, rng, n, "disk_full")


def readonly(ctx: Context, trial: Trial, rng: random.Random, n: int) -> None:
    if not can_mount():
        trial.notes.append("skipped: needs root to mount a filesystem read-only")
        return
    storage_fault(ctx, trial, rng, n, rng.choice(["readonly", "replaced"]))


SCENARIOS: dict[str, Callable[[Context, Trial, random.Random, int], None]] = {
    "conversation": conversation,
    "import": import_kill,
    "backup": backup_kill,
    "telegram_down": telegram_down,
    "provider": provider,
    "reminder": reminder,
    "training": training_kill,
    "disk_full": disk_full,
    "readonly": readonly,
}


def run_campaign(names: list[str], trials: int, seed: int, verbose: bool) -> int:
    from tests.stubs.anthropic_stub import llm_stub

    emulator = start_emulator()
    rows = []
    violations = 0
    try:
        with llm_stub() as stub, tempfile.TemporaryDirectory(prefix="fam-faults-") as tmp:
            ctx = Context(emulator, stub, Path(tmp), verbose)
            for name in names:
                results: list[Trial] = []
                for n in range(trials):
                    trial_seed = seed * 1000 + n
                    trial = Trial(trial_seed)
                    try:
                        SCENARIOS[name](ctx, trial, random.Random(f"{name}:{trial_seed}"), n)
                    except Exception as exc:  # a harness failure is a failed trial, not a crash
                        trial.recovered = False
                        trial.fail(f"harness: {type(exc).__name__}: {exc}")
                    ctx.stub.responder = None
                    results.append(trial)
                    mark = "ok" if trial.ok else "VIOLATION"
                    print(
                        f"  {name} trial {n} (seed {trial_seed}): {mark} "
                        f"{trial.recovery_s:.1f} s {'; '.join(trial.notes)[:300]}",
                        file=sys.stderr,
                        flush=True,
                    )
                bad = [t for t in results if not t.ok]
                violations += len(bad)
                rows.append(
                    (
                        name,
                        len(results),
                        sum(t.recovered for t in results),
                        sum(t.lost for t in results),
                        sum(t.twice for t in results),
                        sum(t.rows_lost for t in results),
                        sum(t.corrupt for t in results),
                        max((t.recovery_s for t in results), default=0.0),
                        bad[0].seed if bad else None,
                    )
                )
    finally:
        emulator.proc.send_signal(signal.SIGTERM)
        emulator.proc.wait(10)
    header = "| scenario | trials | recovered | messages lost | answered twice | rows lost | corruption | worst recovery | first bad seed |"
    print(header)
    print("|" + "---|" * 9)
    for name, t, rec, lost, twice, rows_lost, corrupt, worst, bad_seed in rows:
        print(
            f"| {name} | {t} | {rec} | {lost} | {twice} | {rows_lost} | {corrupt} | {worst:.1f} s | "
            f"{'-' if bad_seed is None else bad_seed} |"
        )
    return 1 if violations else 0


def main() -> None:
    global ctx_outage_s
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    parser.add_argument("--outage", type=float, default=60.0, help="longest Telegram outage, s")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    ctx_outage_s = max(2.0, args.outage)
    sys.exit(run_campaign(args.scenario or list(SCENARIOS), args.trials, args.seed, args.verbose))


if __name__ == "__main__":
    main()
