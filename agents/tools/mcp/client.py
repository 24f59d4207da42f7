"""One MCP server as a ``ToolSource``: connected in the background, supervised, its tools offered
as ``<server>__<tool>``.

A supervisor task owns the connection: it opens the transport (stdio or streamable HTTP) and one
``ClientSession`` in an ``AsyncExitStack``, lists the tools, then pings the server every
``mcp_ping_interval_s``. When the server dies (a failed ping, a call that finds the connection
closed, a failed start) the stack is closed and the supervisor tries again after a wait that
doubles from ``mcp_restart_min_s`` to ``mcp_restart_max_s``. A ``tools/list_changed``
notification, and every reconnection, re-lists the tools. Nothing here delays the daemon: ``start``
only creates the task.

Policy: a server's tools ask the person first unless ``allow`` lists them; ``allow``, when set,
is also the only tools offered; ``confirm`` always asks. MCP tools are never ``read_only``: the
read-only hint is the server's word, and a server that lies about it must not escape the rule
that an untrusted result makes later changing calls ask first.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from contextlib import AsyncExitStack
from typing import Any, Literal

import anyio
import mcp.types as mt
from loguru import logger
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

from agents.tools.base import Policy, Tool, ToolContext, ToolResult, ToolSource, ToolSpec
from agents.tools.mcp.results import clean, clip, to_tool_result
from agents.tools.settings import MCPServerSettings, ToolsSettings

State = Literal["connecting", "connected", "down", "stopped"]
CLIENT_INFO = mt.Implementation(name="familiar", version="1")
MAX_DESCRIPTION = 1024
MAX_SCHEMA_CHARS = 8000
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
STABLE_S = 60.0  # a connection that lasted this long resets the backoff
STOP_S = 10.0  # longest stop() waits; the SDK's own shutdown of a server is bounded at ~4 s


def backoff(failures: int, lo: float, hi: float) -> float:
    """The wait after ``failures`` consecutive failures: lo, 2·lo, 4·lo, … at most hi."""
    return min(hi, lo * 2 ** min(max(0, failures - 1), 30))


class _ConnectionLost(Exception):
    """The server stopped answering (a failed ping or a closed connection)."""


class MCPTool(Tool):
    def __init__(self, source: MCPServerSource, remote_name: str, spec: ToolSpec) -> None:
        self.source, self.remote_name, self.spec = source, remote_name, spec

    async def call(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        return await self.source.call(self.remote_name, args)

    def describe(self, args: dict[str, Any]) -> str:
        shown = json.dumps(args, ensure_ascii=False, default=str)
        return f"Run {self.remote_name} on MCP server {self.source.settings.name} with {clip(shown, 300)}"


def exposed_name(server: str, tool: str) -> str:
    """``server__tool`` within what model APIs accept (``^[A-Za-z0-9_-]{1,64}$``)."""
    return f"{server}__{_UNSAFE.sub('_', tool)}"[:64]


def policy_for(settings: MCPServerSettings, tool: str) -> Policy | None:
    """The tool's default policy; None when it is not offered at all."""
    if settings.allow is not None and tool not in settings.allow:
        return None
    if tool in settings.confirm or settings.allow is None:
        return "confirm"
    return "auto"


def policy_origin(settings: MCPServerSettings, tool: str) -> str:
    """Which of the server's settings gave the tool its default policy (``policy_for``)."""
    where = f"tools.mcp {settings.name}"
    if tool in settings.confirm:
        return f"{where}: confirm"
    return f"{where}: allow" if settings.allow is not None else f"{where}: no allow list"


class MCPServerSource(ToolSource):
    def __init__(self, settings: MCPServerSettings, tools: ToolsSettings) -> None:
        self.settings = settings
        self.name = f"mcp:{settings.name}"
        self.restart_min_s, self.restart_max_s = tools.mcp_restart_min_s, tools.mcp_restart_max_s
        self.ping_interval_s = tools.mcp_ping_interval_s
        self.state: State = "connecting"
        self.error: str | None = None
        self.retry_at: float | None = None  # monotonic time of the next attempt while down
        self.connects = 0  # successful connections since start (1 + restarts)
        self.failures = 0  # consecutive failed or short-lived connections
        self._tools: list[Tool] = []
        self._session: ClientSession | None = None
        self._wake = asyncio.Event()
        self._list_changed = False
        self._lost: str | None = None
        self._attempted = asyncio.Event()  # the first connection attempt has ended, either way
        self._task: asyncio.Task[None] | None = None
        self._scope: anyio.CancelScope | None = None  # the supervisor's; stop() cancels it
        self._stopping = False

    # -- ToolSource --------------------------------------------------------------------------
    def tools(self) -> list[Tool]:
        return list(self._tools)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._supervise(), name=f"mcp-{self.settings.name}")

    async def stop(self) -> None:
        """Stop the supervisor and the server, within ``STOP_S``.

        The supervisor runs in an anyio cancel scope and is stopped through it, not with a bare
        ``task.cancel()``: the SDK shields its transport's shutdown (stop the server process,
        close the pipes) from anyio cancellation, but a native cancel defeats the shield, and
        one that lands during that shutdown (a connection attempt just timed out) left the stop
        waiting forever and the server process running."""
        self._stopping = True
        self.state = "stopped"
        task, self._task = self._task, None
        if task is not None:
            if self._scope is not None:
                self._scope.cancel()
            else:  # not yet running: nothing to shut down
                task.cancel()
            done, _ = await asyncio.wait({task}, timeout=STOP_S)
            if done and not task.cancelled() and task.exception() is not None:
                logger.opt(exception=task.exception()).warning(
                    "MCP server {}: its supervisor failed", self.settings.name
                )
            if not done:
                logger.warning(
                    "MCP server {} did not stop within {:g} s; leaving it",
                    self.settings.name,
                    STOP_S,
                )
                task.cancel()
        self._session, self._tools = None, []

    async def wait_ready(self, timeout_s: float) -> bool:
        """Wait until the first attempt to connect has ended; True when connected."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._attempted.wait()
        except TimeoutError:
            pass
        return self.state == "connected"

    def describe_state(self) -> str:
        if self.state == "connected":
            return f"connected, {len(self._tools)} tool(s)"
        if self.state == "down":
            wait = max(0.0, (self.retry_at or 0) - time.monotonic())
            return f"down ({self.error}); retrying in {wait:.0f} s"
        if self.state == "connecting" and self.error:
            return f"reconnecting (last error: {self.error})"
        return self.state

    # -- calls -------------------------------------------------------------------------------
    async def call(self, remote: str, args: dict[str, Any]) -> ToolResult:
        server, timeout = self.settings.name, self.settings.call_timeout_s
        session = self._session
        if session is None:
            why = self.error or "still connecting"
            return ToolResult(f"MCP server {server} is not connected ({why})", is_error=True)
        try:
            # The SDK's own timeout cancels the request on the server; ours is the backstop.
            async with asyncio.timeout(timeout + 2):
                result = await session.call_tool(remote, args, read_timeout_seconds=timeout)
        except TimeoutError:
            return self._timed_out(remote)
        except MCPError as exc:
            if exc.code == REQUEST_TIMEOUT:
                return self._timed_out(remote)
            if exc.code == CONNECTION_CLOSED:
                return self._went_away()
            return ToolResult(
                clip(clean(f"MCP server {server} refused the call: {exc.message}"), 2000),
                is_error=True,
            )
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream):
            return self._went_away()
        except Exception as exc:  # a malformed answer must reach the model as an error, not raise
            logger.opt(exception=exc).warning("MCP {}: unreadable answer to {}", server, remote)
            return ToolResult(
                f"MCP server {server} answered {remote} with something unreadable "
                f"({type(exc).__name__})",
                is_error=True,
            )
        return to_tool_result(result)

    def _went_away(self) -> ToolResult:
        self._connection_lost("the connection closed during a call")
        return ToolResult(
            f"MCP server {self.settings.name} went away during the call", is_error=True
        )

    def _timed_out(self, remote: str) -> ToolResult:
        logger.warning("MCP {}: {} timed out", self.settings.name, remote)
        return ToolResult(
            f"MCP server {self.settings.name} did not answer {remote} within "
            f"{self.settings.call_timeout_s:g} s",
            is_error=True,
        )

    def _connection_lost(self, why: str) -> None:
        self._lost = why
        self._wake.set()

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, mt.ToolListChangedNotification):
            self._list_changed = True
            self._wake.set()
        elif isinstance(message, Exception):  # a line that is not JSON-RPC, a broken stream
            logger.warning("MCP {}: transport error: {}", self.settings.name, message)

    # -- the supervisor ----------------------------------------------------------------------
    async def _supervise(self) -> None:
        with anyio.CancelScope() as scope:
            self._scope = scope
            await self._keep_connected()

    async def _keep_connected(self) -> None:
        while not self._stopping:
            started = time.monotonic()
            try:
                async with AsyncExitStack() as stack:
                    await self._connect(stack)
                    await self._serve()
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # ExceptionGroups from the SDK's task groups included
                if self._stopping:  # the attempt failed as stop() began: nothing to report
                    return
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # a cancellation wrapped in a group: stop, do not reconnect
                self.error = _reason(exc)
                logger.warning("MCP server {} is down: {}", self.settings.name, self.error)
            finally:
                self._session, self._tools = None, []
            if time.monotonic() - started > STABLE_S:  # it ran a while: a fresh failure
                self.failures = 0
            self.failures += 1
            delay = backoff(self.failures, self.restart_min_s, self.restart_max_s)
            self.state = "down"
            self.retry_at = time.monotonic() + delay
            self._attempted.set()
            await asyncio.sleep(delay)
            self.state = "connecting"

    async def _connect(self, stack: AsyncExitStack) -> None:
        s = self.settings
        # asyncio.timeout, not wait_for: the SDK's task groups must be entered and left in
        # this one task.
        try:
            async with asyncio.timeout(s.connect_timeout_s):
                session = await self._open(stack)
        except TimeoutError:
            raise _ConnectionLost(f"no answer within {s.connect_timeout_s:g} s") from None
        self._session = session
        self.state, self.error, self.retry_at = "connected", None, None
        self.connects += 1
        self._attempted.set()
        logger.info("MCP server {} connected: {}", s.name, self.describe_state())

    async def _open(self, stack: AsyncExitStack) -> ClientSession:
        s = self.settings
        if s.command is not None:
            params = StdioServerParameters(
                command=s.command,
                args=s.args,
                env={k: v.get_secret_value() for k, v in s.env.items()} or None,
            )
            read, write = await stack.enter_async_context(
                stdio_client(params, sys.__stderr__ or sys.stderr)
            )
        else:
            assert s.url is not None
            headers = {k: v.get_secret_value() for k, v in s.headers.items()}
            client = await stack.enter_async_context(create_mcp_http_client(headers=headers))
            read, write = await stack.enter_async_context(
                streamable_http_client(s.url, http_client=client)
            )
        session = await stack.enter_async_context(
            ClientSession(read, write, message_handler=self._on_message, client_info=CLIENT_INFO)
        )
        await session.initialize()
        self._lost, self._list_changed = None, False
        await self._relist(session)
        return session

    async def _serve(self) -> None:
        """Keep the connection until it is lost; re-list the tools when the server says so."""
        session = self._session
        assert session is not None
        while True:
            self._wake.clear()
            try:
                async with asyncio.timeout(self.ping_interval_s):
                    await self._wake.wait()
            except TimeoutError:
                try:
                    async with asyncio.timeout(min(self.ping_interval_s, 10.0) + 5):
                        await session.send_ping()
                except (MCPError, TimeoutError) as exc:
                    raise _ConnectionLost(f"ping failed: {_reason(exc)}") from exc
                continue
            if self._lost is not None:
                raise _ConnectionLost(self._lost)
            if self._list_changed:
                self._list_changed = False
                async with asyncio.timeout(self.settings.connect_timeout_s):
                    await self._relist(session)

    async def _relist(self, session: ClientSession) -> None:
        listed: list[mt.Tool] = []
        cursor: str | None = None
        while True:
            params = mt.PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await session.list_tools(params=params)
            listed += page.tools
            cursor = page.next_cursor
            if not cursor or len(listed) > 1000:
                break
        tools: dict[str, Tool] = {}
        for t in listed:
            tool = self._wrap(t)
            if tool is not None and tool.spec.name not in tools:
                tools[tool.spec.name] = tool
        new = [tools[n] for n in sorted(tools)]
        named = set(self.settings.allow or []) | set(self.settings.confirm)
        missing = sorted(named - {t.name for t in listed})
        if missing:  # a typo in the settings would otherwise silently offer nothing
            logger.warning(
                "MCP server {} has no tool named {} (listed in allow/confirm)",
                self.settings.name,
                ", ".join(missing),
            )
        if [t.spec for t in new] != [t.spec for t in self._tools] and self._session is not None:
            logger.info("MCP server {}: tool list changed ({} tools)", self.settings.name, len(new))
        self._tools = new

    def _wrap(self, t: mt.Tool) -> MCPTool | None:
        server = self.settings.name
        policy = policy_for(self.settings, t.name)
        schema = t.input_schema
        if policy is None:
            return None
        if not isinstance(schema, dict) or schema.get("type") != "object":
            logger.warning("MCP {}: tool {!r} has no object schema; not offered", server, t.name)
            return None
        size = len(json.dumps(schema, default=str))
        if size > MAX_SCHEMA_CHARS:  # it would ride along in every prompt
            logger.warning(
                "MCP {}: tool {!r} has a schema of {} characters (most {}); not offered",
                server,
                t.name,
                size,
                MAX_SCHEMA_CHARS,
            )
            return None
        description = clip(
            clean(" ".join((t.description or t.title or t.name).split())), MAX_DESCRIPTION
        )
        spec = ToolSpec(
            name=exposed_name(server, t.name),
            description=f"[MCP server {server}] {description}",
            input_schema=schema,
            policy=policy,
            policy_from=policy_origin(self.settings, t.name),
            read_only=False,
            untrusted=True,
            source=self.name,
            activity=f"🔌 {server}: {t.name}…",
        )
        return MCPTool(self, t.name, spec)


def _reason(exc: BaseException) -> str:
    """A one-line cause, looking inside exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc) or type(exc).__name__
    return clip(text.splitlines()[0] if text.strip() else type(exc).__name__, 200)
