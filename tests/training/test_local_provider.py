"""The local provider: one base model, two trained adapters served alternately, LRU eviction."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agents.errors import ProviderUnavailable
from agents.providers.base import LLMRequest
from agents.training.local_provider import LocalEngine, LocalProvider
from agents.training.registry import AdapterRegistry
from agents.training.trainer import train

from .conftest import conversations, write_jsonl
from .test_trainer import config


@pytest.fixture(scope="module")
def registry(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> AdapterRegistry:
    """Two personas trained on the same questions with different answer styles, both promoted."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see conftest.one_torch_thread
    root = tmp_path_factory.mktemp("personas")
    reg = AdapterRegistry(root / "adapters")
    for name, style in (("pirate", "Arr! "), ("butler", "Indeed, ")):
        data = write_jsonl(root / f"{name}.jsonl", conversations(style))
        result = train(
            config(tiny_model, data, root / name, steps=40, lr=2e-2, checkpoint_every=100)
        )
        version = reg.add(name, result.adapter_dir, {"final_loss": result.final_loss})
        reg.promote(name, version.version)
    torch.set_num_threads(threads)
    return reg


def ask(provider: LocalProvider, text: str = "What colour is the sky?") -> str:
    request = LLMRequest(messages=[{"role": "user", "content": text}], max_tokens=12)
    return asyncio.run(provider.complete(request)).text


@pytest.mark.parametrize("lru_size", [1, 2])
def test_two_adapters_alternate_on_one_base_model(
    tiny_model: Path, registry: AdapterRegistry, lru_size: int
) -> None:
    engine = LocalEngine(tiny_model, lru_size=lru_size, device="cpu")
    local = LocalProvider(engine, registry)
    pirate, butler, base = (
        local.for_archetype("pirate"),
        local.for_archetype("butler"),
        local.for_archetype(None),
    )
    order = [pirate, butler, pirate, base, butler, pirate]
    answers = [ask(p) for p in order]
    by_persona: dict[int, set[str]] = {}
    for provider, answer in zip(order, answers, strict=True):
        by_persona.setdefault(id(provider), set()).add(answer)
    assert all(len(seen) == 1 for seen in by_persona.values()), (
        answers
    )  # switching back gives the same answer
    p, b, plain = answers[0], answers[1], answers[3]
    assert len({p, b, plain}) == 3, answers
    assert len(engine.loaded) == lru_size
    assert engine.loads == (5 if lru_size == 1 else 2)  # with room for one, every switch reloads


def test_unknown_persona_falls_back_to_base_and_bad_model_is_unavailable(
    tiny_model: Path, registry: AdapterRegistry, tmp_path: Path
) -> None:
    local = LocalProvider(LocalEngine(tiny_model, device="cpu"), registry)
    assert ask(local.for_archetype("nobody-yet")) == ask(local)
    broken = LocalProvider(LocalEngine(tmp_path / "missing", device="cpu"), registry)
    with pytest.raises(ProviderUnavailable, match="does not exist"):
        ask(broken)
