"""Chat templates in the forms open models call tools in, and a model whose ``generate`` replies
from a script: the lowest seam of the local provider, under the real tokenizer and template."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from agents.training.base_model import load_tokenizer
from agents.training.local_provider import LocalEngine, LocalProvider

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
