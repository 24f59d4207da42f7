"""Settings of the tools section (``[tools]``, ``FAMILIAR_TOOLS__*``): the agent loop's own
(``agents.settings.ToolLoopSettings``: steps, per-tool policy, confirmation timeout, result
budgets), which ``ToolsSettings`` extends with the MCP servers Familiar connects to
(``[[tools.mcp]]``) and how they are supervised. Their results are untrusted data, cut by the
loop to ``untrusted_max_chars`` like a web page's. The MCP entries are a class of
their own so each server's transport and policy read as one block in the TOML file.

Which definitions every prompt carries (``always_loaded``) and whether the rest wait for the
model's tool search (``tool_search``) are set here too: the registry marks the others deferred.
The default core is the four tools the bench's script of everyday messages needs most (16 of
its 20 messages: search_memory, remember, create_reminder, current_time; bench/agents_tools.py);
the others, and every MCP tool unless named, are found by searching when a message needs them.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr, model_validator

from agents.settings import ToolLoopSettings

SERVER_NAME = r"^[A-Za-z0-9-]{1,24}$"  # no "_": "__" separates server and tool in a tool name


class MCPServerSettings(BaseModel):
    name: str = Field(
        ...,
        pattern=SERVER_NAME,
        description="Short name; its tools appear to the model as <name>__<tool>.",
    )
    command: str | None = Field(None, description="stdio transport: the program to start.")
    args: list[str] = Field(default_factory=list, description="stdio transport: its arguments.")
    env: dict[str, SecretStr] = Field(
        default_factory=dict,
        description=(
            "stdio transport: environment variables for the server (secret: never logged); it "
            "gets only these besides HOME, PATH, USER, SHELL, TERM and LOGNAME."
        ),
    )
    url: str | None = Field(
        None, description="Streamable HTTP transport: the endpoint, e.g. http://127.0.0.1:8765/mcp."
    )
    headers: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Streamable HTTP transport: headers sent with every request, e.g. Authorization (secret).",
    )
    allow: list[str] | None = Field(
        None,
        description=(
            "Tools offered to the model, by the server's own names; they run without asking. "
            "Unset: every tool is offered and asks the person first."
        ),
    )
    confirm: list[str] = Field(
        default_factory=list, description="Tools that always ask the person first."
    )
    call_timeout_s: float = Field(30.0, gt=0, description="Longest one tool call may take.")
    connect_timeout_s: float = Field(
        60.0,
        gt=0,
        description=(
            "Longest connecting (start, handshake, tool list) may take; generous because a "
            "server started with npx or uvx may first download itself."
        ),
    )

    @model_validator(mode="after")
    def _one_transport(self) -> MCPServerSettings:
        if (self.command is None) == (self.url is None):
            raise ValueError(f"MCP server {self.name!r}: set either command (stdio) or url (HTTP)")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"MCP server {self.name!r}: url must start with http:// or https://")
        if self.headers and self.url is None:
            raise ValueError(f"MCP server {self.name!r}: headers are for the HTTP transport (url)")
        return self


ALWAYS_LOADED = ["create_reminder", "current_time", "remember", "search_memory"]


class ToolsSettings(ToolLoopSettings):
    """All of ``[tools]``: the agent loop's settings (``ToolLoopSettings``) and the MCP servers."""

    always_loaded: list[str] = Field(
        default_factory=lambda: list(ALWAYS_LOADED),
        description=(
            "Tools whose definitions every prompt carries; the others (MCP tools too, unless "
            "named here, as server__tool) wait until the model searches for them, where the "
            "provider can (Anthropic)."
        ),
    )
    tool_search: bool = Field(
        True,
        description=(
            "Let the model search for the tools not in always_loaded instead of sending every "
            "definition with every prompt. A model without tool search (Claude Haiku 4.5, "
            "Claude 3) gets every definition after its first refusal; off spares that try."
        ),
    )

    mcp: list[MCPServerSettings] = Field(
        default_factory=list, description="MCP servers, one [[tools.mcp]] table each."
    )

    @property
    def deferring(self) -> list[str] | None:
        """The registry's ``always_loaded``: None (defer nothing) with tool search off."""
        return self.always_loaded if self.tool_search else None

    mcp_restart_min_s: float = Field(
        1.0, gt=0, description="First wait before reconnecting to an MCP server that died."
    )
    mcp_restart_max_s: float = Field(
        300.0, gt=0, description="Longest wait between reconnection attempts (doubling)."
    )
    mcp_ping_interval_s: float = Field(
        30.0, gt=0, description="How often a connected MCP server is pinged to see it lives."
    )

    @model_validator(mode="after")
    def _unique_names(self) -> ToolsSettings:
        names = [s.name for s in self.mcp]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"MCP server names must be unique: {', '.join(twice)}")
        return self
