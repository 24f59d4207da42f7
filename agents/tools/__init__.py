"""Tools the agent can call: built-in families (one module each) and MCP servers, all behind the
one interface in ``base.py``, so the agent loop cannot tell them apart.

The families of this package are listed by ``builtin_sources``; the composition root adds them,
the jobs package's reminder and task tools and any MCP servers to the one ``ToolRegistry``.
"""

from __future__ import annotations

from typing import Any

from agents.tools.base import ToolSource


def builtin_sources(memory: Any, settings: Any) -> list[ToolSource]:
    """The built-in families over the given ``memory.service.Memory``, with the ``[tools]``
    settings (``agents.settings.ToolLoopSettings``: the web fetch's limits)."""
    from agents.tools.clock import clock_tools
    from agents.tools.memory_tools import memory_tools
    from agents.tools.registry import StaticSource
    from agents.tools.web import FetchUrl

    return [clock_tools(), memory_tools(memory), StaticSource("web", [FetchUrl(settings)])]
