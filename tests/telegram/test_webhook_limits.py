"""The webhook server's bounds, over real TCP on 127.0.0.1: forged-request warnings are throttled,
signed requests over the cap get 503 unread, half-sent requests without the secret never keep a
signed one out (the oldest is dropped past a bound), and a client too slow is cut off.

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


class Held(Kept):
    """A receiver that keeps each update only once ``release`` is set: signed requests in hand."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def __call__(self, update: dict[str, Any]) -> None:
        await self.release.wait()
        await super().__call__(update)


async def half_sent(server: WebhookServer, n: int) -> list[asyncio.StreamWriter]:
    """``n`` connections that send the start of a request and no secret, then nothing."""
    writers = []
    for _ in range(n):
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(f"POST {PATH} HTTP/1.1\r\nHost: x\r\n".encode())
        await writer.drain()
        writers.append(writer)
    await asyncio.sleep(0.2)
    return writers


def test_a_signed_request_over_the_cap_gets_503_unread_and_the_slot_comes_back() -> None:
    async def scenario() -> None:
        kept = Held()
        async with (
            warnings() as lines,
            serving(kept, max_connections=3, read_timeout_s=10.0) as server,
        ):
            in_hand = [asyncio.create_task(post(server, request(SECRET, i))) for i in (1, 2, 3)]
            await asyncio.sleep(0.3)  # all three wait in the receiver, each holding a slot

            started = time.monotonic()
            answer = await post(server, request(SECRET, 4))
            assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
            assert time.monotonic() - started < 1.0  # at once, not after the ones in hand
            assert any("503" in x for x in lines)

            kept.release.set()
            assert all(a.startswith(b"HTTP/1.1 200") for a in await asyncio.gather(*in_hand))
            assert (await post(server, request(SECRET, 5))).startswith(b"HTTP/1.1 200")
            assert sorted(u["update_id"] for u in kept.updates) == [1, 2, 3, 5]

    asyncio.run(scenario())


def test_half_sent_requests_without_the_secret_never_keep_a_signed_update_out() -> None:
    async def scenario() -> None:
        kept = Kept()
        async with serving(kept, max_connections=64, read_timeout_s=10.0) as server:
            stalled = await half_sent(server, 64)
            started = time.monotonic()
            answer = await post(server, request(SECRET, 1))
            assert answer.startswith(b"HTTP/1.1 200"), answer
            assert time.monotonic() - started < 1.0
            assert kept.updates == [{"update_id": 1}]
            for writer in stalled:
                writer.close()

    asyncio.run(scenario())


def test_past_the_unverified_bound_the_oldest_half_sent_request_is_dropped() -> None:
    async def scenario() -> None:
        kept = Kept()
        async with (
            warnings() as lines,
            serving(kept, max_connections=2, max_unverified=4, read_timeout_s=10.0) as server,
        ):
            readers, writers = [], []
            for _ in range(6):
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(f"POST {PATH} HTTP/1.1\r\n".encode())
                await writer.drain()
                readers.append(reader)
                writers.append(writer)
                await asyncio.sleep(0.05)
            # The two oldest made room for the newer ones: 503, at once.
            for reader in readers[:2]:
                answer = await asyncio.wait_for(reader.read(), 2)
                assert answer.startswith(b"HTTP/1.1 503"), answer
            assert (await post(server, request(SECRET, 9))).startswith(b"HTTP/1.1 200")
            assert kept.updates == [{"update_id": 9}]
            assert any("still sending their headers" in x for x in lines)
            for writer in writers:
                writer.close()

    asyncio.run(scenario())


def test_forged_requests_lingering_after_403_are_bounded_like_half_sent_ones() -> None:
    async def scenario() -> None:
        kept = Kept()
        async with (
            warnings() as lines,
            serving(kept, max_connections=2, max_unverified=4, read_timeout_s=10.0) as server,
        ):
            opened = []
            for i in range(8):  # forged heads announcing a big body, then part of it, slowly
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(
                    f"POST {PATH} HTTP/1.1\r\nX-Telegram-Bot-Api-Secret-Token: forged-{i}\r\n"
                    f"Content-Length: 5000000\r\n\r\n".encode()
                    + b"x" * 1000
                )
                await writer.drain()
                opened.append((reader, writer))
                await asyncio.sleep(0.05)
            started = time.monotonic()
            first = await asyncio.wait_for(opened[0][0].read(), 5)
            # Refused with 403, then dropped for newer ones well before its 2 s linger ran out.
            assert first.startswith(b"HTTP/1.1 403") and time.monotonic() - started < 1.0
            assert (await post(server, request(SECRET, 5))).startswith(b"HTTP/1.1 200")
            assert kept.updates == [{"update_id": 5}]
            assert any("still sending their headers" in x for x in lines)
            for _, writer in opened:
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
