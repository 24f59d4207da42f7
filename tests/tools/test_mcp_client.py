"""The MCP client against real servers written with the SDK (stdio and streamable HTTP)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import mcp.types as mt

from agents.llm import LLM
from agents.loop import ToolLoop
from agents.providers.base import Completion, ToolUseBlock, Usage
from agents.providers.fake import FakeProvider
from agents.schema import migrations as agent_migrations
from agents.settings import ToolLoopSettings
from agents.tools.base import ToolContext
from agents.tools.mcp import MCPServerSource, mcp_health_check
from agents.tools.mcp.client import backoff
from agents.tools.registry import ToolRegistry
from agents.usage import CallContext
from memory.db import Database
from memory.health import Status
from tests.tools.conftest import HttpServer, fast, gone_within, stdio_server, wait_until

CTX = ToolContext(chat_id=1, user_id=1)


def by_name(source: MCPServerSource) -> dict:
    return {t.spec.name: t for t in source.tools()}


def test_stdio_lists_and_calls_with_default_policy() -> None:
    async def scenario() -> None:
        server = stdio_server()
        source = MCPServerSource(server, fast(server))
        await source.start()
        try:
            assert await source.wait_ready(30)
            tools = by_name(source)
            assert "tickets__echo" in tools and "tickets__lookup_ticket" in tools
            assert [t.spec.name for t in source.tools()] == sorted(tools)  # stable order
            spec = tools["tickets__echo"].spec
            # no allow list: every tool offered, each asks first; results are untrusted data
            assert {t.spec.policy for t in source.tools()} == {"confirm"}
            assert spec.source == "mcp:tickets" and spec.untrusted and not spec.read_only
            assert spec.input_schema["required"] == ["text"]
            assert "tickets__bloated" not in tools  # a 30 kB schema is not put in every prompt
            result = await tools["tickets__echo"].call({"text": "hi"}, CTX)
            assert (result.content, result.is_error) == ("echo: hi", False)
            # the server rejects bad arguments: an error result, not an exception
            bad = await tools["tickets__echo"].call({"nope": 1}, CTX)
            assert bad.is_error and "text" in bad.content
        finally:
            await source.stop()

    asyncio.run(scenario())


def test_allow_and_confirm_lists_decide_what_is_offered_and_asked() -> None:
    async def scenario() -> None:
        server = stdio_server(allow=["lookup_ticket", "close_ticket"], confirm=["close_ticket"])
        source = MCPServerSource(server, fast(server))
        await source.start()
        try:
            assert await source.wait_ready(30)
            policies = {t.spec.name: t.spec.policy for t in source.tools()}
            assert policies == {
                "tickets__close_ticket": "confirm",
                "tickets__lookup_ticket": "auto",
            }
        finally:
            await source.stop()

    asyncio.run(scenario())


def test_hang_times_out_huge_is_cut_images_are_described_garbage_is_an_error() -> None:
    async def scenario() -> None:
        server = stdio_server(call_timeout_s=1.0)
        source = MCPServerSource(server, fast(server))
        await source.start()
        try:
            assert await source.wait_ready(30)
            tools = by_name(source)
            started = time.monotonic()
            hung = await tools["tickets__hang"].call({}, CTX)
            assert hung.is_error and "did not answer hang within 1 s" in hung.content
            assert time.monotonic() - started < 5

            huge = await tools["tickets__huge"].call({}, CTX)  # cut by the loop, not here
            assert not huge.is_error and huge.content == "x" * 200_000

            pic = await tools["tickets__picture"].call({}, CTX)
            assert pic.content.startswith("here is the chart\n[image, image/png, 12 bytes")
            assert "aGVsbG8" not in pic.content  # the data itself is never inlined

            junk = await tools["tickets__garbage"].call({}, CTX)
            assert junk.is_error and "unreadable" in junk.content, junk.content
            # the connection survives all of it
            assert (await tools["tickets__echo"].call({"text": "still"}, CTX)).content == (
                "echo: still"
            )
            assert source.state == "connected" and source.connects == 1
        finally:
            await source.stop()

    asyncio.run(scenario())


def test_a_crashed_server_is_degraded_by_name_then_restarted(tmp_path: Path) -> None:
    block = tmp_path / "block"

    async def scenario() -> None:
        server = stdio_server(env={"MCP_TEST_BLOCK": str(block)})
        healthy = stdio_server("files")
        sources = [MCPServerSource(s, fast(server, healthy)) for s in (server, healthy)]
        check = mcp_health_check(sources)
        for s in sources:
            await s.start()
        try:
            assert all([await s.wait_ready(30) for s in sources])
            assert check().status == Status.HEALTHY
            block.touch()  # from now on the server dies as it starts
            crashed = await by_name(sources[0])["tickets__crash"].call({}, CTX)
            assert crashed.is_error and "went away" in crashed.content
            await wait_until(lambda: sources[0].state != "connected" and sources[0].error)
            result = check()
            assert result.status == Status.DEGRADED
            assert result.detail.startswith("tickets: down") and "files: connected" in result.detail
            assert sources[0].tools() == []  # nothing offered while down
            down = await sources[0].call("echo", {"text": "x"})
            assert down.is_error and "not connected" in down.content
            await wait_until(lambda: sources[0].failures >= 3, 30)  # it keeps trying, slower
            assert (sources[0].retry_at or 0) - time.monotonic() <= 0.5  # never past the cap
            block.unlink()
            await wait_until(lambda: sources[0].state == "connected", 30)
            assert check().status == Status.HEALTHY and sources[0].connects == 2
            again = await by_name(sources[0])["tickets__echo"].call({"text": "back"}, CTX)
            assert again.content == "echo: back"
        finally:
            for s in sources:
                await s.stop()

    asyncio.run(scenario())


def test_a_server_that_freezes_is_restarted_after_a_failed_ping() -> None:
    async def scenario() -> None:
        server = stdio_server(call_timeout_s=1.0)
        source = MCPServerSource(server, fast(server))
        await source.start()
        try:
            assert await source.wait_ready(30)
            frozen = await by_name(source)["tickets__freeze"].call({}, CTX)
            assert frozen.is_error and "did not answer freeze" in frozen.content
            await wait_until(lambda: source.connects == 2, 40)
            assert (await by_name(source)["tickets__echo"].call({"text": "ok"}, CTX)).content == (
                "echo: ok"
            )
        finally:
            await source.stop()

    asyncio.run(scenario())


def test_a_changed_tool_list_is_picked_up() -> None:
    async def scenario() -> None:
        server = stdio_server()
        source = MCPServerSource(server, fast(server, mcp_ping_interval_s=60))
        await source.start()
        try:
            assert await source.wait_ready(30)
            assert "tickets__extra" not in by_name(source)
            assert (await by_name(source)["tickets__grow"].call({}, CTX)).content == "grown"
            await wait_until(lambda: "tickets__extra" in by_name(source), 10)
            three = await by_name(source)["tickets__extra"].call({"x": 2}, CTX)
            assert three.content == "3"
        finally:
            await source.stop()

    asyncio.run(scenario())


def test_a_slow_or_broken_server_never_delays_start() -> None:
    async def scenario() -> None:
        slow = stdio_server("slow", env={"MCP_TEST_SLOW_START": "30"}, connect_timeout_s=1.0)
        broken = stdio_server("broken", command="/nonexistent/mcp-server")
        sources = [MCPServerSource(s, fast(slow, broken)) for s in (slow, broken)]
        started = time.monotonic()
        for s in sources:
            await s.start()
        assert time.monotonic() - started < 0.5  # start only schedules the connection
        assert not any([await s.wait_ready(20) for s in sources])
        result = mcp_health_check(sources)()
        assert result.status == Status.DEGRADED
        assert "slow: down (no answer within 1 s)" in result.detail
        assert "broken: down" in result.detail
        for s in sources:
            await s.stop()

    asyncio.run(scenario())


def test_a_huge_result_reaches_the_model_cut_once_to_the_untrusted_budget(tmp_path: Path) -> None:
    """One budget, applied once by the loop: the model is told how much of the real result it
    does not see (the client used to cut at 16,000 characters first, so the loop's note
    counted from there)."""
    db = Database.open(tmp_path / "familiar.db", [agent_migrations])
    server = stdio_server(allow=["huge"])
    source = MCPServerSource(server, fast(server))
    settings = ToolLoopSettings(untrusted_max_chars=1000)
    loop = ToolLoop(ToolRegistry([source]), settings, db)
    call = ToolUseBlock("c1", "tickets__huge", {})
    provider = FakeProvider(
        [Completion("", Usage(10, 5), "fake", "tool_use", 0, [call]), "It is all x."]
    )

    async def scenario() -> None:
        await source.start()
        try:
            assert await source.wait_ready(30)
            result = await loop.start(
                LLM(provider),
                CallContext(1, 1, "chat"),
                system_prefix="",
                system="",
                messages=[{"role": "user", "content": "what does huge say?"}],
                cache_turns=0,
                max_tokens=100,
            )
            assert result.text == "It is all x." and result.tool_calls == 1
        finally:
            await source.stop()

    asyncio.run(scenario())
    db.close()
    (block,) = provider.requests[1].messages[-1]["content"]
    assert block.content.startswith('<untrusted-data source="mcp:tickets:tickets__huge">')
    assert block.content.count("x" * 10) == 100  # exactly the 1,000 characters of the budget
    assert block.content.count("cut") == 1
    assert "[… cut: 199000 more characters]" in block.content


def test_stop_returns_and_ends_the_server_while_a_timed_out_attempt_shuts_down(
    tmp_path: Path,
) -> None:
    """A stop that lands while the SDK shuts a timed-out server down (it waits ~2 s for the
    process to exit) used to wait forever and leave the process running."""
    pid_file = tmp_path / "mute.pid"
    never = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(300)"

    async def scenario() -> None:
        mute = stdio_server("mute", args=["-c", never, str(pid_file)], connect_timeout_s=1.0)
        source = MCPServerSource(mute, fast(mute))
        await source.start()
        await wait_until(pid_file.exists)
        await asyncio.sleep(1.5)  # past the connect timeout: inside the SDK's shutdown
        async with asyncio.timeout(15):
            await source.stop()
        assert source.state == "stopped" and source.tools() == []

    asyncio.run(scenario())
    pid = int(pid_file.read_text())
    assert gone_within(pid, 10), "the server was left running"


def test_streamable_http_lists_calls_and_reconnects_after_the_server_restarts(
    http_server: HttpServer,
) -> None:
    async def scenario() -> None:
        from agents.tools.settings import MCPServerSettings

        server = MCPServerSettings.model_validate(
            {
                "name": "web",
                "url": http_server.url,
                "allow": ["echo", "whoami", "grow", "extra"],
                "headers": {"X-Test-Token": "hunter2"},
            }
        )
        source = MCPServerSource(server, fast(server))
        await source.start()
        try:
            assert await source.wait_ready(30)
            assert [t.spec.name for t in source.tools()] == [
                "web__echo",
                "web__grow",
                "web__whoami",
            ]
            echo, grow, whoami = source.tools()
            assert (await echo.call({"text": "over http"}, CTX)).content == "echo: over http"
            assert (await whoami.call({}, CTX)).content == "token hunter2"
            assert (await grow.call({}, CTX)).content == "grown"  # list_changed over HTTP too
            await wait_until(lambda: "web__extra" in by_name(source), 10)
            await asyncio.to_thread(http_server.kill)
            await wait_until(lambda: source.state != "connected", 20)
            assert mcp_health_check([source])().status == Status.DEGRADED
            await asyncio.to_thread(http_server.start)
            await wait_until(lambda: source.state == "connected", 30)
            echo = source.tools()[0]
            assert (await echo.call({"text": "again"}, CTX)).content == "echo: again"
        finally:
            await source.stop()

    asyncio.run(scenario())


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff(n, 1.0, 10.0) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert backoff(10_000, 1.0, 300.0) == 300.0


def test_stop_while_connecting_returns_promptly_and_does_not_reconnect() -> None:
    async def scenario() -> None:
        slow = stdio_server("slow", env={"MCP_TEST_SLOW_START": "60"}, connect_timeout_s=60)
        source = MCPServerSource(slow, fast(slow))
        await source.start()
        await asyncio.sleep(0.5)  # the process runs, the handshake waits
        started = time.monotonic()
        await source.stop()
        assert time.monotonic() - started < 10
        await asyncio.sleep(0.5)
        assert source.state == "stopped" and source.connects == 0

    asyncio.run(scenario())


def test_a_confirmation_describes_the_call_in_plain_words() -> None:
    server = stdio_server()
    source = MCPServerSource(server, fast(server))
    tool = source._wrap(mt.Tool(name="close_ticket", input_schema={"type": "object"}))
    assert tool is not None
    said = tool.describe({"ticket": 7, "note": "x" * 1000})
    assert said.startswith('Run close_ticket on MCP server tickets with {"ticket": 7, "note": "xxx')
    assert len(said) < 400
