"""Shared fixtures: a tiny randomly initialised Llama-style model and tokenizer built here, and data.

No weights are downloaded: the tokenizer is a byte-level BPE trained in the test on the data
itself, the model a 2-layer Llama from ``LlamaConfig`` saved to a session temporary directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

FACTS = [
    ("What colour is the sky?", "The sky is blue."),
    ("What colour is grass?", "Grass is green."),
    ("What do cats say?", "Cats say meow."),
    ("What do dogs say?", "Dogs say woof."),
    ("Where is Paris?", "Paris is in France."),
    ("Where is Rome?", "Rome is in Italy."),
    ("How many legs has a spider?", "A spider has eight legs."),
    ("How many legs has a bird?", "A bird has two legs."),
]


def conversations(style: str = "") -> list[dict]:
    out = []
    for q, a in FACTS:
        messages = [{"role": "user", "content": q}, {"role": "assistant", "content": style + a}]
        out.append({"messages": messages})
    return out


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def build_tiny_model(directory: Path, corpus: list[str], seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(directory)
    fast.save_pretrained(directory)
    return directory


def corpus() -> list[str]:
    texts = []
    for style in ("", "Arr! ", "Indeed, "):
        for row in conversations(style):
            for m in row["messages"]:
                texts.append(f"<|{m['role']}|>\n{m['content']}\n")
    return texts * 4


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"), corpus())


@pytest.fixture
def chat_data(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "data.jsonl", conversations())


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: these tiny matrices gain nothing from two, and on a shared 2-core
    machine two spinning threads made each step 30 times slower (1.1 s instead of 0.03 s)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
