"""The systemd notification protocol as systemd receives it: datagrams on a real AF_UNIX socket
(a path, or an abstract ``@name``). A missing or stalled receiver never raises or blocks.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.daemon.sd_notify import Notifier, watchdog_interval, watchdog_loop


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(5)
    yield path, sock
    sock.close()


def received(sock: socket.socket, n: int) -> list[str]:
    return [sock.recv(4096).decode() for _ in range(n)]


def test_ready_status_and_stopping_reach_notify_socket(
    receiver: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, sock = receiver
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    notifier = Notifier()
    assert notifier.enabled
    notifier.ready()
    notifier.status("memory warm: 1,200 vectors")
    notifier.stopping()
    notifier.close()
    assert received(sock, 3) == ["READY=1", "STATUS=memory warm: 1,200 vectors", "STOPPING=1"]


def test_an_abstract_socket_name_is_reached() -> None:
    name = f"familiar-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        notifier = Notifier(f"@{name}")
        assert notifier.send("READY=1")
        assert sock.recv(100) == b"READY=1"
        notifier.close()
    finally:
        sock.close()


def test_without_systemd_nothing_is_sent() -> None:
    notifier = Notifier()  # the test environment has no NOTIFY_SOCKET
    assert not notifier.enabled
    assert notifier.send("READY=1") is False


def test_a_vanished_receiver_is_a_warning_not_an_error(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "gone.sock"))
    assert notifier.send("READY=1") is False
    notifier.close()


def test_a_receiver_that_stops_reading_never_blocks_the_sender(
    receiver: tuple[str, socket.socket],
) -> None:
    path, _ = receiver
    notifier = Notifier(path)
    # Without reads the kernel queue fills; a blocking send would hang here for ever.
    results = [notifier.send("WATCHDOG=1") for _ in range(5000)]
    notifier.close()
    assert results[0] is True
    assert results[-1] is False  # dropped once the queue was full, not raised


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))  # meant for another process
    assert watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_PID")
    monkeypatch.setenv("WATCHDOG_USEC", "soon")
    assert watchdog_interval() is None


def test_the_watchdog_loop_pings_until_cancelled(receiver: tuple[str, socket.socket]) -> None:
    path, sock = receiver
    notifier = Notifier(path)

    async def run() -> None:
        task = asyncio.create_task(watchdog_loop(notifier, 0.01))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    notifier.close()
    assert received(sock, 3) == ["WATCHDOG=1"] * 3
