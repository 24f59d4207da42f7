"""The trainer on CPU with a tiny random Llama: learning, adapter-only updates, exact resume, OOM."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from agents.training.data import IGNORE, encode, load_chat_jsonl, pack
from agents.training.errors import (
    BaseModelError,
    Cancelled,
    DatasetError,
    OutOfMemoryRetriesExhausted,
)
from agents.training.schedule import lr_factor
from agents.training.trainer import TrainConfig, train

ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def config(model: Path, data: Path, out: Path, **kw) -> TrainConfig:
    values = dict(
        base_model=model,
        data=data,
        out=out,
        steps=12,
        seed=3,
        lora_rank=8,
        lora_alpha=16,
        lora_targets=ALL_LINEAR,
        micro_batch=4,
        grad_accum=2,
        lr=1e-2,
        warmup_steps=2,
        checkpoint_every=4,
        max_seq_len=256,
    )
    values.update(kw)
    return TrainConfig(**values)


class Crash(Exception):
    """Stands for the process being killed in the middle of a step."""


class FaultAt:
    """Raises ``error`` the first ``times`` times step ``step`` runs a micro-batch."""

    def __init__(self, step: int, error: BaseException, times: int = 1) -> None:
        self.step, self.error, self.times = step, error, times

    def __call__(self, step: int) -> None:
        if step == self.step and self.times > 0:
            self.times -= 1
            raise self.error


def adapter_weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "adapter" / "adapter_model.safetensors"))


def test_loss_is_trained_only_on_assistant_turns(tiny_model: Path, chat_data: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    enc = encode(tok, load_chat_jsonl(chat_data)[0], 256)
    trained = tok.decode([t for t in enc.targets if t != IGNORE])
    assert trained == "The sky is blue.</s>"
    assert enc.targets[-1] == IGNORE and len(enc.targets) == len(enc.input_ids)


def test_packed_rows_do_not_attend_across_examples(tiny_model: Path, chat_data: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model)).eval()
    a, b = (encode(tok, c, 256) for c in load_chat_jsonl(chat_data)[:2])
    packed = pack([a, b])
    with torch.no_grad():
        together = model(
            input_ids=packed.input_ids, position_ids=packed.position_ids, use_cache=False
        ).logits[0]
        alone_b = model(input_ids=torch.tensor([b.input_ids]), use_cache=False).logits[0]
    assert torch.allclose(together[len(a.input_ids) :], alone_b, atol=1e-5)

    # bounded rows: first-fit into rows of 40 tokens, each row ending in a filler with no targets
    examples = [encode(tok, c, 256) for c in load_chat_jsonl(chat_data)]
    rows = pack(examples, row_len=40, pad_id=tok.pad_token_id)
    assert rows.input_ids.shape[0] > 1 and rows.tokens == sum(len(e.input_ids) for e in examples)
    assert int((rows.targets != IGNORE).sum()) == sum(e.trained_tokens for e in examples)
    with torch.no_grad():
        logits = model(
            input_ids=rows.input_ids, position_ids=rows.position_ids, use_cache=False
        ).logits
    first = rows.input_ids[0].tolist()
    e = next(x for x in examples if first[: len(x.input_ids)] == x.input_ids)
    with torch.no_grad():
        alone = model(input_ids=torch.tensor([e.input_ids]), use_cache=False).logits[0]
    assert torch.allclose(logits[0, : len(e.input_ids)], alone, atol=1e-5)


def test_schedule_warms_up_then_decays() -> None:
    rates = [lr_factor(s, 100, 10) for s in range(100)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert all(x >= y for x, y in zip(rates[10:], rates[11:], strict=False))
    assert rates[-1] == pytest.approx(0.1, abs=0.01)


def test_training_lowers_loss_and_changes_only_the_adapter(
    tiny_model: Path, chat_data: Path, tmp_path: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    seen = []
    result = train(
        config(tiny_model, chat_data, tmp_path / "out", steps=40, checkpoint_every=100),
        on_progress=seen.append,
    )
    assert result.steps == 40 and [p.step for p in seen] == list(range(1, 41))
    assert seen[-1].eta_s == 0 and seen[-1].tokens_per_s > 0
    assert sum(result.losses[-5:]) / 5 < 0.85 * result.losses[0]

    base = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    original = {k: v.clone() for k, v in base.state_dict().items()}
    tuned = PeftModel.from_pretrained(base, str(result.adapter_dir))
    after = tuned.base_model.model.state_dict()
    changed_lora = 0
    for name, tensor in after.items():
        if "lora_" in name:
            changed_lora += int("lora_B" in name and bool(tensor.abs().sum() > 0))
            continue
        plain = name.replace(".base_layer", "")
        assert torch.equal(tensor, original[plain]), name
    assert changed_lora == 2 * len(ALL_LINEAR)  # every lora_B of both layers moved off zero
    assert not (tmp_path / "out" / "checkpoints").exists()  # removed once the adapter is written


def test_killed_run_resumes_to_the_same_weights(
    tiny_model: Path, chat_data: Path, tmp_path: Path
) -> None:
    straight = train(config(tiny_model, chat_data, tmp_path / "straight"))
    with pytest.raises(Crash):
        train(config(tiny_model, chat_data, tmp_path / "killed"), fault=FaultAt(6, Crash()))
    saved = sorted(p.name for p in (tmp_path / "killed" / "checkpoints").iterdir())
    assert saved == ["step-000000", "step-000004"]
    resumed = train(config(tiny_model, chat_data, tmp_path / "killed"))
    assert resumed.resumed_from == 4
    assert resumed.losses == straight.losses
    a, b = adapter_weights(tmp_path / "straight"), adapter_weights(tmp_path / "killed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_injected_oom_halves_the_micro_batch_and_completes(
    tiny_model: Path, chat_data: Path, tmp_path: Path
) -> None:
    straight = train(config(tiny_model, chat_data, tmp_path / "straight"))
    oom = torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
    result = train(config(tiny_model, chat_data, tmp_path / "oom"), fault=FaultAt(6, oom))
    assert (result.oom_retries, result.micro_batch, result.grad_accum, result.steps) == (
        1,
        2,
        4,
        12,
    )
    # rewound to step 4 and replayed the same examples in smaller pieces: the same run, up to rounding
    assert result.losses == pytest.approx(straight.losses, rel=1e-4)
    a, b = adapter_weights(tmp_path / "straight"), adapter_weights(tmp_path / "oom")
    assert all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)


def test_oom_beyond_the_limit_fails_with_the_reason(
    tiny_model: Path, chat_data: Path, tmp_path: Path
) -> None:
    oom = torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
    with pytest.raises(OutOfMemoryRetriesExhausted, match="micro-batch 2 after 1 retries") as info:
        train(
            config(tiny_model, chat_data, tmp_path / "o", max_oom_retries=1),
            fault=FaultAt(2, oom, times=99),
        )
    assert info.value.fix


def test_cancel_stops_between_steps_and_keeps_the_checkpoint(
    tiny_model: Path, chat_data: Path, tmp_path: Path
) -> None:
    done = []
    with pytest.raises(Cancelled, match="step 5"):
        train(
            config(tiny_model, chat_data, tmp_path / "c"),
            on_progress=done.append,
            should_stop=lambda: len(done) >= 5,
        )
    assert (tmp_path / "c" / "checkpoints" / "step-000004").is_dir()
    assert not (tmp_path / "c" / "adapter").exists()


def test_a_finished_run_is_not_trained_again(
    tiny_model: Path, chat_data: Path, tmp_path: Path
) -> None:
    cfg = config(tiny_model, chat_data, tmp_path / "o", steps=3)
    first = train(cfg)
    again = train(cfg, fault=FaultAt(0, Crash()))  # would raise if it trained
    assert again.losses == first.losses


def test_bad_base_model_and_bad_data_are_readable_failures(
    tiny_model: Path, chat_data: Path, tmp_path: Path
) -> None:
    with pytest.raises(BaseModelError, match="does not exist"):
        train(config(tmp_path / "missing", chat_data, tmp_path / "o"))
    not_causal = tmp_path / "vit"
    not_causal.mkdir()
    (not_causal / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(BaseModelError, match="causal language model"):
        train(config(not_causal, chat_data, tmp_path / "o"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    with pytest.raises(DatasetError, match="no assistant message"):
        train(config(tiny_model, bad, tmp_path / "o"))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DatasetError, match="no conversations"):
        train(config(tiny_model, empty, tmp_path / "o"))


@contextmanager
def small_file_limit() -> Iterator[None]:
    """Files may not grow past 4 KiB inside the block: the kernel answers writes beyond with
    EFBIG, as a full disk answers with ENOSPC (SIGXFSZ is ignored so the write fails). The limit
    is lifted before the block ends, so pytest's own report (stdout may be a file) is written."""
    import resource
    import signal

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_a_full_disk_while_checkpointing_is_a_readable_failure(
    tiny_model: Path, chat_data: Path, tmp_path: Path
) -> None:
    from agents.training.errors import TrainingError

    cfg = config(tiny_model, chat_data, tmp_path / "o")
    with pytest.raises(TrainingError, match="checkpoint at step 0 could not be written") as info:
        with small_file_limit():
            train(cfg)
    assert "free disk space" in info.value.fix
    assert list((tmp_path / "o" / "checkpoints").iterdir()) == []  # no half-written checkpoint


def test_a_full_disk_leaves_the_registry_unchanged(tmp_path: Path) -> None:
    from agents.training.errors import RegistryError
    from agents.training.registry import AdapterRegistry

    src = tmp_path / "adapter"
    src.mkdir()
    (src / "adapter_model.safetensors").write_bytes(b"x" * 10_000)
    registry = AdapterRegistry(tmp_path / "adapters")
    with pytest.raises(RegistryError, match="could not be written"):
        with small_file_limit():
            registry.add("pirate", src)
    assert (
        registry.versions("pirate") == []
        and list((tmp_path / "adapters" / "pirate").iterdir()) == []
    )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_trains_in_bf16_and_frees_its_memory(
    tiny_model: Path, chat_data: Path, tmp_path: Path
) -> None:
    before = torch.cuda.memory_allocated()
    result = train(config(tiny_model, chat_data, tmp_path / "gpu", steps=6, device="cuda"))
    assert result.steps == 6 and result.final_loss < result.losses[0]
    assert torch.cuda.memory_allocated() <= before + 1024 * 1024
