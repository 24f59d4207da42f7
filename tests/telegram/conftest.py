"""Fixtures of the Telegram tests: the emulator (telegram-test-api) and the real daemon against it.

The emulator is a node process started from ``tests/telegram/emulator/server.js`` (which closes
the gaps between it and PTB 22); ``npm install`` runs there once when node_modules is missing.
Each test uses its own bot token, so tests sharing one emulator never see each other's chats.
"""

from __future__ import annotations

import html
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_tool

EMULATOR_DIR = Path(__file__).parent / "emulator"
VENV_BIN = Path(sys.executable).parent
_tokens = count(1)


def visible(html_text: str) -> str:
    """What Telegram counts against its 4096-character limit: the text after entity parsing."""
    return html.unescape(re.sub(r"<[^>]+>", "", html_text))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_emulator_installed() -> None:
    require_tool("node", "the Telegram emulator, telegram-test-api, runs on it")
    require_tool("npm", "installs the Telegram emulator")
    if not (EMULATOR_DIR / "node_modules" / "telegram-test-api").is_dir():
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent"],
            cwd=EMULATOR_DIR,
            check=True,
            timeout=300,
            capture_output=True,
        )


class Emulator:
    """The emulator process and its user-side API (plays the people talking to the bot)."""

    def __init__(self, port: int, proc: subprocess.Popen[bytes]) -> None:
        self.port = port
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/bot"

    def post(self, path: str, body: dict[str, Any]) -> Any:
        req = urllib.request.Request(
            f"{self.url}/{path}", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")

    @staticmethod
    def person(user_id: int, name: str = "Ann") -> dict[str, Any]:
        return {"id": user_id, "first_name": name, "is_bot": False}

    def say(self, token: str, user_id: int, text: str, name: str = "Ann") -> None:
        body: dict[str, Any] = {
            "botToken": token,
            "date": int(time.time()),
            "from": self.person(user_id, name),
            "chat": {"id": user_id, "type": "private", "first_name": name},
            "text": text,
        }
        if text.startswith("/"):
            body["entities"] = [
                {"offset": 0, "length": len(text.split(" ")[0]), "type": "bot_command"}
            ]
            self.post("sendCommand", body)
        else:
            self.post("sendMessage", body)

    def put_file(self, token: str, file_id: str, data: bytes) -> None:
        """Make ``file_id`` downloadable by this bot (getFile, then /file/bot<token>/<path>)."""
        req = urllib.request.Request(
            f"{self.url}/putFile?token={urllib.parse.quote(token)}&fileId={urllib.parse.quote(file_id)}",
            data,
            {"Content-Type": "application/octet-stream"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()

    def file_requests(self, token: str) -> list[dict[str, Any]]:
        """The getFile calls and downloads this bot made, in order."""
        return list(self.post("fileRequests", {"token": token})["result"])

    def say_voice(
        self,
        token: str,
        user_id: int,
        file_id: str,
        size: int,
        duration: int = 3,
        name: str = "Ann",
    ) -> None:
        """The person sends a voice note (OGG/Opus) whose bytes were registered with ``put_file``."""
        self.post(
            "sendMessage",
            {
                "botToken": token,
                "date": int(time.time()),
                "from": self.person(user_id, name),
                "chat": {"id": user_id, "type": "private", "first_name": name},
                "voice": {
                    "file_id": file_id,
                    "file_unique_id": f"u{file_id}",
                    "duration": duration,
                    "mime_type": "audio/ogg",
                    "file_size": size,
                },
            },
        )

    def say_photo(
        self,
        token: str,
        user_id: int,
        sizes: list[tuple[str, int, int, int]],
        caption: str | None = None,
        media_group_id: str | None = None,
        name: str = "Ann",
    ) -> None:
        """The person sends a photo: ``sizes`` are (file id, width, height, bytes), smallest
        first, each registered with ``put_file``; an album's parts share ``media_group_id``."""
        body: dict[str, Any] = {
            "botToken": token,
            "date": int(time.time()),
            "from": self.person(user_id, name),
            "chat": {"id": user_id, "type": "private", "first_name": name},
            "photo": [
                {"file_id": f, "file_unique_id": f"u{f}", "width": w, "height": h, "file_size": n}
                for f, w, h, n in sizes
            ],
        }
        if caption is not None:
            body["caption"] = caption
        if media_group_id is not None:
            body["media_group_id"] = media_group_id
        self.post("sendMessage", body)

    def press(self, token: str, user_id: int, chat_id: int, message_id: int, data: str) -> None:
        self.post(
            "sendCallback",
            {
                "botToken": token,
                "date": int(time.time()),
                "from": self.person(user_id),
                "message": {
                    "message_id": message_id,
                    "date": int(time.time()),
                    "chat": {"id": chat_id, "type": "private"},
                },
                "data": data,
            },
        )

    def bot_messages(self, token: str, chat_id: int) -> list[dict[str, Any]]:
        """Everything the bot sent to the chat so far (without marking it read)."""
        history = self.post("getUpdatesHistory", {"token": token})["result"]
        return [
            h
            for h in history
            if "chat_id" in h.get("message", {}) and str(h["message"]["chat_id"]) == str(chat_id)
        ]

    def user_updates(self, token: str) -> list[dict[str, Any]]:
        history = self.post("getUpdatesHistory", {"token": token})["result"]
        return [h for h in history if "chat_id" not in h.get("message", {})]

    def wait_bot_messages(
        self, token: str, chat_id: int, n: int, timeout: float = 15.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.bot_messages(token, chat_id)
            if len(found) >= n or time.monotonic() > deadline:
                return found
            time.sleep(0.1)


def launch_emulator() -> Emulator:
    """The emulator on a free port of 127.0.0.1; RuntimeError when it does not come up."""
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
        raise RuntimeError(
            f"the Telegram emulator did not start: {line}{proc.stdout.read().decode()}"
        )
    return Emulator(port, proc)


def stop_emulator(emulator: Emulator) -> None:
    emulator.proc.send_signal(signal.SIGTERM)
    try:
        emulator.proc.wait(5)
    except subprocess.TimeoutExpired:
        emulator.proc.kill()


def daemon_env(data_dir: Path, token: str, base_url: str) -> dict[str, str]:
    """The environment of ``familiar run`` against the emulator (also bench/fault_scenarios'):
    no FAMILIAR_ setting of the caller's leaks in; quick polling and sending."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAMILIAR_")}
    env.update(
        {
            "FAMILIAR_DATA_DIR": str(data_dir),
            "FAMILIAR_TELEGRAM__TOKEN": token,
            "FAMILIAR_TELEGRAM__BASE_URL": base_url,
            "FAMILIAR_TELEGRAM__POLL_IDLE_S": "0.05",
            "FAMILIAR_TELEGRAM__CHAT_SEND_INTERVAL_S": "0.05",
            "FAMILIAR_LOG__LEVEL": "DEBUG",
        }
    )
    return env


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    ensure_emulator_installed()
    try:
        started = launch_emulator()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield started
    stop_emulator(started)


class DaemonRun:
    """``familiar run`` as a subprocess, as systemd runs it."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / "daemon.log"

    def start(self, **settings: str) -> DaemonRun:
        env = dict(self.env)
        env.update({f"FAMILIAR_TELEGRAM__{k.upper()}": v for k, v in settings.items()})
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "familiar"), "run"], env=env, stdout=log, stderr=log
        )
        log.close()
        return self

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.data_dir / "familiar.db", timeout=10)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    def wait_for(
        self, sql: str, predicate: Callable[[list[tuple[Any, ...]]], bool], timeout: float = 10.0
    ) -> list[tuple[Any, ...]]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                rows = self.query(sql)
            except sqlite3.OperationalError:  # the daemon has not created the table yet
                rows = []
            if predicate(rows) or time.monotonic() > deadline:
                return rows
            time.sleep(0.1)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def daemon(tmp_path: Path, emulator: Emulator) -> Iterator[Callable[..., tuple[DaemonRun, str]]]:
    """``daemon(**telegram_settings)`` starts the daemon with a token of its own; returns (run, token)."""
    require_tool("familiar")
    runs: list[DaemonRun] = []

    def start(
        token: str | None = None, env_extra: dict[str, str] | None = None, **settings: str
    ) -> tuple[DaemonRun, str]:
        token = token or f"{os.getpid()}{next(_tokens)}:test-token"
        env = daemon_env(tmp_path / "data", token, emulator.base_url)
        env.update(env_extra or {})
        run = DaemonRun(tmp_path / "data", env).start(**settings)
        runs.append(run)
        return run, token

    yield start
    for run in runs:
        if run.proc is not None and run.proc.poll() is None:
            run.stop()


SENTENCE = "please call my mother tomorrow morning"


@pytest.fixture(scope="module")
def speech() -> bytes:
    """SENTENCE spoken by espeak-ng, as a Telegram voice note (OGG/Opus, 48 kHz mono)."""
    import io

    import soundfile as sf

    from tests.voice.conftest import to_opus

    espeak = require_tool("espeak-ng", "it speaks the test sentence")
    wav = subprocess.run(
        [espeak, "-v", "en-us", "-s", "150", "--stdout", SENTENCE],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return to_opus(samples, rate)


@pytest.fixture(scope="module")
def sphinx() -> Iterator[Any]:
    """The offline pocketsphinx transcriber, one per module (it runs a worker process)."""
    from agents.voice import VoiceSettings, build_transcriber

    transcriber = build_transcriber(VoiceSettings())
    yield transcriber
    transcriber.close()
