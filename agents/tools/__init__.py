"""Tools the agent can call: built-in families (one module each) and MCP servers, all behind the
one interface in ``base.py``, so the agent loop cannot tell them apart.

The families of this package are listed by ``builtin_sources``; the composition root adds them,
the jobs package's reminder and task tools and any MCP servers to the one ``ToolRegistry``.
"""

from __future__ import annotations

from typing import Any

from agents.tools.base import ToolSource


def builtin_sources(memory: Any) -> list[ToolSource]:
    """The built-in families over the given ``memory.service.Memory``."""
    from agents.tools.clock import clock_tools
    from agents.tools.memory_tools import memory_tools

    return [clock_tools(), memory_tools(memory)]
