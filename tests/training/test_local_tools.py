"""Tool use on the local provider: a base model whose chat template takes tools offers them,
one without does not; block messages render through the real template; calls are parsed."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from agents.providers.base import (
    LLMRequest,
    TextBlock,
    ToolDef,
    ToolResultBlock,
    ToolUseBlock,
)
from agents.training.base_model import load_tokenizer
from agents.training.local_provider import LocalEngine, LocalProvider
from agents.training.local_tool_calls import parse_tool_calls
from agents.training.local_tools import (
    function_schemas,
    template_messages,
    template_takes_tools,
)

TEMPLATE = (
    "{%- if tools %}<|system|>\nTools:\n{% for t in tools %}{{ t | tojson }}\n{% endfor %}"
    'Call one as <tool_call>{"name": ..., "arguments": {...}}</tool_call>\n{% endif %}'
    "{%- for m in messages %}<|{{ m.role }}|>\n"
    "{%- if m.tool_calls %}{% for c in m.tool_calls %}<tool_call>{{ c.function | tojson }}"
    "</tool_call>{% endfor %}{% endif %}{{ m.content }}\n{% endfor %}"
    "{%- if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
TIME = ToolDef("current_time", "The time now.", {"type": "object", "properties": {}})


@pytest.fixture(scope="module")
def tool_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a chat template that takes tools."""
    root = tmp_path_factory.mktemp("tool-model") / "model"
    shutil.copytree(tiny_model, root)
    config_path = root / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = TEMPLATE
    config_path.write_text(json.dumps(config))
    (root / "chat_template.jinja").unlink(missing_ok=True)
    return root


def test_tools_only_where_the_template_takes_them(tiny_model: Path, tool_model: Path) -> None:
    assert template_takes_tools(tool_model) and not template_takes_tools(tiny_model)
    assert LocalProvider(LocalEngine(tool_model, device="cpu")).capabilities.tools
    assert not LocalProvider(LocalEngine(tiny_model, device="cpu")).capabilities.tools
    assert not template_takes_tools(None)


def test_block_messages_render_through_the_template(tool_model: Path) -> None:
    tok = load_tokenizer(tool_model)
    turns = [
        {"role": "user", "content": "what time is it?"},
        {
            "role": "assistant",
            "content": [TextBlock("Checking."), ToolUseBlock("c1", "current_time", {})],
        },
        {"role": "user", "content": [ToolResultBlock("c1", "Tuesday 09:30")]},
    ]
    prompt = tok.apply_chat_template(
        template_messages(turns),
        tools=function_schemas([TIME]),
        tokenize=False,
        add_generation_prompt=True,
    )
    assert '"name": "current_time"' in prompt and "The time now." in prompt
    assert '<tool_call>{"name": "current_time", "arguments": {}}</tool_call>Checking.' in prompt
    assert "<|tool|>Tuesday 09:30" in prompt and prompt.endswith("<|assistant|>\n")


def test_a_request_with_tools_runs_on_the_model(tool_model: Path) -> None:
    provider = LocalProvider(LocalEngine(tool_model, device="cpu"))
    request = LLMRequest([{"role": "user", "content": "hi"}], max_tokens=8, tools=[TIME])
    result = asyncio.run(provider.complete(request))
    assert result.usage.input_tokens > 20  # the tool definitions are in the prompt
    assert result.stop_reason in ("end_turn", "max_tokens", "tool_use")


def test_tool_calls_are_parsed_from_the_text() -> None:
    text, calls = parse_tool_calls(
        'Let me look.\n<tool_call>\n{"name": "search_memory", "arguments": {"query": "lease"}}\n'
        '</tool_call><tool_call>{"name": "current_time", "arguments": "{}"}</tool_call>'
        "<tool_call>not json</tool_call>"
    )
    assert text == "Let me look."
    assert [(c.name, c.input, c.invalid_input) for c in calls] == [
        ("search_memory", {"query": "lease"}, None),
        ("current_time", {}, None),
        ("unknown", {}, "not json"),
    ]
    assert len({c.id for c in calls}) == 3
