"""End to end: the real daemon with its data directory on a small tmpfs that fills up or turns
read-only. The daemon stays up, the sender hears why there is no answer yet, the admins are told
once, and it answers by itself within seconds of the fault ending. Needs root (mounts)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.core.schema import migrations as bot_migrations
from bot.telegram.access import AccessControl
from bot.telegram.unstored import UnstoredNotices
from memory.db import Database
from memory.schema import migrations as memory_migrations
from tests.mounts import fill_up, read_only, small_tmpfs
from tests.stubs.anthropic_stub import LLMStub, llm_stub
from tests.stubs.anthropic_stub import Reply as StubReply
from tests.telegram.conftest import VENV_BIN, DaemonRun, Emulator, daemon_env

ADMIN, BOB, EVE = 701, 702, 666701
ANSWER = "stub answer to:"


def texts(emulator: Emulator, token: str, chat: int) -> list[str]:
    return [m["message"].get("text") or "" for m in emulator.bot_messages(token, chat)]


def wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


@pytest.fixture
def stub() -> Iterator[LLMStub]:
    with llm_stub() as s:
        yield s


def start_daemon(data: Path, token: str, emulator: Emulator, stub: LLMStub) -> DaemonRun:
    if not (VENV_BIN / "familiar").exists():
        pytest.skip("the familiar console script is not installed (pip install -e .)")
    env = daemon_env(data, token, emulator.base_url) | {
        "FAMILIAR_TELEGRAM__ALLOWED_USERS": str(BOB),
        "FAMILIAR_TELEGRAM__ADMINS": str(ADMIN),
        "FAMILIAR_JOBS__MIN_FREE_DISK_MB": "8",
        "FAMILIAR_JOBS__STORAGE_PROBE_S": "1",
        "FAMILIAR_LLM__PROVIDER": "anthropic",
        "ANTHROPIC_BASE_URL": stub.url,
        "ANTHROPIC_API_KEY": "test",
    }
    run = DaemonRun(data, env)
    run.log = data.parent.parent / "daemon.log"  # off the filesystem under test, like journald
    run.start()
    assert wait(lambda: "connected to Telegram" in run.log_text(), 90), run.log_text()[-3000:]
    return run


def answered(emulator: Emulator, token: str, tag: str) -> bool:
    return any(tag in t and ANSWER in t for t in texts(emulator, token, BOB))


def up_again(run: DaemonRun) -> str:
    """ "connected" once the daemon has reached Telegram a second time (its log is kept)."""
    return "connected" if run.log_text().count("connected to Telegram") >= 2 else ""


def held_back(text: str) -> bool:
    """The notice for a message the full disk held back: "could not store" when the inbox could
    not keep it, "could not finish answering" when it was kept (a write that fit in pages the
    WAL already had) and its answer could not be; either way it is answered once space is freed."""
    stage = "could not store your message" in text or "could not finish answering your" in text
    return stage and "space is freed" in text


def answers_hello(run: DaemonRun, emulator: Emulator, token: str) -> DaemonRun:
    emulator.say(token, BOB, "hello before")
    assert wait(lambda: answered(emulator, token, "hello before"), 60), run.log_text()[-3000:]
    return run


@contextlib.contextmanager
def daemon_on_tmpfs(
    tmp_path: Path, emulator: Emulator, stub: LLMStub, token: str
) -> Iterator[tuple[Path, DaemonRun]]:
    """(mount point, run): a daemon whose data directory is on a 64 MB tmpfs, having answered
    BOB's "hello before"; stopped and unmounted at the end (a test may stop it earlier)."""
    with small_tmpfs(tmp_path / "mnt", size_mb=64) as mnt:
        run = start_daemon(mnt / "data", token, emulator, stub)
        try:
            yield mnt, answers_hello(run, emulator, token)
        finally:
            run.stop(signal.SIGTERM)


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_disk_full_the_sender_and_admins_hear_once_and_it_recovers_by_itself(
    tmp_path: Path, emulator: Emulator, stub: LLMStub
) -> None:
    token = f"{os.getpid()}91:storage-full"
    with daemon_on_tmpfs(tmp_path, emulator, stub, token) as (mnt, run):
        admin_before = len(texts(emulator, token, ADMIN))
        filler = fill_up(mnt)
        emulator.say(token, BOB, "while full one")
        emulator.say(token, EVE, "a stranger while full")
        assert wait(lambda: len(texts(emulator, token, BOB)) >= 2, 30), run.log_text()[-3000:]
        assert held_back(texts(emulator, token, BOB)[1])
        assert wait(lambda: len(texts(emulator, token, ADMIN)) > admin_before, 30), (
            "the admins were not told"
        )
        time.sleep(8)  # the poller retries every few seconds: still one notice, one alert
        emulator.say(token, BOB, "while full two")
        assert wait(lambda: sum(held_back(t) for t in texts(emulator, token, BOB)) >= 2, 20)
        time.sleep(8)
        bob = texts(emulator, token, BOB)
        assert sum(held_back(t) for t in bob) == 2, bob  # one per message
        alerts = texts(emulator, token, ADMIN)[admin_before:]
        assert len(alerts) == 1, "\n----\n".join(alerts)
        alert = alerts[0]
        assert "failing" in alert and "the disk is full" in alert
        assert texts(emulator, token, EVE) == []  # strangers hear nothing, full disk or not
        assert run.proc is not None and run.proc.poll() is None  # still up

        filler.unlink()
        freed = time.monotonic()
        assert wait(
            lambda: (
                answered(emulator, token, "while full one")
                and answered(emulator, token, "while full two")
            ),
            30,
        ), run.log_text()[-3000:]
        assert time.monotonic() - freed < 20  # by itself, promptly
        assert wait(lambda: len(texts(emulator, token, ADMIN)) == admin_before + 2, 30)
        recovered = texts(emulator, token, ADMIN)[-1]
        assert "storage" not in recovered and "full" not in recovered, recovered
        run.stop(signal.SIGTERM)
        assert run.query("PRAGMA integrity_check") == [("ok",)]
        assert run.query("SELECT count(*) FROM inbox WHERE state = 'pending'") == [(0,)]


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_disk_full_after_the_message_is_stored_it_is_answered_once_space_returns(
    tmp_path: Path, emulator: Emulator, stub: LLMStub
) -> None:
    """Found by bench/faults.py --scenario disk_full (the disk filling between storing a message
    and storing its answer): the sender heard "something went wrong", the update stayed pending
    until the next restart, and the answer was never stored."""
    token = f"{os.getpid()}94:storage-mid-answer"
    asked, filled = threading.Event(), threading.Event()

    def respond(path: str, body: dict[str, Any]) -> StubReply:
        reply = LLMStub._default(path, body)
        if reply.json is None and "mid answer" in reply.text and not asked.is_set():
            asked.set()  # the message is stored: the model is asked only after
            filled.wait(60)
        return reply

    stub.responder = respond
    with daemon_on_tmpfs(tmp_path, emulator, stub, token) as (mnt, run):
        emulator.say(token, BOB, "a question mid answer")
        assert asked.wait(60), run.log_text()[-3000:]
        filler = fill_up(mnt)
        filled.set()
        assert wait(lambda: any("could not" in t for t in texts(emulator, token, BOB)), 30), texts(
            emulator, token, BOB
        )
        time.sleep(6)  # it keeps trying while the disk is full: still one notice
        told = [t for t in texts(emulator, token, BOB) if "could not" in t]
        assert len(told) == 1 and "space is freed" in told[0], texts(emulator, token, BOB)
        assert not any("went wrong" in t for t in texts(emulator, token, BOB))
        assert run.proc is not None and run.proc.poll() is None

        filler.unlink()
        assert wait(
            lambda: (
                run.query(
                    "SELECT count(*) FROM messages WHERE role = 'assistant' AND text LIKE ?",
                    f"%{ANSWER}%mid answer%",
                )
                == [(1,)]
            ),
            30,
        ), run.log_text()[-3000:]
        assert wait(lambda: answered(emulator, token, "mid answer"), 30)
        emulator.say(token, BOB, "after the disk was freed")
        assert wait(lambda: answered(emulator, token, "after the disk was freed"), 30)
        run.stop(signal.SIGTERM)
        bob = texts(emulator, token, BOB)
        assert sum("mid answer" in t and ANSWER in t for t in bob) == 1, bob
        assert run.query(
            "SELECT count(*) FROM messages WHERE role = 'user' AND text LIKE '%mid answer%'"
        ) == [(1,)]
        assert run.query("SELECT count(*) FROM inbox WHERE state = 'pending'") == [(0,)]
        assert run.query("PRAGMA integrity_check") == [("ok",)]


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_restart_while_the_disk_is_full_comes_up_tells_everyone_and_loses_nothing(
    tmp_path: Path, emulator: Emulator, stub: LLMStub
) -> None:
    """Found by bench/faults.py --scenario disk_full (restart_full): stopped cleanly (as systemd
    restarts it) and started again on a full disk, the daemon exited 2 ("cannot create the lock
    file", then "not a valid SQLite database ... restore the latest backup": no room for the
    WAL index), which systemd does not restart: down for good, nobody told."""
    token = f"{os.getpid()}95:storage-restart-full"
    with daemon_on_tmpfs(tmp_path, emulator, stub, token) as (mnt, run):
        run.stop(signal.SIGTERM)
        stored = run.query("SELECT role, text FROM messages ORDER BY id")
        filler = fill_up(mnt)
        emulator.say(token, BOB, "sent while it was down")
        admin_before = len(texts(emulator, token, ADMIN))
        run.start()
        proc = run.proc
        assert proc is not None
        assert wait(lambda: up_again(run) or proc.poll() is not None, 60)
        assert up_again(run), run.log_text()[-3000:]  # not exited: exit 2 is never restarted
        assert wait(lambda: any(held_back(t) for t in texts(emulator, token, BOB)), 20)
        assert wait(lambda: len(texts(emulator, token, ADMIN)) > admin_before, 20)
        [alert] = texts(emulator, token, ADMIN)[admin_before:]
        assert "failing" in alert and "the disk is full" in alert, alert
        assert run.proc is not None and run.proc.poll() is None

        filler.unlink()
        assert wait(lambda: answered(emulator, token, "sent while it was down"), 20), (
            run.log_text()[-3000:]
        )
        run.stop(signal.SIGTERM)
        after = run.query("SELECT role, text FROM messages ORDER BY id")
        assert after[: len(stored)] == stored and len(stored) == 2  # nothing stored is lost
        assert run.query("PRAGMA integrity_check") == [("ok",)]
        assert run.query("SELECT count(*) FROM inbox WHERE state = 'pending'") == [(0,)]


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_read_only_data_directory_alerts_the_admins_and_recovers(
    tmp_path: Path, emulator: Emulator, stub: LLMStub
) -> None:
    token = f"{os.getpid()}92:storage-ro"
    with daemon_on_tmpfs(tmp_path, emulator, stub, token) as (mnt, run):
        with read_only(mnt / "data"):
            # The open database files still work, so no write fails: the admins hear all
            # the same, from the storage probe, not at the next scheduled health run.
            assert wait(lambda: any("read-only" in t for t in texts(emulator, token, ADMIN)), 60), (
                run.log_text()[-3000:]
            )
            assert run.proc is not None and run.proc.poll() is None
        emulator.say(token, BOB, "after read-only")
        assert wait(lambda: answered(emulator, token, "after read-only"), 60)


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_database_file_replaced_under_the_daemon_alerts_the_admins_once(
    tmp_path: Path, emulator: Emulator, stub: LLMStub
) -> None:
    """No mount needed: a file replaced (a careless restore, a sync tool) while the daemon runs
    would take every later write to the old, unlinked file. The admins hear at once."""
    token = f"{os.getpid()}93:storage-replaced"
    data = tmp_path / "run" / "data"
    run = start_daemon(data, token, emulator, stub)
    try:
        answers_hello(run, emulator, token)
        before = len(texts(emulator, token, ADMIN))
        shutil.copyfile(data / "familiar.db", data / "copy.db")
        os.replace(data / "copy.db", data / "familiar.db")
        assert wait(
            lambda: any("replaced" in t for t in texts(emulator, token, ADMIN)[before:]), 60
        ), run.log_text()[-3000:]
        time.sleep(5)
        alerts = texts(emulator, token, ADMIN)[before:]
        assert len(alerts) == 1 and "restart" in alerts[0], alerts
        assert run.proc is not None and run.proc.poll() is None  # an alert, not a silent stop
    finally:
        run.stop(signal.SIGTERM)


def test_each_known_sender_hears_once_per_message_and_strangers_never(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "familiar.db", [memory_migrations, bot_migrations])
    sent: list[tuple[int, str]] = []

    async def send(chat: int, text: str) -> None:
        sent.append((chat, text))

    def message(update_id: int, user: int) -> dict:
        return {
            "update_id": update_id,
            "message": {"from": {"id": user}, "chat": {"id": user, "type": "private"}},
        }

    notices = UnstoredNotices(AccessControl(db, [BOB], [ADMIN], 3600), send)
    batch = [message(1, BOB), message(2, EVE), message(3, ADMIN)]
    fault = "the disk holding the data directory is full (database or disk is full)"
    assert asyncio.run(notices.tell(batch, fault)) == 2
    assert asyncio.run(notices.tell(batch, fault)) == 0  # the same batch fetched again
    assert [chat for chat, _ in sent] == [BOB, ADMIN]
    assert "full" in sent[0][1] and "space is freed" in sent[0][1]
    assert "(database or disk is full)" not in sent[0][1]  # the person gets words, not SQLite's
    db.close()
