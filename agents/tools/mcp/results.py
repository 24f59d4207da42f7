"""An MCP server's answer as a ``ToolResult``: text joined, what is not text described.

The server is outside our control: its result is data, may be huge, may hold images or blobs
the model cannot use as text, or may not be a result at all. Whatever arrives becomes a
``ToolResult`` of plain text; nothing a server sends raises out of here. Its size is not cut
here: the agent loop cuts every result to its budget once, in one place (an untrusted one to
``tools.untrusted_max_chars``, marking the cut for the model), and ``familiar tools call``
prints what the person asked for in full.
"""

from __future__ import annotations

import json
import re
from typing import Any

import mcp.types as mt

from agents.tools.base import ToolResult

# C0/C1 control characters other than tab and newline: useless to a model, and an escape sequence
# would reach a terminal (``familiar tools call``) or a log as a command, not as text.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: str) -> str:
    return _CONTROL.sub("", text)


def clip(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars``, saying how much was left out."""
    if len(text) <= max_chars:
        return text
    note = f"\n[… cut: {max_chars} of {len(text)} characters shown]"
    return text[: max(0, max_chars - len(note))] + note


def _size(data: str | None) -> str:
    # base64: three bytes per four characters
    return f"{len(data or '') * 3 // 4} bytes"


def describe_block(block: Any) -> str:
    """One content block as text; what is not text is described, never inlined."""
    if isinstance(block, mt.TextContent):
        return block.text
    if isinstance(block, mt.ImageContent):
        return f"[image, {block.mime_type}, {_size(block.data)}: not shown]"
    if isinstance(block, mt.AudioContent):
        return f"[audio, {block.mime_type}, {_size(block.data)}: not shown]"
    if isinstance(block, mt.ResourceLink):
        return f"[resource link: {block.name} <{block.uri}>]"
    if isinstance(block, mt.EmbeddedResource):
        res = block.resource
        if isinstance(res, mt.TextResourceContents):
            return f"[resource {res.uri}]\n{res.text}"
        if isinstance(res, mt.BlobResourceContents):
            return (
                f"[resource {res.uri}, {res.mime_type or 'binary'}, {_size(res.blob)}: not shown]"
            )
    kind = getattr(block, "type", type(block).__name__)
    return f"[{kind} content: not shown]"


def to_tool_result(result: Any) -> ToolResult:
    """A ``CallToolResult`` as a ``ToolResult``; anything else is reported as an error."""
    if not isinstance(result, mt.CallToolResult):
        return ToolResult(
            f"the server answered with something that is not a tool result ({type(result).__name__})",
            is_error=True,
        )
    parts = [describe_block(b) for b in result.content]
    if not any(p.strip() for p in parts) and result.structured_content is not None:
        try:
            parts = [json.dumps(result.structured_content, ensure_ascii=False, default=str)]
        except (TypeError, ValueError):
            parts = ["[structured content that could not be read]"]
    text = clean("\n".join(parts)).strip() or "(the tool returned nothing)"
    return ToolResult(
        text,
        is_error=bool(result.is_error),
        data={"chars": len(text), "blocks": len(result.content)},
    )
