"""Webhook mode: a small HTTP endpoint Telegram posts updates to, behind a TLS-terminating proxy.

Hand-written on ``asyncio.start_server`` because it serves one POST route and PTB's webhook
server needs tornado (an extra dependency) and acknowledges before our inbox write: here the
answer (200) goes back only once the update is stored, so Telegram redelivers anything we did
not keep. Every request must carry ``X-Telegram-Bot-Api-Secret-Token``; others get 403.

The endpoint faces the internet, so it is bounded: at most ``max_connections`` are served at
once (the rest get 503 at once, unread), a request must arrive whole within ``read_timeout_s``
(a client trickling its headers is cut off with 408), and the warnings a flood of forged or
excess requests causes are throttled to one line per ``warn_interval_s``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
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
        read_timeout_s: float = 10.0,
        warn_interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host, self.port = parse_listen(listen)
        self.path = urlparse(public_url).path or "/"
        self.secret = secret
        self.receive = receive
        self.max_connections = max_connections
        self.read_timeout_s = read_timeout_s
        self._server: asyncio.Server | None = None
        self._requests: set[asyncio.Task[Any]] = set()
        self._bad_secret = ThrottledWarning(
            "webhook request without the right secret token refused", warn_interval_s, clock
        )
        self._over_cap = ThrottledWarning(
            f"webhook connection refused with 503: {max_connections} already in hand",
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
        if self._requests:
            _, left = await asyncio.wait(list(self._requests), timeout=grace_s)
            for task in left:
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        self._bad_secret.flush()
        self._over_cap.flush()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._requests) >= self.max_connections:
            self._refuse_busy(writer)
            return
        task = asyncio.current_task()
        if task is not None:
            self._requests.add(task)
            task.add_done_callback(self._requests.discard)
        status = 500
        try:
            status = await self._request(reader)
        except TimeoutError:
            status = 408
        except (ValueError, asyncio.IncompleteReadError, ConnectionError):
            status = 400
        except Exception:
            logger.exception("webhook request failed")
            status = 500
        reason = REASONS.get(status, "Error")
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

    def _refuse_busy(self, writer: asyncio.StreamWriter) -> None:
        """503 without reading anything: reading (or lingering) would let a flood keep tying
        up the very resources the cap protects. Telegram retries a 503 later."""
        self._over_cap.hit()
        try:
            writer.write(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
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

    async def _request(self, reader: asyncio.StreamReader) -> int:
        async with asyncio.timeout(self.read_timeout_s):
            update = await self._read(reader)
        if isinstance(update, int):
            return update
        try:
            async with asyncio.timeout(RECEIVE_TIMEOUT_S):
                await self.receive(update)
        except (
            TimeoutError
        ):  # ours, or one from inside receive: either way nothing was kept for sure
            logger.exception("keeping a webhook update timed out; answering 500")
            return 500
        return 200

    async def _read(self, reader: asyncio.StreamReader) -> dict[str, Any] | int:
        """The request's update, or the status that refuses it."""
        request_line = (await reader.readline()).decode("latin-1").split()
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADER_LINES + 1):  # counts lines: a repeated header counts too
            line = (await reader.readline()).decode("latin-1")
            if line in ("\r\n", "\n", ""):
                break
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        else:
            return 400
        if (
            len(request_line) < 2
            or request_line[0] != "POST"
            or request_line[1].split("?")[0] != self.path
        ):
            return 404
        if not hmac.compare_digest(headers.get(SECRET_HEADER, "").encode(), self.secret.encode()):
            self._bad_secret.hit()
            return 403
        length = int(headers.get("content-length", "0"))
        if length <= 0 or length > MAX_BODY:
            return 413 if length > MAX_BODY else 400
        update = json.loads(await reader.readexactly(length))
        if not isinstance(update, dict):
            return 400
        return update
