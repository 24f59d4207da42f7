"""The systemd notification protocol: READY, STATUS, WATCHDOG and STOPPING datagrams.

Written by hand rather than taken from ``sdnotify`` (last released 2017, no abstract-socket
support, no watchdog helper): the protocol is one datagram per message to ``$NOTIFY_SOCKET``.
"""

from __future__ import annotations

import asyncio
import os
import socket

from loguru import logger


class Notifier:
    """Sends ``sd_notify`` messages; does nothing when not started by systemd."""

    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if address:
            # "@name" is an abstract socket: its name starts with a NUL byte.
            self.address = "\0" + address[1:] if address.startswith("@") else address
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, message: str) -> bool:
        if self.address is None:
            return False
        try:
            if self._sock is None:
                # Non-blocking: a receiver that stops reading must never stall the event loop.
                self._sock = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
                )
            self._sock.sendto(message.encode(), self.address)
            return True
        except BlockingIOError:
            logger.debug(
                "sd_notify {!r} dropped: the receiver's queue is full", message.split("=")[0]
            )
            return False
        except OSError as exc:
            logger.warning("sd_notify {!r} failed: {}", message.split("=")[0], exc)
            return False

    def ready(self) -> None:
        self.send("READY=1")

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval() -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds, when the watchdog is meant for this process."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2 / 1_000_000
    except ValueError:
        return None


async def watchdog_loop(notifier: Notifier, interval: float) -> None:
    """Pings from the event loop itself, so a wedged loop misses pings and gets restarted."""
    while True:
        notifier.send("WATCHDOG=1")
        await asyncio.sleep(interval)
