"""Webhook mode end to end: the real daemon (``familiar run``, ``FAMILIAR_TELEGRAM__MODE=webhook``)
listening on 127.0.0.1, the Telegram emulator as its Bot API (setWebhook, sendMessage) and as
Telegram posting updates with the secret header; hostile requests are posted with httpx.

One daemon serves the whole module (starting one costs seconds); each test talks in chats of
its own and uses update ids of its own, so the tests do not see each other's traffic.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import require_tool
from tests.telegram.conftest import DaemonRun, Emulator, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
ANN, BOB, CID, DAN, EVE, FAY, GUS = (
    7101,
    7102,
    7103,
    7104,
    7105,
    7106,
    7107,
)  # all allowed: an accepted update gets an answer
_update_ids = count(900_001)  # far above the ids the emulator hands out


@dataclass
class Hook:
    run: DaemonRun
    emulator: Emulator
    token: str
    secret: str
    url: str  # the public URL (no proxy here: it is the listen address itself)
    port: int

    def post(
        self,
        body: bytes | str,
        secret: str | None = None,
        path: str | None = None,
        headers: dict[str, str] | None = None,
        method: str = "POST",
    ) -> httpx.Response:
        head = {"Content-Type": "application/json", **(headers or {})}
        if secret is not None:
            head[SECRET_HEADER] = secret
        target = f"http://127.0.0.1:{self.port}{path}" if path is not None else self.url
        content = body.encode() if isinstance(body, str) else body
        return httpx.request(method, target, content=content, headers=head, timeout=10)

    def inbox(self, update_id: int) -> list[tuple[Any, ...]]:
        return self.run.query("SELECT update_id, state FROM inbox WHERE update_id = ?", update_id)

    def alive(self) -> bool:
        return self.run.proc is not None and self.run.proc.poll() is None


def update(user_id: int, text: str, update_id: int | None = None) -> dict[str, Any]:
    update_id = update_id if update_id is not None else next(_update_ids)
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": int(time.time()),
            "text": text,
            "from": {"id": user_id, "is_bot": False, "first_name": "U"},
            "chat": {"id": user_id, "type": "private", "first_name": "U"},
        },
    }


def _wait_listening(port: int, run: DaemonRun, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert run.proc is not None and run.proc.poll() is None, run.log_text()[-3000:]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"the webhook server did not listen on {port}:\n{run.log_text()[-3000:]}")


def _webhook_calls(emulator: Emulator, token: str) -> list[dict[str, Any]]:
    return list(emulator.post("webhookCalls", {"token": token})["result"])


@pytest.fixture(scope="module")
def hook(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hook]:
    require_tool("familiar")
    root: Path = tmp_path_factory.mktemp("webhook")
    port = free_port()
    token = f"{os.getpid()}77:webhook-token"
    secret = "s3cret_" + secrets.token_urlsafe(16)
    url = f"http://127.0.0.1:{port}/telegram/{secrets.token_hex(4)}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAMILIAR_")}
    env.update(
        {
            "FAMILIAR_DATA_DIR": str(root / "data"),
            "FAMILIAR_TELEGRAM__TOKEN": token,
            "FAMILIAR_TELEGRAM__BASE_URL": emulator.base_url,
            "FAMILIAR_TELEGRAM__CHAT_SEND_INTERVAL_S": "0.05",
            "FAMILIAR_LOG__LEVEL": "DEBUG",
        }
    )
    run = DaemonRun(root / "data", env).start(
        mode="webhook",
        webhook_listen=f"127.0.0.1:{port}",
        webhook_url=url,
        webhook_secret=secret,
        allowed_users=",".join(str(u) for u in (ANN, BOB, CID, DAN, EVE, FAY, GUS)),
    )
    try:
        _wait_listening(port, run, 30)
        deadline = time.monotonic() + 15
        while not _webhook_calls(emulator, token) and time.monotonic() < deadline:
            time.sleep(0.1)
        yield Hook(run, emulator, token, secret, url, port)
    finally:
        run.stop()
    assert secret not in run.log_text(), "the webhook secret was logged"


def test_set_webhook_gets_the_public_url_and_the_secret(hook: Hook) -> None:
    calls = _webhook_calls(hook.emulator, hook.token)
    assert [c["method"] for c in calls] == ["setWebhook"]  # and no deleteWebhook in webhook mode
    params = calls[0]["params"]
    assert params["url"] == hook.url
    assert params["secret_token"] == hook.secret
    # Pending updates are kept for us: dropping them would lose messages sent while we were down.
    assert params.get("drop_pending_updates") in ("false", False)
    assert set(json.loads(params["allowed_updates"])) >= {
        "message",
        "edited_message",
        "callback_query",
        "message_reaction",
    }


def test_an_update_with_the_right_secret_is_stored_before_200_and_answered(hook: Hook) -> None:
    body = update(ANN, "hello through the webhook")
    resp = hook.post(json.dumps(body), secret=hook.secret)
    assert resp.status_code == 200
    assert hook.inbox(body["update_id"]), "200 came back before the update was stored"
    answers = hook.emulator.wait_bot_messages(hook.token, ANN, 1)
    assert len(answers) == 1
    assert answers[0]["message"].get("reply_markup")  # an assistant answer, with feedback buttons
    rows = hook.run.wait_for(
        f"SELECT state FROM inbox WHERE update_id = {body['update_id']}", lambda r: r == [("done",)]
    )
    assert rows == [("done",)]


def test_telegram_delivering_through_the_emulator_reaches_the_bot(hook: Hook) -> None:
    # The emulator now plays Telegram: it posts the user's command with the secret header.
    hook.emulator.say(hook.token, BOB, "/help")
    answers = hook.emulator.wait_bot_messages(hook.token, BOB, 1)
    assert answers and "/remember" in answers[0]["message"]["text"]


@pytest.mark.parametrize("secret", [None, "", "wrong", "S3CRET_", "{secret}x", "{secret_prefix}"])
def test_a_wrong_or_missing_secret_is_refused_and_nothing_is_kept(
    hook: Hook, secret: str | None
) -> None:
    if secret is not None:
        secret = secret.format(secret=hook.secret, secret_prefix=hook.secret[:-1])
    body = update(CID, "let me in")
    resp = hook.post(json.dumps(body), secret=secret)
    assert resp.status_code in (401, 403)
    assert hook.inbox(body["update_id"]) == []
    time.sleep(0.3)
    assert hook.emulator.bot_messages(hook.token, CID) == []


def test_malformed_and_oversized_requests_get_4xx_and_the_daemon_keeps_serving(hook: Hook) -> None:
    good = hook.secret
    cases: list[tuple[str, httpx.Response]] = [
        ("not json", hook.post("{not json", secret=good)),
        ("truncated", hook.post(json.dumps(update(DAN, "x"))[:-5], secret=good)),
        ("not utf-8", hook.post(b"\xff\xfe{}", secret=good)),
        ("a list", hook.post("[1, 2]", secret=good)),
        ("a string", hook.post('"update"', secret=good)),
        ("empty", hook.post("", secret=good)),
        (
            "oversized",
            hook.post(b'{"update_id": 899999, "pad": "' + b"x" * (3 << 20) + b'"}', secret=good),
        ),
        ("wrong path", hook.post(json.dumps(update(DAN, "x")), secret=good, path="/other")),
        ("GET", hook.post("", secret=good, method="GET")),
    ]
    for name, resp in cases:
        assert 400 <= resp.status_code < 500, (name, resp.status_code)
    # What no HTTP client sends: a bad Content-Length, chunked bodies, a body cut short, garbage.
    path = httpx.URL(hook.url).raw_path.decode()
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\n{SECRET_HEADER}: {good}\r\n"
    for name, raw in [
        ("bad length", head + "Content-Length: abc\r\n\r\n{}"),
        ("negative length", head + "Content-Length: -5\r\n\r\n{}"),
        ("chunked", head + "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"),
        ("cut short", head + 'Content-Length: 100\r\n\r\n{"upd'),
        ("garbage", "\x00\x01 hello\r\n\r\n"),
    ]:
        with socket.create_connection(("127.0.0.1", hook.port), timeout=5) as s:
            s.sendall(raw.encode("latin-1"))
            s.shutdown(socket.SHUT_WR)  # the client is done: the server must answer, not hang
            status = s.recv(100)
        assert status.startswith(b"HTTP/1.1 4"), (name, status)
    # A client that writes the whole oversized body before reading (as many do) still reads 413,
    # not a connection reset from a server that closed on unread data.
    with socket.create_connection(("127.0.0.1", hook.port), timeout=5) as s:
        s.sendall((head + f"Content-Length: {6 << 20}\r\n\r\n").encode() + b"x" * (6 << 20))
        assert s.recv(100).startswith(b"HTTP/1.1 413")
    assert hook.alive()
    assert hook.inbox(899999) == []

    body = update(DAN, "still there?")
    assert hook.post(json.dumps(body), secret=good).status_code == 200
    assert len(hook.emulator.wait_bot_messages(hook.token, DAN, 1)) == 1


def test_a_redelivered_update_is_handled_once(hook: Hook) -> None:
    body = update(EVE, "only once please")
    payload = json.dumps(body)
    assert hook.post(payload, secret=hook.secret).status_code == 200
    assert hook.post(payload, secret=hook.secret).status_code == 200  # before it was handled
    hook.emulator.wait_bot_messages(hook.token, EVE, 1)
    hook.run.wait_for(
        f"SELECT state FROM inbox WHERE update_id = {body['update_id']}", lambda r: r == [("done",)]
    )
    assert hook.post(payload, secret=hook.secret).status_code == 200  # after it was handled
    time.sleep(0.5)
    assert len(hook.emulator.bot_messages(hook.token, EVE)) == 1
    assert hook.inbox(body["update_id"]) == [(body["update_id"], "done")]


def test_an_edited_message_is_corrected_in_memory_and_answered_again(hook: Hook) -> None:
    first = update(FAY, "the gate code is 1234")
    assert hook.post(json.dumps(first), secret=hook.secret).status_code == 200
    hook.emulator.wait_bot_messages(hook.token, FAY, 1)
    message_id = first["message"]["message_id"]
    hook.run.wait_for(
        f"SELECT state FROM inbox WHERE update_id = {first['update_id']}",
        lambda r: r == [("done",)],
    )
    edit = {
        "update_id": next(_update_ids),
        "edited_message": {
            **first["message"],
            "text": "the gate code is 4321",
            "edit_date": int(time.time()),
        },
    }
    assert hook.post(json.dumps(edit), secret=hook.secret).status_code == 200
    answers = hook.emulator.wait_bot_messages(hook.token, FAY, 2)
    assert len(answers) == 2  # the newest message, edited at once: answered again
    rows = hook.run.wait_for(
        f"SELECT text FROM messages WHERE telegram_message_id = {message_id} AND role = 'user'",
        lambda r: r == [("the gate code is 4321",)],
    )
    assert rows == [("the gate code is 4321",)]
    # A stranger's edit, and a caption edited, change nothing and get no answer.
    stranger = {"update_id": next(_update_ids), "edited_message": {**edit["edited_message"]}}
    stranger["edited_message"]["from"] = {"id": 7999, "is_bot": False, "first_name": "Z"}
    caption = {"update_id": next(_update_ids), "edited_message": {**edit["edited_message"]}}
    del caption["edited_message"]["text"]
    caption["edited_message"]["caption"] = "the gate code is 0000"
    for body in (stranger, caption):
        assert hook.post(json.dumps(body), secret=hook.secret).status_code == 200
        hook.run.wait_for(
            f"SELECT state FROM inbox WHERE update_id = {body['update_id']}",
            lambda r: r == [("done",)],
        )
    assert len(hook.emulator.bot_messages(hook.token, FAY)) == 2
    assert hook.run.query(
        f"SELECT text FROM messages WHERE telegram_message_id = {message_id} AND role = 'user'"
    ) == [("the gate code is 4321",)]


def test_a_reaction_on_an_answer_is_a_vote(hook: Hook) -> None:
    first = update(GUS, "what is a good name for a goldfish?")
    assert hook.post(json.dumps(first), secret=hook.secret).status_code == 200
    [answer] = hook.emulator.wait_bot_messages(hook.token, GUS, 1)

    def react(new: list[str], old: list[str]) -> None:
        body = {
            "update_id": next(_update_ids),
            "message_reaction": {
                "chat": {"id": GUS, "type": "private", "first_name": "U"},
                "message_id": answer["messageId"],
                "user": {"id": GUS, "is_bot": False, "first_name": "U"},
                "date": int(time.time()),
                "old_reaction": [{"type": "emoji", "emoji": e} for e in old],
                "new_reaction": [{"type": "emoji", "emoji": e} for e in new],
            },
        }
        assert hook.post(json.dumps(body), secret=hook.secret).status_code == 200
        hook.run.wait_for(
            f"SELECT state FROM inbox WHERE update_id = {body['update_id']}",
            lambda r: r == [("done",)],
        )

    react(["👍"], [])
    assert hook.run.query(f"SELECT rating FROM feedback WHERE user_id = {GUS}") == [(1,)]
    react([], ["👍"])
    assert hook.run.query(f"SELECT rating FROM feedback WHERE user_id = {GUS}") == []


def test_the_server_answers_200_only_after_the_update_is_kept_and_500_when_it_is_not() -> None:
    """The webhook server itself, with a receiver that holds the write: Telegram must not get its
    200 while the update is not durable, and gets 500 (so it redelivers) when keeping it failed."""
    from bot.telegram.webhook import WebhookServer

    async def scenario() -> None:
        release = asyncio.Event()
        kept: list[dict[str, Any]] = []

        async def receive(update: dict[str, Any]) -> None:
            if update["update_id"] == 2:
                raise RuntimeError("the disk is full")
            await release.wait()
            kept.append(update)

        port = free_port()
        url = f"http://127.0.0.1:{port}/hook"
        server = WebhookServer(f"127.0.0.1:{port}", url, "tok", receive)
        await server.start()
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                pending = asyncio.create_task(
                    client.post(url, json={"update_id": 1}, headers={SECRET_HEADER: "tok"})
                )
                await asyncio.sleep(0.3)
                assert not pending.done()  # still storing: no answer yet
                release.set()
                assert (await pending).status_code == 200
                assert kept == [{"update_id": 1}]
                failed = await client.post(
                    url, json={"update_id": 2}, headers={SECRET_HEADER: "tok"}
                )
                assert failed.status_code == 500
        finally:
            await server.close()

    asyncio.run(scenario())


def test_a_taken_listen_port_stops_the_daemon_with_a_clear_message(emulator, daemon) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run, _ = daemon(
            mode="webhook",
            webhook_listen=f"127.0.0.1:{port}",
            webhook_url=f"http://127.0.0.1:{port}/hook",
        )
        assert run.proc is not None
        assert run.proc.wait(60) != 0  # a start under coverage, then the bounded stop
    assert "cannot listen on '127.0.0.1:" in run.log_text()
