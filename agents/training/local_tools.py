"""Tool use for the local provider, through the tokenizer's chat template.

Hugging Face chat templates take ``tools`` (JSON schemas of functions) and render assistant tool
calls and ``tool`` messages themselves; what differs between model families is how the model
writes a call (``local_tool_calls`` reads each form). A base model whose template takes tools in
a form we read says ``capabilities.tools``; any other says it has none, and the agent answers
without tools. Prompts without tools are rendered exactly as in training.

Deferred definitions (``ToolDef.deferred``) are rendered like the others: no search runs on
the model's side to find them, and a prompt that gained definitions within an answer would
lose the prefix the engine has already computed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from agents.providers.base import (
    TextBlock,
    ToolDef,
    ToolResultBlock,
    ToolUseBlock,
    content_text,
)
from agents.training.local_tool_calls import tool_format


def _templates(root: Path) -> tuple[list[str], Any]:
    """The chat templates of a model directory and its ``response_template``, read from the
    files without loading the tokenizer."""
    texts: list[str] = []
    jinja = root / "chat_template.jinja"
    if jinja.is_file():
        texts.append(jinja.read_text(encoding="utf-8", errors="replace"))
    config_path = root / "tokenizer_config.json"
    config: Any = {}
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            config = {}
    if not isinstance(config, dict):
        config = {}
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: [{"name": ..., "template": ...}]
        texts += [t.get("template", "") for t in template if isinstance(t, dict)]
    elif isinstance(template, str):
        texts.append(template)
    return texts, config.get("response_template")


def template_tool_format(
    base_model: Path | str | None, response_template: bool = True
) -> str | None:
    """The form of tool calls (``local_tool_calls.FORMATS``) the model directory's chat template
    teaches, or None when it takes no tools in a form we read. ``response_template`` False:
    the form its markers teach, whether or not the tokenizer ships a response template."""
    if base_model is None:
        return None
    texts, parser = _templates(Path(base_model).expanduser())
    return tool_format(texts, parser if response_template else None)


def template_takes_tools(base_model: Path | str | None) -> bool:
    return template_tool_format(base_model) is not None


def function_schemas(tools: list[ToolDef]) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {
                "name": t.name,
                "description": t.description,
                "parameters": t.input_schema,
            },
        }
        for t in tools
    ]


def template_call_id(call_id: str) -> str:
    """The id a call and its result carry into the template: 9 letters and digits derived from
    ours, the same for both halves. Mistral's templates raise for any other length, and ours
    (``call_local_…``, ``toolu_…`` of an answer begun on another provider) are longer."""
    return hashlib.sha256(call_id.encode()).hexdigest()[:9]


def template_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Block messages in the chat-template shape: assistant ``tool_calls``, ``tool`` messages."""
    out: list[dict[str, Any]] = []
    for m in messages:
        content = m["content"]
        if isinstance(content, str):
            out.append({"role": m["role"], "content": content})
            continue
        if m["role"] == "assistant":
            calls = [b for b in content if isinstance(b, ToolUseBlock)]
            turn: dict[str, Any] = {"role": "assistant", "content": content_text(content)}
            if calls:
                turn["tool_calls"] = [
                    {
                        "id": template_call_id(c.id),
                        "type": "function",
                        "function": {"name": c.name, "arguments": c.input},
                    }
                    for c in calls
                ]
            out.append(turn)
            continue
        out += [
            {"role": "tool", "content": b.content, "tool_call_id": template_call_id(b.tool_use_id)}
            for b in content
            if isinstance(b, ToolResultBlock)
        ]
        text = "\n\n".join(b.text for b in content if isinstance(b, TextBlock))
        if text:
            out.append({"role": "user", "content": text})
    return out
