"""Webhook mode: a small HTTP endpoint Telegram posts updates to, behind a TLS-terminating proxy.

Hand-written on ``asyncio.start_server`` because it serves one POST route and PTB's webhook
server needs tornado (an extra dependency) and acknowledges before our inbox write: here the
answer (200) goes back only once the update is stored, so Telegram redelivers anything we did
not keep. Every request must carry ``X-Telegram-Bot-Api-Secret-Token``; others get 403.

The endpoint faces the internet, so it is bounded, in two stages. A connection first sends its
headers; only once they carry the right secret does it take one of ``max_connections`` slots
(over them: 503, the body unread) and have its body read. Connections still sending headers are
held apart, up to ``max_unverified`` (four times ``max_connections`` by default); past that the
oldest of them is dropped with 503 to make room, so half-sent requests, which need no secret,
can never keep a signed update out. A request must arrive whole within ``read_timeout_s`` (a
client trickling its headers is cut off with 408), and the warnings a flood of forged or excess
requests causes are throttled to one line per ``warn_interval_s``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlparse

from loguru import logger

MAX_BODY = 1 << 20
MAX_HEADER_LINES = 100
LINGER_S, LINGER_BYTES = 2.0, 8 << 20
RECEIVE_TIMEOUT_S = 30.0  # the inbox write; past it Telegram gets 500 and redelivers
REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    413: "Payload Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
SECRET_HEADER = "x-telegram-bot-api-secret-token"
Receiver = Callable[[dict[str, Any]], Awaitable[None]]


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return (host.strip("[]") or "127.0.0.1"), int(port)


class ThrottledWarning:
    """A warning every request of a flood would repeat, logged at most once per ``interval_s``:
    the first occurrence as it is, later ones as a count of the occurrences since the last line.

    The count goes out when the interval is over, by a timer (so the tail of a flood that stops
    is not left unsaid) or by the next occurrence, whichever comes first; ``flush()`` reports
    what is left at shutdown."""

    def __init__(
        self, message: str, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.message = message
        self.interval_s = interval_s
        self.clock = clock
        self._unreported = 0
        self._last_line = float("-inf")
        self._timer: asyncio.TimerHandle | None = None

    def hit(self) -> None:
        self._unreported += 1
        now = self.clock()
        quiet_until = self._last_line + self.interval_s
        if now >= quiet_until:
            self._report(now)
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(quiet_until - now, self.flush)

    def flush(self) -> None:
        self._report(self.clock())

    def _report(self, now: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._unreported == 1:
            logger.warning(self.message)
        elif self._unreported > 1:
            logger.warning(
                "{} {} times in the last {:.0f} s",
                self.message,
                self._unreported,
                now - self._last_line,
            )
        else:
            return
        self._unreported = 0
        self._last_line = now


class WebhookServer:
    def __init__(
        self,
        listen: str,
        public_url: str,
        secret: str,
        receive: Receiver,
        *,
        max_connections: int = 64,
        max_unverified: int | None = None,
        read_timeout_s: float = 10.0,
        warn_interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host, self.port = parse_listen(listen)
        self.path = urlparse(public_url).path or "/"
        self.secret = secret
        self.receive = receive
        self.max_connections = max_connections
        self.max_unverified = max_unverified or 4 * max_connections
        self.read_timeout_s = read_timeout_s
        self._server: asyncio.Server | None = None
        # Connections still sending their headers, oldest first (the first to go when full).
        self._unverified: OrderedDict[asyncio.Task[Any], asyncio.StreamWriter] = OrderedDict()
        self._evicted: set[asyncio.Task[Any]] = set()
        self._answered: set[asyncio.Task[Any]] = set()  # their status line went out
        self._requests: set[asyncio.Task[Any]] = set()  # signed, holding a slot
        self._bad_secret = ThrottledWarning(
            "webhook request without the right secret token refused", warn_interval_s, clock
        )
        self._over_cap = ThrottledWarning(
            f"webhook connection refused with 503: {max_connections} already in hand",
            warn_interval_s,
            clock,
        )
        self._dropped = ThrottledWarning(
            f"webhook connection dropped with 503: {self.max_unverified} others were still "
            "sending their headers",
            warn_interval_s,
            clock,
        )

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        logger.info("webhook listening on {}:{} at {}", self.host, self.port, self.path)

    async def close(self, grace_s: float = 2.0) -> None:
        """Stop listening; requests in hand get ``grace_s`` to finish, then are cut off (no 200
        went out for those, so Telegram sends them again and the inbox drops what it has)."""
        if self._server is not None:
            self._server.close()
        for task in list(self._unverified):  # nothing of theirs was taken in yet
            task.cancel()
        if self._requests:
            _, left = await asyncio.wait(list(self._requests), timeout=grace_s)
            for task in left:
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        self._bad_secret.flush()
        self._over_cap.flush()
        self._dropped.flush()

    def _admit(self, task: asyncio.Task[Any], writer: asyncio.StreamWriter) -> None:
        """Hold ``task`` among the connections sending headers, dropping the oldest when full."""
        self._unverified[task] = writer
        while len(self._unverified) > self.max_unverified:
            oldest, _ = self._unverified.popitem(last=False)
            self._evicted.add(oldest)
            oldest.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._admit(task, writer)
        try:
            await self._respond(reader, writer, task)
        except asyncio.CancelledError:
            if task not in self._evicted:
                writer.close()
                raise  # the server is closing
            self._dropped.hit()
            if task in self._answered:
                writer.close()  # refused already, and reading its rest away: just go
            else:
                self._refuse_unread(writer)
        finally:
            # A refused request stays among the unverified while it lingers, so a flood of
            # them is bounded (and dropped oldest first) like one of half-sent requests.
            self._unverified.pop(task, None)
            self._requests.discard(task)
            self._evicted.discard(task)
            self._answered.discard(task)

    async def _respond(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, task: asyncio.Task[Any]
    ) -> None:
        status = 500
        try:
            status = await self._request(reader, task)
        except TimeoutError:
            status = 408
        except (ValueError, asyncio.IncompleteReadError, ConnectionError):
            status = 400
        except Exception:
            logger.exception("webhook request failed")
            status = 500
        if status == 503:
            self._over_cap.hit()
            self._refuse_unread(writer)
            return
        reason = REASONS.get(status, "Error")
        self._answered.add(task)
        try:
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
            if status != 200:
                await self._linger(reader, writer)
        except ConnectionError:
            pass
        finally:
            writer.close()

    @staticmethod
    def _refuse_unread(writer: asyncio.StreamWriter) -> None:
        """503 without reading on: reading (or lingering) would let a flood keep tying up the
        very resources the caps protect. Telegram retries a 503 later."""
        try:
            writer.write(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError, RuntimeError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read away a refused request's unread body before closing (bounded in bytes and time).

        Closing a socket with unread data sends a TCP reset, which can destroy the answer in
        flight: a client still uploading an oversized body would see "connection reset" instead
        of 413 (the "lingering close" web servers do)."""
        try:
            if writer.can_write_eof():
                writer.write_eof()
            async with asyncio.timeout(LINGER_S):
                left = LINGER_BYTES
                while left > 0 and (chunk := await reader.read(min(left, 1 << 16))):
                    left -= len(chunk)
        except (TimeoutError, ConnectionError, OSError):
            pass

    async def _request(self, reader: asyncio.StreamReader, task: asyncio.Task[Any]) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.read_timeout_s
        async with asyncio.timeout_at(deadline):
            length = await self._read_head(reader)
        if length < 0:
            return -length
        # Signed: out of the header stage, into a slot of its own, or 503.
        self._unverified.pop(task, None)
        if len(self._requests) >= self.max_connections:
            return 503
        self._requests.add(task)
        async with asyncio.timeout_at(deadline):
            update = json.loads(await reader.readexactly(length))
        if not isinstance(update, dict):
            return 400
        try:
            async with asyncio.timeout(RECEIVE_TIMEOUT_S):
                await self.receive(update)
        except (
            TimeoutError
        ):  # ours, or one from inside receive: either way nothing was kept for sure
            logger.exception("keeping a webhook update timed out; answering 500")
            return 500
        return 200

    async def _read_head(self, reader: asyncio.StreamReader) -> int:
        """The request line and headers: the body's length, or minus the status refusing it."""
        request_line = (await reader.readline()).decode("latin-1").split()
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADER_LINES + 1):  # counts lines: a repeated header counts too
            line = (await reader.readline()).decode("latin-1")
            if line in ("\r\n", "\n", ""):
                break
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        else:
            return -400
        if (
            len(request_line) < 2
            or request_line[0] != "POST"
            or request_line[1].split("?")[0] != self.path
        ):
            return -404
        if not hmac.compare_digest(headers.get(SECRET_HEADER, "").encode(), self.secret.encode()):
            self._bad_secret.hit()
            return -403
        length = int(headers.get("content-length", "0"))
        if length <= 0 or length > MAX_BODY:
            return -413 if length > MAX_BODY else -400
        return length
