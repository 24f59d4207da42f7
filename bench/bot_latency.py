"""Bot latency: user send -> bot reply through the Telegram emulator, Familiar vs a bare PTB echo bot.

    .venv/bin/python bench/bot_latency.py [--messages 1000] [--users 20]

Starts telegram-test-api (tests/telegram/emulator, `npm install` there first), then for each bot
in turn, in the same run: sends N messages one at a time (latency: p50/p99 from the user's send
to the reply appearing), then N at once spread over the users (throughput). The echo bot is PTB's
own Application + polling + MessageHandler. Familiar runs as the real daemon (`familiar run`)
with outgoing pacing off (the emulator is not Telegram) and its full answer path: chat agent,
memory (store, embed, hybrid search, context assembly), the real anthropic provider pointed at
the stub model server (tests/stubs/anthropic_stub.py, instant streamed replies), fact extraction
off (it would add model calls). Timing starts once memory's index is warm (/status says so),
and each sequential message waits for the previous answer to be stored, so one answer's
background work does not overlap the next. Both bots poll the emulator every 50 ms, since the
emulator does not long-poll. Prints the figures; writes nothing outside a temp directory.

The Familiar figure is time to the first visible reply (the first streamed piece; with the
stub that is the whole answer); "stored" is time until the answer is in memory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POLL_S = 0.05


def post(url: str, body: dict) -> dict:
    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


def echo_bot(token: str, base_url: str) -> None:
    """A bare PTB echo bot, the baseline."""
    from telegram import Update
    from telegram.ext import Application, MessageHandler, filters

    async def echo(update: Update, context: object) -> None:
        assert update.message is not None
        await update.message.reply_text(update.message.text or "")

    app = Application.builder().token(token).base_url(base_url).build()
    app.add_handler(MessageHandler(filters.TEXT, echo))
    app.run_polling(poll_interval=POLL_S, timeout=0)


def wait_reply(api: str, token: str, chat: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if post(f"{api}/getUpdates", {"token": token, "chatId": chat})["result"]:
            return True
        time.sleep(0.001)
    return False


def send(api: str, token: str, user: int, text: str) -> None:
    post(
        f"{api}/sendMessage",
        {
            "botToken": token,
            "date": int(time.time()),
            "from": {"id": user, "first_name": "U", "is_bot": False},
            "chat": {"id": user, "type": "private", "first_name": "U"},
            "text": text,
        },
    )


def replies(api: str, token: str, chat: int) -> list[str]:
    return [
        u["message"].get("text", "")
        for u in post(f"{api}/getUpdates", {"token": token, "chatId": chat})["result"]
    ]


def wait_warm(api: str, token: str, chat: int, timeout_s: float = 180.0) -> float:
    """Ask /status until memory's index is healthy (the embedding model loaded); returns seconds waited."""
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        send(api, token, chat, "/status")
        deadline = time.monotonic() + 30
        texts: list[str] = []
        while not texts and time.monotonic() < deadline:
            texts = replies(api, token, chat)
            time.sleep(0.01)
        if any("✅ memory_index" in t for t in texts):
            return time.monotonic() - began
        time.sleep(1.0)
    raise SystemExit("Familiar's memory index did not become healthy; see BENCH_LOG")


class StoredAnswers:
    """Counts the answers Familiar has stored (its SQLite, read-only), to wait for one to finish."""

    def __init__(self, db: Path) -> None:
        self.db = db

    def count(self) -> int:
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            return int(
                conn.execute("SELECT count(*) FROM messages WHERE role = 'assistant'").fetchone()[0]
            )
        finally:
            conn.close()

    def wait(self, n: int, deadline: float) -> None:
        while self.count() < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"answer {n} was not stored in time")
            time.sleep(0.002)


def measure(
    api: str, token: str, n: int, users: list[int], stored: StoredAnswers | None = None
) -> dict[str, float]:
    base = stored.count() + 1 if stored else 0  # after the warm-up answer
    send(api, token, users[0], "warm up")
    wait_reply(api, token, users[0], time.monotonic() + 30)
    if stored:
        stored.wait(base, time.monotonic() + 30)
    latencies, until_stored = [], []
    for i in range(n):
        user = users[i % len(users)]
        began = time.perf_counter()
        send(api, token, user, f"message {i}")
        if not wait_reply(api, token, user, time.monotonic() + 30):
            raise SystemExit(f"no reply to message {i}")
        latencies.append((time.perf_counter() - began) * 1000)
        if stored:
            stored.wait(base + i + 1, time.monotonic() + 30)
            until_stored.append((time.perf_counter() - began) * 1000)
    began = time.perf_counter()
    for i in range(n):
        send(api, token, users[i % len(users)], f"burst {i}")
    got = 0
    while got < n and time.perf_counter() - began < 300:
        for user in users:
            got += len(post(f"{api}/getUpdates", {"token": token, "chatId": user})["result"])
        time.sleep(0.01)
    elapsed = time.perf_counter() - began
    q = statistics.quantiles(latencies, n=100)
    out = {
        "p50_ms": statistics.median(latencies),
        "p99_ms": q[98],
        "throughput_per_s": got / elapsed,
    }
    if until_stored:
        out["stored_p50_ms"] = statistics.median(until_stored)
        out["stored_p99_ms"] = statistics.quantiles(until_stored, n=100)[98]
    return out


def start_stub() -> tuple[subprocess.Popen[bytes], str]:
    """The stub model server as a process (python -m tests.stubs.anthropic_stub); returns it and its URL."""
    stub = subprocess.Popen(
        [sys.executable, "-m", "tests.stubs.anthropic_stub", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    assert stub.stdout is not None
    line = stub.stdout.readline().decode().split()
    if len(line) != 2 or line[0] != "LISTENING":
        stub.kill()
        raise SystemExit(f"the stub model server did not start: {line}")
    return stub, line[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument(
        "--echo-bot", nargs=2, metavar=("TOKEN", "BASE_URL"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.echo_bot:
        echo_bot(*args.echo_bot)
        return
    emulator_dir = ROOT / "tests" / "telegram" / "emulator"
    if not (emulator_dir / "node_modules").is_dir():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=emulator_dir, check=True)
    port = 19700 + os.getpid() % 200
    emu = subprocess.Popen(
        ["node", "server.js", str(port), "3600"], cwd=emulator_dir, stdout=subprocess.PIPE
    )
    assert emu.stdout is not None and emu.stdout.readline().startswith(b"listening")
    api, base = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/bot"
    users = [1000 + i for i in range(args.users)]
    data = Path(tempfile.mkdtemp(prefix="familiar-bench-"))
    results = {}
    try:
        echo = subprocess.Popen(
            [sys.executable, __file__, "--echo-bot", "1:echo", base],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            results["ptb echo bot"] = measure(api, "1:echo", args.messages, users)
        finally:
            echo.terminate()
            echo.wait(10)
        stub, stub_url = start_stub()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FAMILIAR_", "ANTHROPIC_"))}
        env.update(
            {
                "FAMILIAR_LLM__PROVIDER": "anthropic",
                "ANTHROPIC_BASE_URL": stub_url,
                "ANTHROPIC_API_KEY": "test",
                "FAMILIAR_LLM__FACT_EXTRACTION_EVERY": "0",
                "HF_HUB_OFFLINE": "1",
                "FAMILIAR_DATA_DIR": str(data),
                "FAMILIAR_TELEGRAM__TOKEN": "2:familiar",
                "FAMILIAR_TELEGRAM__BASE_URL": base,
                "FAMILIAR_TELEGRAM__ALLOWED_USERS": ",".join(map(str, users)),
                "FAMILIAR_TELEGRAM__POLL_IDLE_S": str(POLL_S),
                "FAMILIAR_TELEGRAM__CHAT_SEND_INTERVAL_S": "0",
                "FAMILIAR_TELEGRAM__GLOBAL_MAX_PER_S": "0",
                "FAMILIAR_TELEGRAM__USER_BURST": "0",
                "FAMILIAR_LOG__LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
            }
        )
        familiar_log = open(os.environ.get("BENCH_LOG", os.devnull), "wb")  # noqa: SIM115
        familiar = subprocess.Popen(
            [str(Path(sys.executable).parent / "familiar"), "run"],
            env=env,
            stdout=familiar_log,
            stderr=familiar_log,
        )
        try:
            warm_s = wait_warm(api, "2:familiar", users[0])
            results["familiar"] = measure(
                api, "2:familiar", args.messages, users, StoredAnswers(data / "familiar.db")
            )
        finally:
            familiar.terminate()
            familiar.wait(20)
            stub.terminate()
            stub.wait(10)
    finally:
        emu.terminate()
        emu.wait(10)
        shutil.rmtree(data, ignore_errors=True)
    print(
        f"{args.messages} messages, {args.users} users, emulator telegram-test-api 4.2.1, poll every {POLL_S * 1000:.0f} ms"
    )
    print(f"{'bot':<14} {'p50 ms':>8} {'p99 ms':>8} {'msgs/s':>8}")
    for name, r in results.items():
        print(f"{name:<14} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['throughput_per_s']:>8.1f}")
    overhead = results["familiar"]["p50_ms"] - results["ptb echo bot"]["p50_ms"]
    print(f"median overhead of Familiar over the echo bot: {overhead:.1f} ms")
    f = results["familiar"]
    print(
        f"familiar answer stored: p50 {f['stored_p50_ms']:.1f} ms, p99 {f['stored_p99_ms']:.1f} ms "
        f"(memory warm after {warm_s:.1f} s)"
    )


if __name__ == "__main__":
    main()
