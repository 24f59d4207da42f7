"""Reading tool calls out of a local model's reply, in the form its chat template teaches.

Open models whose chat templates take ``tools`` write a call in one of a few forms:

- ``hermes``: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, one block per call
  (Hermes, Qwen 2.5 and later, SmolLM3 and the templates derived from them);
- ``mistral``: ``[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]`` (Mistral 7B v0.3, Nemo,
  Small), or ``[TOOL_CALLS]name[ARGS]{...}`` per call in the newer templates;
- ``llama``: the whole reply is ``{"name": ..., "parameters": {...}}`` (Llama 3.1 and 3.2 JSON
  tool calling), perhaps after ``<|python_tag|>``, several separated by ``;``;
- ``json``: the whole reply is a JSON call object or an array of them, when the template's tool
  instructions ask for JSON and mention no marker.

``tool_format`` chooses the form from the chat template's text (the markers it mentions), never
from the model's name. When the tokenizer ships its own ``response_template``, transformers'
``parse_response`` reads the reply instead: that is the maintained path, and the form is then
``response_template``. The other forms are read here by hand because few model repositories ship
a response template yet (``parse_response`` refuses to run without one), and because the
``llama`` and ``json`` forms have no opening marker: a reply is a call only when the whole of it
parses as one, a decision about the whole reply that a region-based response template does not
make.

Bad output never raises. Where a marker says the model meant to call (``<tool_call>``,
``[TOOL_CALLS]``) but what follows is not a call, it becomes a call with ``invalid_input``, so the
agent loop tells the model its arguments were not a JSON object; a reply without a marker that
does not parse as a call is plain text.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from loguru import logger

from agents.providers.base import ToolUseBlock

FORMATS = ("response_template", "hermes", "mistral", "llama", "json")
# The special tokens each form needs kept in the decoded text (the rest are dropped).
MARKERS: dict[str, tuple[str, ...]] = {
    "hermes": ("<tool_call>", "</tool_call>"),
    "mistral": ("[TOOL_CALLS]", "[ARGS]", "[CALL_ID]"),
    "llama": ("<|python_tag|>",),
    "json": (),
}
_HERMES = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S)
_CALL_KEYS = {"name", "arguments", "parameters", "type", "id"}
_decoder = json.JSONDecoder()


def tool_format(templates: list[str], response_template: Any = None) -> str | None:
    """The form tool calls take for a model with these chat templates, or None when they do not
    take tools (or take them in a form not read here)."""
    texts = [t for t in templates if "tools" in t]
    if not texts:
        return None
    fields = response_template.get("fields") if isinstance(response_template, dict) else None
    if isinstance(fields, dict) and "tool_calls" in fields:
        return "response_template"
    for name, marker in (
        ("hermes", "<tool_call>"),
        ("mistral", "[TOOL_CALLS]"),
        ("llama", "<|python_tag|>"),
        ("llama", '"parameters"'),
    ):
        if any(marker in t for t in texts):
            return name
    if any("json" in t.lower() for t in texts):
        return "json"
    return None


def _call_id() -> str:
    return f"call_local_{uuid.uuid4().hex[:12]}"


def _invalid(raw: str) -> ToolUseBlock:
    return ToolUseBlock(_call_id(), "unknown", {}, raw[:500])


def _as_call(data: Any) -> ToolUseBlock | None:
    """A call from ``{"name": str, "arguments" | "parameters": object | JSON string}``, or None."""
    if isinstance(data, dict) and isinstance(data.get("function"), dict):
        data = data["function"]  # the OpenAI shape, which some templates echo
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return None
    args = data.get("arguments", data.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            pass
    if isinstance(args, dict):
        return ToolUseBlock(_call_id(), data["name"], args)
    return ToolUseBlock(_call_id(), data["name"], {}, json.dumps(args)[:500])


def _json_values(text: str) -> list[Any] | None:
    """The JSON values that make up all of ``text`` (separated by blanks, ``;`` or ``,``), or
    None when some of it is not JSON."""
    values: list[Any] = []
    i = 0
    while True:
        while i < len(text) and text[i] in " \t\r\n;,":
            i += 1
        if i == len(text):
            return values
        try:
            value, i = _decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            return None
        values.append(value)


def _whole_reply_calls(text: str) -> list[ToolUseBlock] | None:
    """The calls when the whole reply is JSON calls (objects, arrays of them), else None."""
    values = _json_values(text.strip())
    if not values:
        return None
    items = [v for value in values for v in (value if isinstance(value, list) else [value])]
    if not items or not all(isinstance(v, dict) and set(v) <= _CALL_KEYS for v in items):
        return None
    calls = [_as_call(v) for v in items]
    return None if any(c is None for c in calls) else calls  # type: ignore[return-value]


def _hermes(text: str) -> tuple[str, list[ToolUseBlock]]:
    calls: list[ToolUseBlock] = []
    for raw in _HERMES.findall(text):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            data = None
        calls.append(_as_call(data) or _invalid(raw))
    return _HERMES.sub("", text).strip(), calls


def _mistral(text: str) -> tuple[str, list[ToolUseBlock]]:
    head, marker, rest = text.partition("[TOOL_CALLS]")
    if not marker:
        return text.strip(), []
    calls: list[ToolUseBlock] = []
    for part in rest.split("[TOOL_CALLS]"):
        part = part.strip()
        if "[ARGS]" in part and not part.startswith(("[", "{")):  # name[ARGS]{...}
            name, _, args = part.partition("[ARGS]")
            name = name.split("[CALL_ID]")[0].strip()
            try:
                value, _end = _decoder.raw_decode(args.strip())
            except json.JSONDecodeError:
                value = None
            call = _as_call({"name": name, "arguments": value}) if value is not None else None
            calls.append(call or _invalid(part))
            continue
        try:
            value, _end = _decoder.raw_decode(part)
        except json.JSONDecodeError:
            calls.append(_invalid(part))
            continue
        items = value if isinstance(value, list) else [value]
        calls += [_as_call(v) or _invalid(json.dumps(v)) for v in items]
    return head.strip(), calls


def _whole(text: str, prefix: str = "") -> tuple[str, list[ToolUseBlock]]:
    body = text.strip()
    if prefix and body.startswith(prefix):
        body = body[len(prefix) :]
    calls = _whole_reply_calls(body)
    if calls is None:
        return text.replace(prefix, "").strip() if prefix else text.strip(), []
    return "", calls


def parse_tool_calls(text: str, form: str = "hermes") -> tuple[str, list[ToolUseBlock]]:
    """The reply's text without its calls, and the calls, read in the given form."""
    if form == "mistral":
        return _mistral(text)
    if form == "llama":
        return _whole(text, "<|python_tag|>")
    if form == "json":
        return _whole(text)
    return _hermes(text)


def parse_with_response_template(
    tokenizer: Any, text: str, prompt: str, tools: list[dict[str, Any]]
) -> tuple[str, list[ToolUseBlock]]:
    """The reply read by transformers' ``parse_response`` with the tokenizer's own
    ``response_template``; what it cannot read is plain text."""
    try:
        message = tokenizer.parse_response(text, prefix=prompt, tools=tools)
    except Exception:  # a model's bad output, or a template transformers rejects: text, logged
        logger.opt(exception=True).info("the response template could not read the reply")
        return text.strip(), []
    content = message.get("content") if isinstance(message, dict) else None
    raw_calls = message.get("tool_calls") if isinstance(message, dict) else None
    calls = [
        _as_call(c) or _invalid(json.dumps(c, default=str))
        for c in (raw_calls if isinstance(raw_calls, list) else [])
    ]
    return (content if isinstance(content, str) else "").strip(), calls
