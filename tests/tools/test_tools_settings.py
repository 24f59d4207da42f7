"""``[[tools.mcp]]`` settings: what is refused, and secrets in a server's environment kept secret;
MCP results converted to bounded text."""

from __future__ import annotations

from pathlib import Path

import mcp.types as mt
import pytest
from pydantic import ValidationError

from agents.tools.mcp.results import to_tool_result
from agents.tools.settings import MCPServerSettings, ToolsSettings
from bot.config import load_settings


def test_a_server_entry_is_checked() -> None:
    for entry, why in [
        ({"name": "t"}, "either command"),
        ({"name": "t", "command": "x", "url": "http://127.0.0.1:1/mcp"}, "either command"),
        ({"name": "t", "url": "ftp://127.0.0.1/mcp"}, "http:// or https://"),
        ({"name": "a_b", "command": "x"}, "pattern"),  # "__" separates server and tool
        ({"name": "t", "command": "x", "headers": {"A": "b"}}, "headers are for the HTTP"),
    ]:
        with pytest.raises(ValidationError, match=why):
            MCPServerSettings.model_validate(entry)
    with pytest.raises(ValidationError, match="unique: t"):
        ToolsSettings.model_validate({"mcp": [{"name": "t", "command": "x"}] * 2})


def test_a_servers_environment_is_masked_like_every_secret(data_dir: Path) -> None:
    data_dir.mkdir(parents=True)
    (data_dir / "familiar.toml").write_text(
        '[[tools.mcp]]\nname = "tickets"\ncommand = "server"\n'
        'env = { TICKETS_TOKEN = "tk-very-secret-1234" }\n'
    )
    settings = load_settings()
    (server,) = settings.tools.mcp
    assert server.env["TICKETS_TOKEN"].get_secret_value() == "tk-very-secret-1234"
    assert "tk-very-secret-1234" in settings.secret_values()  # the log filter masks it
    assert "tk-very-secret-1234" not in repr(settings)


def test_results_become_plain_text() -> None:
    embedded = mt.CallToolResult(
        content=[
            mt.EmbeddedResource(
                type="resource",
                resource=mt.TextResourceContents(uri="file:///a.txt", text="inside"),
            ),
            mt.EmbeddedResource(
                type="resource",
                resource=mt.BlobResourceContents(uri="file:///b.bin", blob="AAAA"),
            ),
            mt.ResourceLink(type="resource_link", uri="https://example.org/x", name="x"),
        ],
        is_error=True,
    )
    result = to_tool_result(embedded)
    assert result.is_error
    assert result.content.splitlines() == [
        "[resource file:///a.txt]",
        "inside",
        "[resource file:///b.bin, binary, 3 bytes: not shown]",
        "[resource link: x <https://example.org/x>]",
    ]
    structured = mt.CallToolResult(content=[], structured_content={"n": 1})
    assert to_tool_result(structured).content == '{"n": 1}'
    assert to_tool_result(mt.CallToolResult(content=[])).content == "(the tool returned nothing)"
    escapes = mt.CallToolResult(content=[mt.TextContent(type="text", text="a\x1b[2Jb\x07\tc\nd")])
    assert to_tool_result(escapes).content == "a[2Jb\tc\nd"  # no escape reaches a terminal
    wrong = to_tool_result({"content": "x"})
    assert wrong.is_error and "not a tool result" in wrong.content
