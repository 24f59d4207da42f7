"""The webhook server's bounds, over real TCP on 127.0.0.1: forged-request warnings are throttled,
connections over the cap get 503 unread, and a client too slow with its request is cut off.

These drive ``WebhookServer`` in process (no daemon, no emulator), so each test takes well under
a second or two; the stalled connections are plain sockets that send part of a request and wait.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from loguru import logger

from bot.telegram.webhook import WebhookServer
from tests.telegram.conftest import free_port

pytestmark = pytest.mark.timeout(30)

SECRET = "tok"
PATH = "/hook"
REFUSED = "webhook request without the right secret token refused"


class Kept:
    """The receiver: keeps what reaches it, as the inbox would."""

    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []

    async def __call__(self, update: dict[str, Any]) -> None:
        self.updates.append(update)


@asynccontextmanager
async def serving(kept: Kept, **limits: Any) -> AsyncIterator[WebhookServer]:
    port = free_port()
    server = WebhookServer(
        f"127.0.0.1:{port}", f"http://127.0.0.1:{port}{PATH}", SECRET, kept, **limits
    )
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@asynccontextmanager
async def warnings() -> AsyncIterator[list[str]]:
    """The WARNING lines loguru writes while the block runs."""
    lines: list[str] = []
    sink = logger.add(
        lambda m: lines.append(m.record["message"]), level="WARNING", format="{message}"
    )
    try:
        yield lines
    finally:
        logger.remove(sink)


def request(secret: str, update_id: int = 1) -> bytes:
    body = json.dumps({"update_id": update_id}).encode()
    return (
        f"POST {PATH} HTTP/1.1\r\nHost: x\r\nX-Telegram-Bot-Api-Secret-Token: {secret}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def post(server: WebhookServer, raw: bytes) -> bytes:
    """Send ``raw`` on a fresh connection; everything the server answers before it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(raw)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


def refusal_lines(lines: list[str]) -> list[str]:
    return [x for x in lines if x.startswith(REFUSED)]


def test_forged_requests_log_one_line_then_a_count_per_interval() -> None:
    now = [1000.0]
    clock: Callable[[], float] = lambda: now[0]  # noqa: E731

    async def scenario() -> None:
        kept = Kept()
        async with warnings() as lines, serving(kept, warn_interval_s=60.0, clock=clock) as server:
            assert (await post(server, request("wrong"))).startswith(b"HTTP/1.1 403")
            assert refusal_lines(lines) == [REFUSED]
            for i in range(20):  # a flood within the minute: answered, not logged
                now[0] += 1.0
                assert (await post(server, request(f"forged-{i}"))).startswith(b"HTTP/1.1 403")
            assert refusal_lines(lines) == [REFUSED]
            now[0] = 1000.0 + 61.0  # the minute is over: the next one reports all since the first
            assert (await post(server, request(""))).startswith(b"HTTP/1.1 403")
            assert refusal_lines(lines) == [REFUSED, f"{REFUSED} 21 times in the last 61 s"]
            # The right secret is still served, and logs no refusal.
            assert (await post(server, request(SECRET, 7))).startswith(b"HTTP/1.1 200")
            assert len(refusal_lines(lines)) == 2
        assert kept.updates == [{"update_id": 7}]

    asyncio.run(scenario())


def test_the_tail_of_a_flood_that_stops_is_still_reported() -> None:
    async def scenario() -> None:
        async with warnings() as lines, serving(Kept(), warn_interval_s=0.3) as server:
            for i in range(10):
                await post(server, request(f"forged-{i}"))
            assert refusal_lines(lines) == [REFUSED]
            await asyncio.sleep(0.6)  # no further request comes: the timer reports the other 9
            assert len(refusal_lines(lines)) == 2
            assert refusal_lines(lines)[1].startswith(f"{REFUSED} 9 times in the last ")

    asyncio.run(scenario())


def test_a_connection_over_the_cap_gets_503_unread_and_the_slot_comes_back() -> None:
    async def scenario() -> None:
        kept = Kept()
        async with (
            warnings() as lines,
            serving(kept, max_connections=3, read_timeout_s=10.0) as server,
        ):
            stalled = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(3)]
            for _, writer in stalled:  # half a request each, then nothing: they hold their slots
                writer.write(f"POST {PATH} HTTP/1.1\r\n".encode())
                await writer.drain()
            await asyncio.sleep(0.2)

            started = time.monotonic()
            answer = await post(server, request(SECRET, 1))
            assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
            assert time.monotonic() - started < 1.0  # at once, not after the stalled ones
            assert kept.updates == []  # refused before its request was read
            assert any("503" in x for x in lines)

            # One stalled client gives up: its slot is free for the next request.
            reader, writer = stalled.pop()
            writer.close()
            await asyncio.sleep(0.2)
            assert (await post(server, request(SECRET, 2))).startswith(b"HTTP/1.1 200")
            assert kept.updates == [{"update_id": 2}]
            for _, writer in stalled:
                writer.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("how", ["stalls", "trickles"])
def test_a_client_too_slow_with_its_request_is_cut_off(how: str) -> None:
    async def scenario() -> None:
        kept = Kept()
        async with serving(kept, read_timeout_s=0.3) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            started = time.monotonic()
            writer.write(f"POST {PATH} HTTP/1.1\r\n".encode())

            async def trickle() -> None:  # a header line every 0.1 s: never idle, never done
                for i in range(100):
                    writer.write(f"X-Slow-{i}: 1\r\n".encode())
                    await asyncio.sleep(0.1)

            slow = asyncio.create_task(trickle()) if how == "trickles" else None
            try:
                answer = await asyncio.wait_for(reader.read(), 5)
                elapsed = time.monotonic() - started
            finally:
                if slow is not None:
                    slow.cancel()
                writer.close()
            assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
            assert 0.25 <= elapsed < 2.0, elapsed
            assert kept.updates == []
            # The server is not worse for it.
            assert (await post(server, request(SECRET, 3))).startswith(b"HTTP/1.1 200")
            assert kept.updates == [{"update_id": 3}]

    asyncio.run(scenario())
