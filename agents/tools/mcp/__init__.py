"""MCP servers behind the tool interface: ``MCPServerSource`` (one per ``[[tools.mcp]]`` entry),
its result conversion, and the health check that names the servers that are down."""

from agents.tools.mcp.client import MCPServerSource, MCPTool
from agents.tools.mcp.health import mcp_health_check

__all__ = ["MCPServerSource", "MCPTool", "mcp_health_check"]
