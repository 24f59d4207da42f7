"""The ``local`` provider: one base model in this process, LoRA adapters hot-swapped per persona.

``LocalEngine`` loads the base model once (lazily, off the event loop) and keeps a bounded LRU
of loaded adapters in one peft model: ``load_adapter`` on a miss, ``set_adapter`` to switch,
``delete_adapter`` to evict. Generation runs in a worker thread under a lock, because switching
adapters changes the one shared model. ``LocalProvider`` is the ``Provider`` over it; its
``for_archetype(name)`` is the same engine answering with that archetype's promoted adapter
(from the registry, checksums verified), or the base model when none is promoted. Prompts are
rendered exactly as in training (``data.render``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.errors import ProviderRejected, ProviderUnavailable
from agents.providers.base import (
    Capabilities,
    Completion,
    LLMRequest,
    Provider,
    ToolUseBlock,
    Usage,
    content_text,
    normalise_turns,
)
from agents.training.base_model import load_base, pick_device
from agents.training.data import render
from agents.training.errors import BaseModelError, RegistryError
from agents.training.local_tool_calls import (
    MARKERS,
    parse_tool_calls,
    parse_with_response_template,
)
from agents.training.local_tools import (
    function_schemas,
    template_messages,
    template_tool_format,
)
from agents.training.registry import AdapterRegistry


@dataclass(frozen=True)
class AdapterRef:
    """An adapter to serve: ``key`` names it inside the peft model (unique per version)."""

    key: str
    path: Path


class LocalEngine:
    def __init__(
        self,
        base_model: Path | None,
        *,
        lru_size: int = 4,
        device: str | None = None,
        load: Callable[[Path | None, Any], tuple[Any, Any]] = load_base,
    ) -> None:
        """``load`` gives (model, tokenizer) for the directory: ``load_base``, or in tests a
        model whose ``generate`` replies from a script, with the real tokenizer."""
        self.base_model = base_model
        self._load = load
        self.lru_size = max(1, lru_size)
        self.device = pick_device(device)
        self._lock = threading.Lock()
        self._model: Any = None  # the base model, then the PeftModel wrapping it
        self._tokenizer: Any = None
        self._peft = False
        self.loaded: OrderedDict[str, Path] = (
            OrderedDict()
        )  # adapter key → path, least recent first
        self.loads = 0  # adapters loaded from disk so far (evictions make it grow)
        self._tool_format: str | None = None
        self._format_read = False

    def _ensure_base(self) -> None:
        if self._model is None:
            model, self._tokenizer = self._load(self.base_model, self.device)
            self._model = model.eval()

    def _activate(self, adapter: AdapterRef | None) -> None:
        from peft import PeftModel

        if adapter is None:
            return
        if adapter.key in self.loaded:
            self.loaded.move_to_end(adapter.key)
        else:
            if not self._peft:
                self._model = PeftModel.from_pretrained(
                    self._model, str(adapter.path), adapter_name=adapter.key
                )
                self._peft = True
            else:
                self._model.load_adapter(str(adapter.path), adapter_name=adapter.key)
            self.loads += 1
            self.loaded[adapter.key] = adapter.path
        self._model.set_adapter(adapter.key)
        self._model.eval()
        while len(self.loaded) > self.lru_size:
            oldest, _ = self.loaded.popitem(last=False)
            self._model.delete_adapter(oldest)

    @property
    def tool_format(self) -> str | None:
        """The form of tool calls the base model's chat template teaches (``local_tool_calls``),
        None when it takes no tools; read from the files once."""
        if not self._format_read:
            self._tool_format = template_tool_format(self.base_model)
            self._format_read = True
        return self._tool_format

    @property
    def takes_tools(self) -> bool:
        return self.tool_format is not None

    def _generate(
        self,
        messages: list[dict[str, Any]],
        adapter: AdapterRef | None,
        max_new_tokens: int,
        temperature: float | None,
        tools: list[dict[str, Any]] | None,
    ) -> tuple[str, list[int], int, bool]:
        """(prompt, new token ids, prompt tokens, ended by EOS); call it holding the lock."""
        import contextlib

        import torch

        self._ensure_base()
        self._activate(adapter)
        tok = self._tokenizer
        if tools:
            prompt = tok.apply_chat_template(
                messages, tools=tools, tokenize=False, add_generation_prompt=True
            )
        else:
            prompt = render(tok, messages, add_generation_prompt=True)
        ids = tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"].to(
            self.device
        )
        sampling = (
            {"do_sample": True, "temperature": temperature} if temperature else {"do_sample": False}
        )
        base_only = adapter is None and self._peft
        stops = _stop_ids(self._model, tok)
        with (
            torch.inference_mode(),
            self._model.disable_adapter() if base_only else contextlib.nullcontext(),
        ):
            out = self._model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new_tokens,
                eos_token_id=stops,
                pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else stops[0],
                **sampling,
            )
        new = out[0, ids.shape[1] :].tolist()
        ended = bool(new) and new[-1] in stops
        return prompt, new, int(ids.shape[1]), ended

    def generate(
        self,
        messages: list[dict[str, Any]],
        adapter: AdapterRef | None,
        max_new_tokens: int,
        temperature: float | None = None,
    ) -> tuple[str, int, int, bool]:
        """(text, prompt tokens, new tokens, ended by EOS); blocking: call it off the event loop."""
        with self._lock:
            _, new, n_in, ended = self._generate(
                messages, adapter, max_new_tokens, temperature, None
            )
            text = self._tokenizer.decode(new, skip_special_tokens=True)
        return text.strip(), n_in, len(new), ended

    def generate_with_tools(
        self,
        messages: list[dict[str, Any]],
        adapter: AdapterRef | None,
        max_new_tokens: int,
        temperature: float | None,
        tools: list[dict[str, Any]],
    ) -> tuple[str, list[ToolUseBlock], int, int, bool]:
        """(text, tool calls, prompt tokens, new tokens, ended by EOS): the prompt goes through
        the chat template with ``tools`` and the calls are read in the template's form."""
        with self._lock:
            prompt, new, n_in, ended = self._generate(
                messages, adapter, max_new_tokens, temperature, tools
            )
            tok = self._tokenizer
            # Markers such as <tool_call> or [TOOL_CALLS] are often special tokens: decode them,
            # then drop the special tokens the form does not need (end of turn, padding).
            raw = tok.decode(new, skip_special_tokens=False)
        form = self.tool_format or "hermes"
        if form == "response_template" and getattr(tok, "response_template", None) is None:
            # a transformers too old to load response templates: the template's markers, if any
            form = template_tool_format(self.base_model, response_template=False) or "json"
        if form == "response_template":
            text, calls = parse_with_response_template(tok, raw, prompt, tools)
        else:
            text, calls = parse_tool_calls(_drop_specials(tok, raw, MARKERS[form]), form)
        return text, calls, n_in, len(new), ended


def _stop_ids(model: Any, tok: Any) -> list[int]:
    """The ids that end a reply: the tokenizer's EOS and those the model's generation config
    lists (Llama 3.1 ends a tool call with ``<|eom_id|>`` and a turn with ``<|eot_id|>``, both
    listed there, neither the tokenizer's EOS)."""
    ids = [tok.eos_token_id] if tok.eos_token_id is not None else []
    config = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for i in config if isinstance(config, list) else [config]:
        if isinstance(i, int) and i not in ids:
            ids.append(i)
    return ids


def _drop_specials(tok: Any, text: str, keep: tuple[str, ...]) -> str:
    specials = set(tok.all_special_tokens)
    specials |= {t.content for t in tok.added_tokens_decoder.values() if t.special}
    for special in sorted(specials - set(keep), key=len, reverse=True):
        if special:
            text = text.replace(special, "")
    return text


class LocalProvider(Provider):
    # Tools only where the base model's chat template takes them (``local_tools``); prompts
    # without tools are rendered exactly as in training (``data.render``).
    name = "local"

    def __init__(
        self,
        engine: LocalEngine,
        registry: AdapterRegistry | None = None,
        archetype: str | None = None,
        adapter: AdapterRef | None = None,
    ) -> None:
        self.engine = engine
        self.registry = registry
        self.archetype = archetype
        self.adapter = adapter
        self.model = archetype or (Path(engine.base_model).name if engine.base_model else "local")
        self.capabilities = Capabilities(temperature=True, tools=engine.takes_tools)

    def for_archetype(self, archetype: str | None) -> LocalProvider:
        """The same engine answering as ``archetype`` (None: the base model)."""
        return LocalProvider(self.engine, self.registry, archetype)

    def _resolve(self) -> AdapterRef | None:
        if self.adapter is not None or self.archetype is None or self.registry is None:
            return self.adapter
        promoted = self.registry.promoted(self.archetype)
        if promoted is None:
            return None
        return AdapterRef(f"{promoted.archetype}-{promoted.version}", promoted.path)

    async def complete(self, request: LLMRequest) -> Completion:
        tools = (
            function_schemas(request.tools) if request.tools and self.engine.takes_tools else None
        )
        turns = normalise_turns(request.messages)
        messages: list[dict[str, Any]] = (
            template_messages(turns)
            if tools
            else [{"role": m["role"], "content": content_text(m["content"])} for m in turns]
        )
        if not messages:
            raise ProviderRejected("there is no user message to answer", "send some text")
        system = request.full_system()
        if system:
            messages = [{"role": "system", "content": system}, *messages]
        started = time.monotonic()

        def generate() -> tuple[str, list[ToolUseBlock], int, int, bool]:
            # resolving reads the registry and checks the adapter's SHA-256: file work, off the loop too
            adapter = self._resolve()
            if tools:
                return self.engine.generate_with_tools(
                    messages, adapter, request.max_tokens, request.temperature, tools
                )
            text, n_in, n_out, ended = self.engine.generate(
                messages, adapter, request.max_tokens, request.temperature
            )
            return text, [], n_in, n_out, ended

        from jinja2 import TemplateError  # transformers renders chat templates with jinja2

        try:
            text, calls, n_in, n_out, ended = await asyncio.to_thread(generate)
        except (BaseModelError, RegistryError) as exc:
            raise ProviderUnavailable(f"the local model cannot answer: {exc}", exc.fix) from exc
        except TemplateError as exc:  # a template's own checks (Mistral's ids, role order)
            raise ProviderRejected(
                f"the base model's chat template refused this conversation: {exc}",
                "start the conversation again, or set tools.enabled = false for this model",
            ) from exc
        stop = "tool_use" if calls else ("end_turn" if ended else "max_tokens")
        return Completion(
            text,
            Usage(input_tokens=n_in, output_tokens=n_out),
            self.model,
            stop,
            time.monotonic() - started,
            calls,
        )


def local_factory(
    training: Any, registry: AdapterRegistry, device: str | None = None
) -> Callable[[Any], Provider]:
    """The ``local_factory`` that ``agents.providers.build_provider`` takes, from ``TrainingSettings``."""

    def build(_llm_settings: Any) -> Provider:
        engine = LocalEngine(training.base_model, lru_size=training.adapters_lru, device=device)
        return LocalProvider(engine, registry)

    return build
