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
import shutil
from pathlib import Path
from typing import Any

import pytest

from agents.errors import ProviderRejected
from agents.providers.base import LLMRequest, ToolDef, ToolResultBlock
from agents.training.base_model import load_tokenizer
from agents.training.local_provider import LocalEngine, LocalProvider
from agents.training.local_tool_calls import parse_tool_calls, tool_format
from agents.training.local_tools import template_tool_format

TIME = ToolDef("current_time", "The time now.", {"type": "object", "properties": {}})
SEARCH = ToolDef(
    "search_memory",
    "Search what the user said before.",
    {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
)

HERMES = (
    "{%- if tools %}<|system|>\nTools:\n{% for t in tools %}{{ t | tojson }}\n{% endfor %}"
    'Call one as <tool_call>{"name": ..., "arguments": {...}}</tool_call>\n{% endif %}'
    "{%- for m in messages %}<|{{ m.role }}|>\n{{ m.content }}\n{% endfor %}"
    "{%- if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
MISTRAL = (  # as Mistral's published templates, it refuses call ids not 9 characters long
    "{%- for m in messages %}{%- if m.role == 'user' %}"
    "{%- if tools and loop.last %}[AVAILABLE_TOOLS]{{ tools | tojson }}[/AVAILABLE_TOOLS]"
    "{% endif %}[INST]{{ m.content }}[/INST]"
    "{%- elif m.tool_calls is defined and m.tool_calls %}[TOOL_CALLS][{% for c in m.tool_calls %}"
    "{%- if c.id is not defined or c.id | length != 9 %}"
    "{{ raise_exception('Tool call IDs should be alphanumeric strings with length 9!') }}"
    '{% endif %}{{ (c.function | tojson)[:-1] }}, "id": "{{ c.id }}"}'
    "{% if not loop.last %}, {% endif %}{% endfor %}]</s>"
    "{%- elif m.role == 'assistant' %}{{ m.content }}</s>"
    "{%- elif m.role == 'tool' %}"
    "{%- if m.tool_call_id is not defined or m.tool_call_id | length != 9 %}"
    "{{ raise_exception('Tool call IDs should be alphanumeric strings with length 9!') }}"
    '{% endif %}[TOOL_RESULTS]{"content": {{ m.content | tojson }}, "call_id": '
    '"{{ m.tool_call_id }}"}[/TOOL_RESULTS]'
    "{%- else %}{{ m.content }}\n\n{% endif %}{% endfor %}"
)
LLAMA = (
    "{%- if tools %}<|start_header_id|>system<|end_header_id|>\n"
    "Given the following functions, please respond with a JSON for a function call with its "
    "proper arguments that best answers the given prompt.\n"
    'Respond in the format {"name": function name, "parameters": dictionary of argument name '
    "and its value}. Do not use variables.\n{% for t in tools %}{{ t | tojson }}\n{% endfor %}"
    "<|eot_id|>{% endif %}{%- for m in messages %}<|start_header_id|>{{ m.role }}"
    "<|end_header_id|>\n{{ m.content }}<|eot_id|>{% endfor %}"
    "{%- if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n{% endif %}"
)
BARE_JSON = (
    "{%- if tools %}<|system|>\nYou may call these functions. To call them, reply with nothing "
    "but a JSON list of objects with a name and arguments.\n"
    "{% for t in tools %}{{ t | tojson }}\n{% endfor %}{% endif %}"
    "{%- for m in messages %}<|{{ m.role }}|>\n{{ m.content }}\n{% endfor %}"
    "{%- if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
NO_FORM = (  # takes tools, but says nothing of how to call them
    "{%- if tools %}Tools: {{ tools | length }}\n{% endif %}"
    "{%- for m in messages %}{{ m.content }}\n{% endfor %}"
)
PLAIN = "{%- for m in messages %}<|{{ m.role }}|>\n{{ m.content }}\n{% endfor %}"
RESPONSE_TEMPLATE = {
    "defaults": {"role": "assistant"},
    "start_anchor": "<|assistant|>\n",
    "fields": {
        "tool_calls": {
            "open": "<tool_call>",
            "close": "</tool_call>",
            "repeats": True,
            "content": "json",
            "transform": {"type": "function", "function": "{content}"},
        },
        "content": {"close": "</s>", "content": "text"},
    },
}
# Special tokens of each form, as the real tokenizers have them.
SPECIALS = {
    "hermes": ["<tool_call>", "</tool_call>"],
    "mistral": ["[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[INST]", "[/INST]"],
    "llama": ["<|python_tag|>", "<|eom_id|>", "<|eot_id|>"],
    "json": [],
    "response_template": ["<tool_call>", "</tool_call>"],
}
TEMPLATES = {
    "hermes": HERMES,
    "mistral": MISTRAL,
    "llama": LLAMA,
    "json": BARE_JSON,
    "response_template": HERMES,
}


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


class ScriptedModel:
    """Stands in for the causal LM at its ``generate`` seam: each call answers with the next
    scripted reply, encoded by the real tokenizer (special tokens become their ids), and keeps
    the prompt it was given, decoded."""

    def __init__(
        self, tokenizer: Any, replies: list[str], eos_token_id: list[int] | None = None
    ) -> None:
        from transformers import GenerationConfig

        self.tokenizer = tokenizer
        self.replies = list(replies)
        self.prompts: list[str] = []
        self.generation_config = GenerationConfig(
            eos_token_id=eos_token_id or tokenizer.eos_token_id
        )

    def eval(self) -> ScriptedModel:
        return self

    def generate(self, input_ids: Any, eos_token_id: int | list[int], **_: Any) -> Any:
        """As ``transformers`` generates: the reply ends at the first of the ``eos_token_id``."""
        import torch

        stops = eos_token_id if isinstance(eos_token_id, list) else [eos_token_id]
        self.prompts.append(self.tokenizer.decode(input_ids[0].tolist()))
        reply = self.tokenizer(self.replies.pop(0), add_special_tokens=False)["input_ids"]
        reply.append(stops[0])
        reply = reply[: next(i for i, t in enumerate(reply) if t in stops) + 1]
        return torch.cat([input_ids, torch.tensor([reply])], dim=1)


def model_dir(tiny_model: Path, root: Path, form: str) -> Path:
    """The tiny model's tokenizer with the form's chat template and special tokens."""
    path = root / form
    shutil.copytree(tiny_model, path)
    tok = load_tokenizer(path)
    if SPECIALS[form]:
        tok.add_special_tokens({"additional_special_tokens": SPECIALS[form]})
    tok.chat_template = TEMPLATES[form]
    if form == "response_template":
        tok.response_template = RESPONSE_TEMPLATE
    tok.save_pretrained(path)
    return path


def scripted_provider(
    path: Path, replies: list[str], eos: list[str] | None = None
) -> tuple[LocalProvider, ScriptedModel]:
    """The provider over the directory's tokenizer and a scripted model; ``eos``: the tokens
    the model's generation config ends replies with (besides the tokenizer's EOS)."""
    tok = load_tokenizer(path)
    stops = [tok.eos_token_id, *tok.convert_tokens_to_ids(eos)] if eos else None
    model = ScriptedModel(tok, replies, stops)
    engine = LocalEngine(path, device="cpu", load=lambda _path, _device: (model, model.tokenizer))
    return LocalProvider(engine), model


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
