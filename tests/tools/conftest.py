"""Fixtures of the tool tests: MCP servers started by the test, settings pointing at them."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agents.tools.settings import MCPServerSettings, ToolsSettings

SERVER = str(Path(__file__).with_name("mcp_server.py"))


def stdio_server(name: str = "tickets", **extra: Any) -> MCPServerSettings:
    return MCPServerSettings.model_validate(
        {"name": name, "command": sys.executable, "args": [SERVER], **extra}
    )


def fast(*servers: MCPServerSettings, **extra: Any) -> ToolsSettings:
    """Tools settings with test-sized waits: restarts after 0.2 s, pings every 0.3 s."""
    return ToolsSettings.model_validate(
        {
            "mcp": [s.model_dump() for s in servers],
            "mcp_restart_min_s": 0.2,
            "mcp_restart_max_s": 0.5,
            "mcp_ping_interval_s": 0.3,
            **extra,
        }
    )


async def wait_until(pred: Callable[[], bool], within_s: float = 20.0) -> None:
    deadline = time.monotonic() + within_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HttpServer:
    """The test server on streamable HTTP, as a process the test can kill and start again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/mcp"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, SERVER, "http", str(self.port)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("the MCP test server exited") from None
                time.sleep(0.1)
        raise RuntimeError("the MCP test server did not listen in time")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    server = HttpServer(free_port())
    server.start()
    yield server
    server.kill()


def gone_within(pid: int, timeout_s: float) -> bool:
    """Whether process ``pid`` has ended within ``timeout_s`` (a server left running fails)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False
