"""The ``mcp`` health check: degraded, naming each server that is down, while any is."""

from __future__ import annotations

from collections.abc import Sequence

from agents.tools.mcp.client import MCPServerSource
from memory.health import CheckFn, CheckResult, Status


def mcp_health_check(sources: Sequence[MCPServerSource]) -> CheckFn:
    def check() -> CheckResult:
        down = [s for s in sources if s.state != "connected" and s.error is not None]
        parts = [f"{s.settings.name}: {s.describe_state()}" for s in down]
        parts += [f"{s.settings.name}: {s.describe_state()}" for s in sources if s not in down]
        # A server still on its first attempt is not yet a fault: the daemon was just started.
        status = Status.DEGRADED if down else Status.HEALTHY
        return CheckResult("mcp", status, "; ".join(parts) or "no MCP servers configured")

    return check
