"""Latency of one MCP tool call through Familiar's client, and what the client adds to it.

Starts the tests' MCP server (tests/tools/mcp_server.py, written with the SDK) over stdio and over
streamable HTTP on 127.0.0.1, then calls its ``echo`` tool N times per transport, interleaving
two ways of calling on the same connection: the raw ``ClientSession.call_tool`` and
``MCPServerSource.call`` (timeout, error mapping, result conversion). Prints medians and the p90
in milliseconds, and the client's own cost as the difference of the medians.

    .venv/bin/python bench/mcp_calls.py [--calls 200] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agents.tools.mcp import MCPServerSource  # noqa: E402
from agents.tools.settings import MCPServerSettings, ToolsSettings  # noqa: E402

SERVER = str(ROOT / "tests" / "tools" / "mcp_server.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if proc.poll() is not None:
                raise SystemExit("the MCP server exited") from None
            time.sleep(0.1)
    raise SystemExit("the MCP server did not listen")


async def measure(server: MCPServerSettings, calls: int) -> dict[str, float]:
    source = MCPServerSource(server, ToolsSettings(mcp=[server]))
    await source.start()
    try:
        if not await source.wait_ready(30):
            raise SystemExit(f"{server.name}: {source.describe_state()}")
        session = source._session
        assert session is not None
        raw, ours = [], []
        for i in range(calls + 10):
            t0 = time.perf_counter()
            await session.call_tool("echo", {"text": f"m{i}"})
            t1 = time.perf_counter()
            result = await source.call("echo", {"text": f"m{i}"})
            t2 = time.perf_counter()
            assert not result.is_error, result.content
            if i >= 10:  # warm-up
                raw.append((t1 - t0) * 1000)
                ours.append((t2 - t1) * 1000)
    finally:
        await source.stop()
    q = statistics.quantiles
    return {
        "raw_median_ms": statistics.median(raw),
        "raw_p90_ms": q(raw, n=10)[-1],
        "familiar_median_ms": statistics.median(ours),
        "familiar_p90_ms": q(ours, n=10)[-1],
        "client_overhead_ms": statistics.median(ours) - statistics.median(raw),
    }


def main(calls: int) -> dict[str, dict[str, float]]:
    figures = {}
    stdio = MCPServerSettings(name="stdio", command=sys.executable, args=[SERVER])
    figures["stdio"] = asyncio.run(measure(stdio, calls))
    port = _free_port()
    proc = subprocess.Popen([sys.executable, SERVER, "http", str(port)])
    try:
        _wait_listening(port, proc)
        http = MCPServerSettings(name="http", url=f"http://127.0.0.1:{port}/mcp")
        figures["http"] = asyncio.run(measure(http, calls))
    finally:
        proc.kill()
        proc.wait(10)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="Calls per way and transport.")
    parser.add_argument("--json", action="store_true", help="Print JSON.")
    args = parser.parse_args()
    result = main(args.calls)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for transport, f in result.items():
            print(
                f"{transport:<6} raw median {f['raw_median_ms']:.2f} ms (p90 {f['raw_p90_ms']:.2f}); "
                f"through Familiar {f['familiar_median_ms']:.2f} ms (p90 {f['familiar_p90_ms']:.2f}); "
                f"client overhead {f['client_overhead_ms']:+.2f} ms"
            )
