"""A small MCP server for the tests, written with the SDK: ``python mcp_server.py`` serves stdio,
``python mcp_server.py http PORT`` streamable HTTP on 127.0.0.1.

Its behaviour is steered by the environment so a test can make it misbehave:
``MCP_TEST_BLOCK``: a path; while that file exists the server exits at once (a server that keeps
dying); ``MCP_TEST_SLOW_START``: seconds to sleep before serving.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import mcp.types as mt
from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field, create_model

block = os.environ.get("MCP_TEST_BLOCK")
if block and os.path.exists(block):
    sys.exit(5)
time.sleep(float(os.environ.get("MCP_TEST_SLOW_START", "0")))

server = MCPServer("familiar-test", log_level="WARNING")
# The pipe to the client, taken before the SDK diverts fd 1 (it guards the wire from prints).
WIRE = os.dup(1)


@server.tool()
def echo(text: str) -> str:
    """Say the text back."""
    return f"echo: {text}"


@server.tool()
def lookup_ticket(ticket: int) -> str:
    """Look a ticket up."""
    return f"ticket {ticket}: printer on fire"


@server.tool()
def close_ticket(ticket: int) -> str:
    """Close a ticket."""
    return f"ticket {ticket} closed"


@server.tool()
def whoami(ctx: Context) -> str:
    """The X-Test-Token header of the request (HTTP only)."""
    return f"token {(ctx.headers or {}).get('x-test-token')}"


@server.tool()
async def hang() -> str:
    """Never answers."""
    await asyncio.sleep(3600)
    return "never"


@server.tool()
async def freeze() -> str:
    """Blocks the server's event loop: the process lives but answers nothing, pings included."""
    time.sleep(3600)  # noqa: ASYNC251 - blocking the loop is the point
    return "never"


Big = create_model(  # a schema of some 30 kB: too big to put in every prompt
    "Big", **{f"p{i}": (str, Field("", description="x" * 120)) for i in range(200)}
)


@server.tool()
def bloated(data: Big) -> str:  # type: ignore[valid-type]
    """A tool whose schema is too big to offer."""
    return "unused"


@server.tool()
def crash() -> str:
    """The server process dies."""
    os._exit(3)


@server.tool()
def huge() -> str:
    """Two hundred thousand characters."""
    return "x" * 200_000


@server.tool()
def picture() -> list[mt.ContentBlock]:
    """Text and an image."""
    return [
        mt.TextContent(type="text", text="here is the chart"),
        mt.ImageContent(type="image", data="aGVsbG8gd29ybGQh", mime_type="image/png"),
    ]


@server.tool()
async def garbage(ctx: Context) -> str:
    """Answers its own call with a malformed result, and writes a line that is not JSON."""
    rid = ctx.request_id
    raw = {"jsonrpc": "2.0", "id": int(rid) if str(rid).isdigit() else rid}
    raw["result"] = {"content": "not a list", "isError": "perhaps"}
    os.write(WIRE, (json.dumps(raw) + "\n").encode())
    os.write(WIRE, b"this is not json\n")
    await asyncio.sleep(0.5)
    return "the real answer, too late"


@server.tool()
async def grow(ctx: Context) -> str:
    """Adds a tool named `extra` and tells the client the list changed."""

    def extra(x: int) -> int:
        """One more than x."""
        return x + 1

    ctx.mcp_server.add_tool(extra)
    await ctx.session.send_tool_list_changed()
    return "grown"


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "http":
        asyncio.run(server.run_streamable_http_async(host="127.0.0.1", port=int(sys.argv[2])))
    else:
        server.run()
