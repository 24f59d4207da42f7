"""Tool calls on the local provider in each form open models write them: Hermes/Qwen
``<tool_call>``, Mistral ``[TOOL_CALLS]``, Llama 3.x JSON (with ``<|python_tag|>``), bare JSON,
and a tokenizer's own ``response_template`` (read by transformers' ``parse_response``).

The form is chosen from the chat template's text. A random model writes no calls, so the parsers
are checked on canned replies, and the provider end to end with the tiny model's real tokenizer
and a model whose ``generate`` replies from a script (the lowest seam: the prompt is rendered
through the real template and the reply decoded by the real tokenizer).
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from agents.errors import ProviderRejected
from agents.providers.base import LLMRequest, ToolDef, ToolResultBlock
from agents.training.base_model import load_tokenizer
from agents.training.local_provider import LocalEngine, LocalProvider
from agents.training.local_tool_calls import parse_tool_calls, tool_format
from agents.training.local_tools import template_tool_format
from tests.training.tool_templates import (
    BARE_JSON,
    HERMES,
    LLAMA,
    MISTRAL,
    NO_FORM,
    PLAIN,
    RESPONSE_TEMPLATE,
    ScriptedModel,
    model_dir,
    scripted_provider,
)

TIME = ToolDef("current_time", "The time now.", {"type": "object", "properties": {}})
SEARCH = ToolDef(
    "search_memory",
    "Search what the user said before.",
    {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
)


def calls_of(text: str, form: str) -> tuple[str, list[tuple[str, dict, str | None]]]:
    rest, calls = parse_tool_calls(text, form)
    return rest, [(c.name, c.input, c.invalid_input) for c in calls]


# -- choosing the form from the template --------------------------------------------------------


def test_the_form_is_read_from_the_templates_markers() -> None:
    assert tool_format([HERMES]) == "hermes"
    assert tool_format([MISTRAL]) == "mistral"
    assert tool_format([LLAMA]) == "llama"
    assert tool_format(["{% if tools %}<|python_tag|>{% endif %}"]) == "llama"
    assert tool_format([BARE_JSON]) == "json"
    assert tool_format([HERMES], RESPONSE_TEMPLATE) == "response_template"
    # A response template without tool calls does not teach a form; the markers still do.
    assert tool_format([LLAMA], {"fields": {"content": {}}}) == "llama"
    assert tool_format([NO_FORM]) is None
    assert tool_format([PLAIN]) is None and tool_format([]) is None
    # Markers in a template that never takes tools count for nothing.
    assert tool_format(["{{ '<tool_call>' }}{% for m in messages %}{% endfor %}"]) is None


# -- the parsers on canned replies --------------------------------------------------------------


def test_mistral_calls_in_both_shapes() -> None:
    assert calls_of(
        'Sure.[TOOL_CALLS] [{"name": "search_memory", "arguments": {"query": "lease"}},'
        ' {"name": "current_time", "arguments": {}}]',
        "mistral",
    ) == ("Sure.", [("search_memory", {"query": "lease"}, None), ("current_time", {}, None)])
    assert calls_of(
        '[TOOL_CALLS]search_memory[ARGS]{"query": "lease"}[TOOL_CALLS]current_time[ARGS]{}',
        "mistral",
    ) == ("", [("search_memory", {"query": "lease"}, None), ("current_time", {}, None)])
    assert calls_of("No tools needed: it is blue.", "mistral") == (
        "No tools needed: it is blue.",
        [],
    )


def test_llama_json_calls_with_and_without_the_python_tag() -> None:
    assert calls_of('{"name": "current_time", "parameters": {}}', "llama") == (
        "",
        [("current_time", {}, None)],
    )
    assert calls_of(
        '<|python_tag|>{"name": "search_memory", "parameters": {"query": "lease"}}; '
        '{"name": "current_time", "parameters": {}}',
        "llama",
    ) == ("", [("search_memory", {"query": "lease"}, None), ("current_time", {}, None)])
    # Arguments sent as a JSON string are read as the object they hold.
    assert calls_of('{"name": "search_memory", "parameters": "{\\"query\\": \\"x\\"}"}', "llama")[
        1
    ] == [("search_memory", {"query": "x"}, None)]


def test_bare_json_calls() -> None:
    assert calls_of(
        '[{"name": "search_memory", "arguments": {"query": "lease"}}, {"name": "current_time"}]',
        "json",
    ) == ("", [("search_memory", {"query": "lease"}, None), ("current_time", {}, None)])
    assert calls_of('{"name": "current_time", "arguments": {}}', "json")[1] == [
        ("current_time", {}, None)
    ]


@pytest.mark.parametrize(
    ("reply", "form"),
    [
        ('{"name": "current_time", "parameters": ', "llama"),  # cut off at the length limit
        ('<|python_tag|>{"name": "current_time", "param', "llama"),
        ('{"answer": 42, "unit": "m"}', "llama"),  # JSON, but not a call
        ('{"name": "x", "arguments": {}} and then some words', "json"),
        ("[1, 2, 3]", "json"),
        ("The capital of France is Paris.", "json"),
        ("", "llama"),
    ],
)
def test_a_reply_without_a_marker_that_is_not_a_call_is_plain_text(reply: str, form: str) -> None:
    text, calls = parse_tool_calls(reply, form)
    assert calls == []
    assert text == reply.replace("<|python_tag|>", "").strip()


@pytest.mark.parametrize(
    "reply",
    [
        "[TOOL_CALLS] [{",
        '[TOOL_CALLS] [{"name": 3}]',
        "[TOOL_CALLS]current_time[ARGS]{not json",
        '[TOOL_CALLS] [{"name": "current_time", "arguments": [1]}]',
    ],
)
def test_a_marked_call_that_is_broken_is_an_invalid_call_not_a_crash(reply: str) -> None:
    text, calls = parse_tool_calls(reply, "mistral")
    assert text == "" and len(calls) == 1
    assert calls[0].invalid_input is not None and calls[0].input == {}


# -- the provider end to end, the model's generate scripted -------------------------------------


REPLIES = {
    "hermes": 'Checking.<tool_call>{"name": "search_memory", "arguments": {"query": "lease"}}'
    "</tool_call>",
    "mistral": 'Checking.[TOOL_CALLS][{"name": "search_memory", "arguments": {"query": "lease"}}]',
    "llama": '<|python_tag|>{"name": "search_memory", "parameters": {"query": "lease"}}<|eom_id|>',
    "json": '[{"name": "search_memory", "arguments": {"query": "lease"}}]',
    "response_template": 'Checking.<tool_call>{"name": "search_memory", "arguments": '
    '{"query": "lease"}}</tool_call>',
}


@pytest.mark.parametrize("form", list(REPLIES))
def test_the_provider_offers_tools_and_reads_calls_in_the_templates_form(
    form: str, tiny_model: Path, tmp_path: Path
) -> None:
    path = model_dir(tiny_model, tmp_path, form)
    assert template_tool_format(path) == form
    provider, model = scripted_provider(path, [REPLIES[form], "It was in March."])
    assert provider.capabilities.tools

    ask = [{"role": "user", "content": "what did I say about the lease?"}]
    first = asyncio.run(provider.complete(LLMRequest(ask, max_tokens=64, tools=[TIME, SEARCH])))
    # The template rendered the tool definitions into the prompt the model was given.
    prompt = model.prompts[0]
    assert "Search what the user said before." in prompt and '"current_time"' in prompt
    assert [(c.name, c.input, c.invalid_input) for c in first.tool_calls] == [
        ("search_memory", {"query": "lease"}, None)
    ]
    assert first.stop_reason == "tool_use"
    assert first.text == ("" if form in ("llama", "json") else "Checking.")

    # The call and its result go back through the template; a reply without a call is the answer.
    turns = [
        *ask,
        {"role": "assistant", "content": first.blocks()},
        {
            "role": "user",
            "content": [
                ToolResultBlock(first.tool_calls[0].id, "#4 [2026-03-02] the lease ends in May")
            ],
        },
    ]
    second = asyncio.run(provider.complete(LLMRequest(turns, max_tokens=64, tools=[TIME, SEARCH])))
    assert "the lease ends in May" in model.prompts[1]
    if form == "mistral":  # the call and its result are paired by one 9-character id
        (call_id,) = re.findall(r'"id": "(\w+)"', model.prompts[1])
        assert len(call_id) == 9 and f'"call_id": "{call_id}"' in model.prompts[1]
    assert (second.text, second.tool_calls, second.stop_reason) == (
        "It was in March.",
        [],
        "end_turn",
    )


def test_a_llama_call_ends_at_eom_as_its_generation_config_says(
    tiny_model: Path, tmp_path: Path
) -> None:
    # Llama 3.1 ends a call with <|eom_id|>, which is not the tokenizer's EOS: a model stopped
    # only at EOS would go on talking after the call, and the reply would no longer be one.
    path = model_dir(tiny_model, tmp_path, "llama")
    reply = (
        '<|python_tag|>{"name": "search_memory", "parameters": {"query": "lease"}}<|eom_id|>'
        "<|start_header_id|>assistant<|end_header_id|>I will now look it up"
    )
    provider, _ = scripted_provider(path, [reply], eos=["<|eom_id|>", "<|eot_id|>"])
    request = LLMRequest([{"role": "user", "content": "hi"}], max_tokens=64, tools=[SEARCH])
    result = asyncio.run(provider.complete(request))
    assert [(c.name, c.input) for c in result.tool_calls] == [("search_memory", {"query": "lease"})]
    assert result.text == "" and result.stop_reason == "tool_use"


def test_broken_output_from_the_model_is_plain_text_on_the_provider(
    tiny_model: Path, tmp_path: Path
) -> None:
    path = model_dir(tiny_model, tmp_path, "llama")
    broken = '<|python_tag|>{"name": "search_memory", "parameters": {"query": <|eot_id|>'
    provider, _ = scripted_provider(path, [broken])
    request = LLMRequest([{"role": "user", "content": "hi"}], max_tokens=64, tools=[SEARCH])
    result = asyncio.run(provider.complete(request))
    assert result.tool_calls == [] and result.stop_reason == "end_turn"
    assert result.text == '{"name": "search_memory", "parameters": {"query":'


def test_a_response_template_that_cannot_read_the_reply_leaves_text(
    tiny_model: Path, tmp_path: Path
) -> None:
    path = model_dir(tiny_model, tmp_path, "response_template")
    provider, _ = scripted_provider(path, ["<tool_call>{not json</tool_call>"])
    request = LLMRequest([{"role": "user", "content": "hi"}], max_tokens=64, tools=[SEARCH])
    result = asyncio.run(provider.complete(request))
    assert result.tool_calls == [] and "not json" in result.text


def test_without_tools_the_prompt_is_the_training_render(tiny_model: Path, tmp_path: Path) -> None:
    path = model_dir(tiny_model, tmp_path, "mistral")
    provider, model = scripted_provider(path, ["Hello."])
    result = asyncio.run(
        provider.complete(LLMRequest([{"role": "user", "content": "hi"}], max_tokens=8))
    )
    assert result.text == "Hello." and "[AVAILABLE_TOOLS]" not in model.prompts[0]
    assert json.dumps("current_time") not in model.prompts[0]


def test_a_template_that_refuses_the_conversation_is_a_clear_rejection(
    tiny_model: Path, tmp_path: Path
) -> None:
    path = model_dir(tiny_model, tmp_path, "hermes")
    tok = load_tokenizer(path)
    tok.chat_template = (
        HERMES + "{% if tools %}{{ raise_exception('roles must alternate') }}{% endif %}"
    )
    tok.save_pretrained(path)
    provider, model = scripted_provider(path, ["never"])
    request = LLMRequest([{"role": "user", "content": "hi"}], max_tokens=8, tools=[TIME])
    with pytest.raises(ProviderRejected, match="chat template refused .*roles must alternate"):
        asyncio.run(provider.complete(request))
    assert model.prompts == []  # nothing was generated


def test_a_transformers_that_does_not_load_response_templates_falls_back_to_the_markers(
    tiny_model: Path, tmp_path: Path
) -> None:
    path = model_dir(tiny_model, tmp_path, "response_template")
    tok = load_tokenizer(path)
    tok.response_template = None  # as a transformers before response templates loads it
    model = ScriptedModel(tok, [REPLIES["hermes"]])
    engine = LocalEngine(path, device="cpu", load=lambda _path, _device: (model, tok))
    request = LLMRequest([{"role": "user", "content": "hi"}], max_tokens=64, tools=[SEARCH])
    result = asyncio.run(LocalProvider(engine).complete(request))
    assert [(c.name, c.input) for c in result.tool_calls] == [("search_memory", {"query": "lease"})]
    assert result.text == "Checking."
