"""The model side of an adapter's evaluation: held-out loss, and both models' probe answers.

The held-out loss is the same token-weighted loss as in training, over the held-out split, with
and without the adapter. Each probe is answered by both; the review panel then judges the answers
blind and the promotion gate decides (``agents.training.gate``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from agents.training.base_model import load_base, pick_device
from agents.training.data import encode_all, load_chat_jsonl, pack, split
from agents.training.trainer import packed_loss_sum


def heldout_loss(
    base_model: Path,
    data: Path,
    adapter_dir: Path | None = None,
    *,
    max_seq_len: int = 2048,
    micro_batch: int = 8,
    device: str | None = None,
) -> float:
    """Mean loss per assistant token of ``data`` (blocking; run it off the event loop)."""
    dev = pick_device(device)
    model, tokenizer = load_base(base_model, dev)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir))
    model.eval()
    examples = encode_all(tokenizer, load_chat_jsonl(data), max_seq_len)
    total, tokens = 0.0, 0
    try:
        with torch.inference_mode():
            for chunk in split(list(range(len(examples))), micro_batch):
                batch = pack([examples[i] for i in chunk], row_len=max_seq_len).to(dev)
                total += float(packed_loss_sum(model, batch))
                tokens += sum(examples[i].trained_tokens for i in chunk)
    finally:
        del model
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return total / max(tokens, 1)


def evaluate_job(config: dict[str, Any]) -> dict[str, Any]:
    """The model-side half of an evaluation, run by the worker process (``kind: evaluate``):
    held-out loss with and without the adapter, and both models' answers to the probes."""
    from agents.training.local_provider import AdapterRef, LocalEngine

    base_model, heldout = Path(config["base_model"]), Path(config["heldout"])
    adapter_dir = Path(config["adapter_dir"])
    max_seq_len, device = int(config.get("max_seq_len", 2048)), config.get("device")
    base_loss = heldout_loss(base_model, heldout, None, max_seq_len=max_seq_len, device=device)
    adapter_loss = heldout_loss(
        base_model, heldout, adapter_dir, max_seq_len=max_seq_len, device=device
    )
    engine = LocalEngine(base_model, lru_size=1, device=device)
    adapter = AdapterRef("evaluated", adapter_dir)
    answers: dict[str, list[str]] = {"base": [], "adapter": []}
    max_new = int(config.get("max_new_tokens", 200))
    for probe in config.get("probes", []):
        messages = [{"role": "user", "content": str(probe)}]
        answers["base"].append(engine.generate(messages, None, max_new)[0])
        answers["adapter"].append(engine.generate(messages, adapter, max_new)[0])
    return {"base_loss": base_loss, "adapter_loss": adapter_loss, "answers": answers}
