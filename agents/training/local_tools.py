"""Tool use for the local provider, through the tokenizer's chat template.

Hugging Face chat templates take ``tools`` (JSON schemas of functions) and render assistant tool
calls and ``tool`` messages themselves; what differs between model families is how the model
writes a call. We support the ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` form
(Hermes, Qwen 2.5 and later, and the templates derived from them): a base model whose template
takes tools and uses that form says ``capabilities.tools``; any other says it has none, and the
agent answers without tools. Prompts without tools are rendered exactly as in training.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

from agents.providers.base import (
    TextBlock,
    ToolDef,
    ToolResultBlock,
    ToolUseBlock,
    content_text,
)

_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S)


def template_takes_tools(base_model: Path | str | None) -> bool:
    """Whether the model directory's chat template takes tools in the ``<tool_call>`` form (read
    from the files, without loading the tokenizer)."""
    if base_model is None:
        return False
    root = Path(base_model).expanduser()
    texts: list[str] = []
    jinja = root / "chat_template.jinja"
    if jinja.is_file():
        texts.append(jinja.read_text(encoding="utf-8", errors="replace"))
    config = root / "tokenizer_config.json"
    if config.is_file():
        try:
            template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
        except (json.JSONDecodeError, UnicodeDecodeError):
            template = None
        if isinstance(template, list):  # named templates: [{"name": ..., "template": ...}]
            texts += [t.get("template", "") for t in template if isinstance(t, dict)]
        elif isinstance(template, str):
            texts.append(template)
    return any("tools" in t and "<tool_call>" in t for t in texts)


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
                    {"type": "function", "function": {"name": c.name, "arguments": c.input}}
                    for c in calls
                ]
            out.append(turn)
            continue
        out += [
            {"role": "tool", "content": b.content}
            for b in content
            if isinstance(b, ToolResultBlock)
        ]
        text = "\n\n".join(b.text for b in content if isinstance(b, TextBlock))
        if text:
            out.append({"role": "user", "content": text})
    return out


def parse_tool_calls(text: str) -> tuple[str, list[ToolUseBlock]]:
    """The text without its ``<tool_call>`` blocks, and the calls they hold (a block that is not
    ``{"name": str, "arguments": object}`` becomes a call with ``invalid_input``)."""
    calls: list[ToolUseBlock] = []
    for raw in _CALL.findall(text):
        call_id = f"call_local_{uuid.uuid4().hex[:12]}"
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            calls.append(ToolUseBlock(call_id, "unknown", {}, raw[:500]))
            continue
        args = data.get("arguments", data.get("parameters", {}))
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                pass
        if isinstance(args, dict):
            calls.append(ToolUseBlock(call_id, data["name"], args))
        else:
            calls.append(ToolUseBlock(call_id, data["name"], {}, json.dumps(args)[:500]))
    return _CALL.sub("", text).strip(), calls
