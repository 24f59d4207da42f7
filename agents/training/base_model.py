"""Loading the local base model and its tokenizer, with failures a person can act on.

Shared by the trainer, the evaluation and the local provider so that all three see the same
model the same way: bf16 on CUDA, fp32 on CPU, nothing fetched from the network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from agents.training.errors import BaseModelError

FIX = "set FAMILIAR_TRAINING__BASE_MODEL (or --base-model) to a local directory with config.json, weights and a tokenizer"


def pick_device(device: str | None = None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def dtype_for(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def load_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, TypeError) as exc:
        raise BaseModelError(f"no usable tokenizer in {path}: {exc}", FIX) from None


def load_base(path: Path | str | None, device: torch.device) -> tuple[Any, Any]:
    """(model, tokenizer) from a local directory; BaseModelError when it is not a causal LM."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if path is None:
        raise BaseModelError("no base model is configured", FIX)
    path = Path(path).expanduser()
    if not path.is_dir():
        raise BaseModelError(f"the base model directory {path} does not exist", FIX)
    try:
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise BaseModelError(f"{path} is not a transformers model directory: {exc}", FIX) from None
    try:
        model: Any = AutoModelForCausalLM.from_pretrained(
            str(path), config=config, dtype=dtype_for(device), local_files_only=True
        )
    except ValueError as exc:  # transformers raises ValueError for configs without a causal LM head
        raise BaseModelError(f"{path} does not hold a causal language model: {exc}", FIX) from None
    except OSError as exc:
        raise BaseModelError(f"the weights in {path} cannot be loaded: {exc}", FIX) from None
    tokenizer = load_tokenizer(path)
    return model.to(device), tokenizer
