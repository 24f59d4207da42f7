"""Webhook mode: a small HTTP endpoint Telegram posts updates to, behind a TLS-terminating proxy.

Hand-written on ``asyncio.start_server`` because it serves one POST route and PTB's webhook
server needs tornado (an extra dependency) and acknowledges before our inbox write: here the
answer (200) goes back only once the update is stored, so Telegram redelivers anything we did
not keep. Every request must carry ``X-Telegram-Bot-Api-Secret-Token``; others get 403.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlparse

from loguru import logger

MAX_BODY = 1 << 20
MAX_HEADER_LINES = 100
LINGER_S, LINGER_BYTES = 2.0, 8 << 20
REASONS = {
    200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
    413: "Payload Too Large", 500: "Internal Server Error",
}
SECRET_HEADER = "x-telegram-bot-api-secret-token"
Receiver = Callable[[dict[str, Any]], Awaitable[None]]


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return (host.strip("[]") or "127.0.0.1"), int(port)


class WebhookServer:
    def __init__(self, listen: str, public_url: str, secret: str, receive: Receiver) -> None:
        self.host, self.port = parse_listen(listen)
        self.path = urlparse(public_url).path or "/"
        self.secret = secret
        self.receive = receive
        self._server: asyncio.Server | None = None
        self._requests: set[asyncio.Task[Any]] = set()

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

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._requests.add(task)
            task.add_done_callback(self._requests.discard)
        status = 500
        try:
            status = await asyncio.wait_for(self._request(reader), 30.0)
        except (TimeoutError, ValueError, asyncio.IncompleteReadError, ConnectionError):
            status = 400
        except Exception:
            logger.exception("webhook request failed")
            status = 500
        reason = REASONS.get(status, "Error")
        try:
            writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            if status != 200:
                await self._linger(reader, writer)
        except ConnectionError:
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
        if len(request_line) < 2 or request_line[0] != "POST" or request_line[1].split("?")[0] != self.path:
            return 404
        if not hmac.compare_digest(headers.get(SECRET_HEADER, "").encode(), self.secret.encode()):
            logger.warning("webhook request without the right secret token refused")
            return 403
        length = int(headers.get("content-length", "0"))
        if length <= 0 or length > MAX_BODY:
            return 413 if length > MAX_BODY else 400
        update = json.loads(await reader.readexactly(length))
        if not isinstance(update, dict):
            return 400
        await self.receive(update)
        return 200
