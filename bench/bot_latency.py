"""Bot latency: a user's message -> the final state of the answer, Familiar vs a bare PTB bot.

    .venv/bin/python bench/bot_latency.py [--messages 100] [--users 5] [--model-ms 200]

Both bots run at once against one telegram-test-api emulator (tests/telegram/emulator, `npm
install` there first) and one stub model server (tests/stubs/anthropic_stub.py) that answers
every request with the same text after a fixed ``--model-ms``. The messages are interleaved:
round i sends one message to each bot, alternating which goes first, and waits for each answer
before the next send, so both see the same machine load and neither overlaps the other.

- The baseline is a bare python-telegram-bot ``Bot``: it polls exactly as Familiar's poller does
  (getUpdates; when nothing came, sleep ``POLL_S``; the emulator does not long-poll), asks the
  stub model with the anthropic SDK, and sends the reply.
- Familiar runs as the real daemon (`familiar run`) with outgoing pacing off (the emulator is not
  Telegram) and its full answer path: inbox, chat agent, memory (store, embed, hybrid search,
  context assembly), the real anthropic provider streaming from the stub, fact extraction off.
  Timing starts once memory's index is warm (/status says so).

The end point is the answer as the user finally sees it, read from the emulator's
``getUpdatesHistory`` (which applies edits in place): for Familiar the last edit of the streamed
message (its text no longer ends in "…" and the feedback buttons are on it), not the first piece.
Prints medians, p90 and the median of the per-round differences; writes nothing outside a temp
directory. ``BENCH_LOG=path`` keeps the daemon's log.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
POLL_S = 0.05
ANSWER = "Here is a fixed answer from the stub model, long enough to be streamed in pieces."
BASELINE, FAMILIAR = "ptb bot", "familiar"
Final = Callable[[dict[str, Any]], bool]


def post(url: str, body: dict) -> Any:
    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


# -- the baseline bot (a child process) -------------------------------------------------------
async def baseline_bot(token: str, base_url: str, stub_url: str) -> None:
    """A bare PTB Bot that polls as Familiar does, asks the stub model, and replies."""
    import anthropic
    from telegram import Bot, Update

    model = anthropic.AsyncAnthropic(base_url=stub_url, api_key="test")
    tasks: set[asyncio.Task[None]] = set()

    async def answer(bot: Bot, update: Update) -> None:
        assert update.message is not None and update.message.text is not None
        result = await model.messages.create(
            model="stub",
            max_tokens=256,
            messages=[{"role": "user", "content": update.message.text}],
        )
        text = "".join(b.text for b in result.content if b.type == "text")
        await bot.send_message(update.message.chat_id, text)

    async with Bot(token, base_url=base_url) as bot:
        offset: int | None = None
        while True:
            updates = await bot.get_updates(offset=offset, timeout=0)
            for update in updates:
                offset = update.update_id + 1
                task = asyncio.create_task(answer(bot, update))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if not updates:
                await asyncio.sleep(POLL_S)


# -- the user's side ------------------------------------------------------------------------------
class User:
    """Plays the people: sends messages and reads what the bot shows, through the emulator."""

    def __init__(self, api: str) -> None:
        self.api = api

    def send(self, token: str, user: int, text: str) -> None:
        body: dict[str, Any] = {
            "botToken": token,
            "date": int(time.time()),
            "from": {"id": user, "first_name": "U", "is_bot": False},
            "chat": {"id": user, "type": "private", "first_name": "U"},
            "text": text,
        }
        if text.startswith("/"):
            body["entities"] = [
                {"offset": 0, "length": len(text.split()[0]), "type": "bot_command"}
            ]
            post(f"{self.api}/sendCommand", body)
        else:
            post(f"{self.api}/sendMessage", body)

    def shown(self, token: str, chat: int) -> list[dict[str, Any]]:
        """The bot's messages in the chat as they look now (edits applied), oldest first."""
        history = post(f"{self.api}/getUpdatesHistory", {"token": token})["result"]
        return [
            h["message"]
            for h in history
            if str(h.get("message", {}).get("chat_id")) == str(chat) and "text" in h["message"]
        ]

    def ask(self, token: str, chat: int, text: str, final: Final, timeout_s: float = 60) -> float:
        """Send ``text``; seconds until a new bot message in the chat is in its final state."""
        before = len(self.shown(token, chat))
        began = time.perf_counter()
        self.send(token, chat, text)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            new = self.shown(token, chat)[before:]
            if new and final(new[-1]):
                return time.perf_counter() - began
            time.sleep(0.002)
        raise SystemExit(f"no final answer to {text!r} from {token} within {timeout_s:g} s")


def familiar_final(message: dict[str, Any]) -> bool:
    return not message["text"].rstrip().endswith("…") and bool(message.get("reply_markup"))


def any_reply(message: dict[str, Any]) -> bool:
    return True


def wait_warm(user: User, token: str, chat: int, timeout_s: float = 300.0) -> float:
    """Ask /status until memory's index is healthy (the embedding model loaded)."""
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        user.ask(token, chat, "/status", any_reply)
        if "✅ memory_index" in user.shown(token, chat)[-1]["text"]:
            return time.monotonic() - began
        time.sleep(1.0)
    raise SystemExit("Familiar's memory index did not become healthy; see BENCH_LOG")


# -- the run --------------------------------------------------------------------------------------
def start(cmd: list[str], env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, cwd=ROOT, env=env, **kw)


def first_line(proc: subprocess.Popen[bytes], what: str) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if not line:
        raise SystemExit(f"{what} did not start")
    return line


def familiar_env(data: Path, base: str, stub_url: str, users: list[int]) -> dict[str, str]:
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
    return env


def measure(user: User, n: int, users: list[int]) -> dict[str, list[float]]:
    bots: list[tuple[str, str, Final]] = [
        (BASELINE, "1:baseline", any_reply),
        (FAMILIAR, "2:familiar", familiar_final),
    ]
    for _, token, final in bots:  # one answer each before timing (connections, caches)
        user.ask(token, users[0], "warm up", final)
    times: dict[str, list[float]] = {BASELINE: [], FAMILIAR: []}
    for i in range(n):
        chat = users[i % len(users)]
        for name, token, final in bots if i % 2 == 0 else bots[::-1]:
            times[name].append(user.ask(token, chat, f"message {i}", final) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=100, help="per bot")
    parser.add_argument("--users", type=int, default=5)
    parser.add_argument("--model-ms", type=float, default=200.0, help="the stub model's time")
    parser.add_argument("--baseline-bot", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_bot:
        asyncio.run(baseline_bot(*args.baseline_bot))
        return
    emulator_dir = ROOT / "tests" / "telegram" / "emulator"
    if not (emulator_dir / "node_modules").is_dir():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=emulator_dir, check=True)
    port = 19700 + os.getpid() % 200
    procs: list[subprocess.Popen[bytes]] = []
    data = Path(tempfile.mkdtemp(prefix="familiar-bench-"))
    log = open(os.environ.get("BENCH_LOG", os.devnull), "wb")  # noqa: SIM115
    users = [1000 + i for i in range(args.users)]
    try:
        emu = start(
            ["node", str(emulator_dir / "server.js"), str(port), "3600"], stdout=subprocess.PIPE
        )
        procs.append(emu)
        assert first_line(emu, "the emulator").startswith("listening")
        api, base = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/bot"
        stub_cmd = [sys.executable, "-m", "tests.stubs.anthropic_stub", "--port", "0"]
        stub_cmd += ["--reply", ANSWER, "--delay-s", str(args.model_ms / 1000)]
        stub = start(stub_cmd, stdout=subprocess.PIPE)
        procs.append(stub)
        stub_url = first_line(stub, "the stub model").split()[1]
        procs.append(
            start(
                [sys.executable, __file__, "--baseline-bot", "1:baseline", base, stub_url],
                stdout=log,
                stderr=log,
            )
        )
        familiar_bin = str(Path(sys.executable).parent / "familiar")
        env = familiar_env(data, base, stub_url, users)
        procs.append(start([familiar_bin, "run"], env=env, stdout=log, stderr=log))
        user = User(api)
        warm_s = wait_warm(user, "2:familiar", users[0])
        times = measure(user, args.messages, users)
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(data, ignore_errors=True)
    report(times, args, warm_s)


def report(times: dict[str, list[float]], args: argparse.Namespace, warm_s: float) -> None:
    print(
        f"{args.messages} messages per bot, interleaved, {args.users} users; stub model "
        f"{args.model_ms:g} ms; both poll every {POLL_S * 1000:.0f} ms; emulator "
        f"telegram-test-api 4.2.1; Familiar's memory warm after {warm_s:.0f} s"
    )
    print(f"{'bot':<10} {'p50 ms':>8} {'p90 ms':>8} {'max ms':>8}   (send -> final answer shown)")
    for name, values in times.items():
        p90 = statistics.quantiles(values, n=10)[8]
        print(f"{name:<10} {statistics.median(values):>8.1f} {p90:>8.1f} {max(values):>8.1f}")
    diffs = [f - b for f, b in zip(times[FAMILIAR], times[BASELINE], strict=True)]
    ratio = statistics.median(times[FAMILIAR]) / statistics.median(times[BASELINE])
    print(
        f"Familiar over the bare bot: median per-round difference {statistics.median(diffs):+.1f} ms,"
        f" ratio of medians {ratio:.2f}"
    )


if __name__ == "__main__":
    main()
