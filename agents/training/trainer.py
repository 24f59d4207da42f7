"""One LoRA training run: a function of explicit arguments, resumable, surviving CUDA OOM.

``train(config, on_progress=..., should_stop=..., fault=...)`` fine-tunes a peft LoRA adapter on
a local causal LM. The batches of step ``s`` are a pure function of (seed, s) and every
checkpoint holds adapter, optimizer, scheduler, RNG state and step, so a run killed after a
checkpoint and started again ends with the same weights as one that never stopped. The loss is
summed over assistant tokens and divided by the step's count of them, so splitting a step into
more, smaller micro-batches (what the OOM path does) computes the same gradient.

Written by hand rather than with ``transformers.Trainer`` because we need padding-free packed
rows, the halve-and-resume answer to OOM, and checkpoints that make resumption exact;
``bench/train_throughput.py`` measures it against a ``Trainer`` baseline.
"""

from __future__ import annotations

import gc
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from loguru import logger
from safetensors import SafetensorError

from agents.training import checkpoint
from agents.training.atomic import atomic_directory, atomic_write_text
from agents.training.base_model import load_base, pick_device
from agents.training.data import (
    Encoded,
    encode_all,
    file_sha256,
    load_chat_jsonl,
    pack,
    split,
    step_indices,
)
from agents.training.errors import Cancelled, OutOfMemoryRetriesExhausted, TrainingError
from agents.training.schedule import lr_factor


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run depends on. ``fingerprint`` keys checkpoints to the run that wrote them."""

    base_model: Path
    data: Path
    out: Path
    steps: int = 100
    seed: int = 0
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    micro_batch: int = 8
    grad_accum: int = 2
    lr: float = 2e-4
    warmup_steps: int = 10
    max_seq_len: int = 2048
    checkpoint_every: int = 50
    gradient_checkpointing: bool = False
    max_oom_retries: int = 3
    max_grad_norm: float = 1.0
    device: str | None = None
    keep_checkpoints: int = 2

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> TrainConfig:
        """Defaults from a ``TrainingSettings``; ``overrides`` (data, out, steps, seed, ...) win."""
        values = {
            "base_model": settings.base_model,
            "steps": settings.steps,
            "lora_rank": settings.lora_rank,
            "lora_alpha": settings.lora_alpha,
            "lora_dropout": settings.lora_dropout,
            "lora_targets": tuple(settings.lora_targets),
            "micro_batch": settings.micro_batch,
            "grad_accum": settings.grad_accum,
            "lr": settings.lr,
            "warmup_steps": settings.warmup_steps,
            "max_seq_len": settings.max_seq_len,
            "checkpoint_every": settings.checkpoint_every,
            "gradient_checkpointing": settings.gradient_checkpointing,
            "max_oom_retries": settings.max_oom_retries,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        v = {k: val for k, val in values.items() if k in known}
        for key in ("base_model", "data", "out"):
            if v.get(key) is not None:
                v[key] = Path(v[key])
        if "lora_targets" in v:
            v["lora_targets"] = tuple(v["lora_targets"])
        return cls(**v)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("base_model", "data", "out"):
            d[key] = str(d[key])
        d["lora_targets"] = list(self.lora_targets)
        return d

    @property
    def batch(self) -> int:
        """Examples per optimizer step; constant even when OOM shrinks the micro-batch."""
        return self.micro_batch * self.grad_accum

    def fingerprint(self, data_sha256: str) -> dict[str, Any]:
        d = self.to_dict()
        for key in (
            "out",
            "checkpoint_every",
            "max_oom_retries",
            "device",
            "keep_checkpoints",
            "micro_batch",
            "grad_accum",
            "gradient_checkpointing",
        ):
            d.pop(key)
        return {**d, "batch": self.batch, "data_sha256": data_sha256}


@dataclass(frozen=True)
class Progress:
    step: int  # optimizer steps done
    total_steps: int
    loss: float
    tokens_per_s: (
        float  # non-padding tokens (there is no padding) per second, since this process started
    )
    eta_s: float
    micro_batch: int
    grad_accum: int
    tokens: int = 0  # tokens of this step (all real: there is no padding)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    adapter_dir: Path
    steps: int
    losses: list[float] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0
    oom_retries: int = 0
    resumed_from: int | None = None
    micro_batch: int = 0
    grad_accum: int = 0

    @property
    def final_loss(self) -> float:
        return self.losses[-1] if self.losses else float("nan")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["adapter_dir"] = str(self.adapter_dir)
        return d


ProgressFn = Callable[[Progress], None]
StopFn = Callable[[], bool]
FaultFn = Callable[[int], None]  # called with the step before each micro-batch; tests raise from it


def lora_config(config: TrainConfig) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.lora_targets),
        task_type="CAUSAL_LM",
    )


def _body_and_head(model: Any) -> tuple[Any, Any] | None:
    """The decoder stack and LM head of a causal LM (through peft), or None where the model's
    own forward does more than ``head(body(x))`` (Gemma's logit soft-capping)."""
    base: Any = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if getattr(config, "final_logit_softcapping", None) or not hasattr(base, "get_decoder"):
        return None
    body, head = base.get_decoder(), base.get_output_embeddings()
    return (body, head) if body is not None and head is not None else None


def packed_loss_sum(model: torch.nn.Module, batch: Any) -> torch.Tensor:
    """Summed cross-entropy of packed rows over their trained positions only.

    The LM head runs only at positions that have a target: with a large vocabulary the logits of
    prompt tokens are a large share of the compute and most of the activation memory, and
    nothing is learned from them. (LoRA layers live inside the modules, so calling the decoder
    and the head directly trains the same adapter as calling the peft model.)
    """
    flat_targets = batch.targets.reshape(-1)
    keep = (flat_targets != -100).nonzero().squeeze(-1)
    parts = _body_and_head(model)
    # use_cache=False matters: with a cache transformers would not see the packed position ids
    if parts is None:
        out = model(input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False)
        logits = out.logits.reshape(-1, out.logits.shape[-1])[keep]
    else:
        body, head = parts
        hidden = body(
            input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False
        ).last_hidden_state
        logits = head(hidden.reshape(-1, hidden.shape[-1])[keep])
    return torch.nn.functional.cross_entropy(logits.float(), flat_targets[keep], reduction="sum")


def train(
    config: TrainConfig,
    *,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    fault: FaultFn | None = None,
) -> TrainResult:
    """Train (or resume, or return the finished result of) the run described by ``config``."""
    out = Path(config.out)
    data_sha = file_sha256(config.data) if Path(config.data).is_file() else ""
    fingerprint = config.fingerprint(data_sha)
    done = out / "training.json"
    if done.is_file() and (out / "adapter").is_dir():
        record = json.loads(done.read_text())
        if record.get("fingerprint") == fingerprint:
            logger.info("training output {} is already complete", out)
            return _result_from(record)
    conversations = load_chat_jsonl(config.data)
    device = pick_device(config.device)
    model, tokenizer = load_base(config.base_model, device)
    examples = encode_all(tokenizer, conversations, config.max_seq_len)

    from peft import get_peft_model

    torch.manual_seed(config.seed)
    model = get_peft_model(model, lora_config(config))
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, config.steps, config.warmup_steps)
    )
    ckpt_root = out / "checkpoints"
    run = _Run(config, fingerprint, model, optimizer, scheduler, examples, ckpt_root, device)
    try:
        result = run.loop(on_progress, should_stop, fault)
        try:
            with atomic_directory(out / "adapter", replace=True) as tmp:
                model.save_pretrained(str(tmp))
                tokenizer.save_pretrained(str(tmp))
        except (OSError, SafetensorError) as exc:
            raise TrainingError(
                f"the trained adapter could not be written to {out}: {exc}",
                "free disk space; `familiar train retry` resumes from the last checkpoint",
            ) from None
        result.adapter_dir = out / "adapter"
        record = {"fingerprint": fingerprint, "result": result.as_dict()}
        atomic_write_text(out / "training.json", json.dumps(record, indent=1))
        shutil.rmtree(ckpt_root, ignore_errors=True)
        return result
    finally:
        del run, model, optimizer, scheduler, params
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()


def _result_from(record: dict[str, Any]) -> TrainResult:
    r = dict(record["result"])
    r["adapter_dir"] = Path(r["adapter_dir"])
    return TrainResult(**r)


class _Run:
    """The mutable state of one training loop (kept out of ``train`` so OOM can rewind it)."""

    def __init__(
        self,
        config: TrainConfig,
        fingerprint: dict[str, Any],
        model: Any,
        optimizer: Any,
        scheduler: Any,
        examples: list[Encoded],
        ckpt_root: Path,
        device: torch.device,
    ) -> None:
        self.c = config
        self.fingerprint = fingerprint
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.examples = examples
        self.root = ckpt_root
        self.device = device
        self.step = 0
        self.micro_batch = config.micro_batch
        self.losses: list[float] = []
        self.oom_retries = 0
        self.resumed_from: int | None = None

    def state(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "micro_batch": self.micro_batch,
            "losses": self.losses,
            "oom_retries": self.oom_retries,
        }

    def save(self) -> None:
        checkpoint.save(
            self.root,
            self.step,
            self.model,
            self.optimizer,
            self.scheduler,
            self.state(),
            keep=self.c.keep_checkpoints,
        )

    def restore(self, keep_micro_batch: bool = False) -> bool:
        path = checkpoint.latest(self.root)
        if path is None:
            return False
        state = json.loads((path / "state.json").read_text())
        if state.get("fingerprint") != self.fingerprint:
            raise TrainingError(
                f"{self.root} holds checkpoints of a different run (model, data or settings changed)",
                "use a new output directory, or delete its checkpoints/ to start over",
            )
        state = checkpoint.load(path, self.model, self.optimizer, self.scheduler)
        self.step = int(state["step"])
        self.losses = list(state.get("losses", []))
        if not keep_micro_batch:
            self.micro_batch = int(state["micro_batch"])
            self.oom_retries = int(state.get("oom_retries", 0))
        return True

    def loop(
        self, on_progress: ProgressFn | None, should_stop: StopFn | None, fault: FaultFn | None
    ) -> TrainResult:
        if self.restore():
            self.resumed_from = self.step
            logger.info("resuming training from step {}", self.step)
        else:
            self.save()  # step 0: what an OOM before the first periodic checkpoint rewinds to
        started = time.monotonic()
        tokens = 0
        timed_tokens, timed_s = 0, 0.0
        first_step = self.step
        while self.step < self.c.steps:
            if should_stop is not None and should_stop():
                raise Cancelled(
                    f"training cancelled at step {self.step}", "`familiar train retry` resumes it"
                )
            t0 = time.monotonic()
            try:
                loss, n_tokens = self.one_step(fault)
            except torch.cuda.OutOfMemoryError as exc:
                self.recover_from_oom(exc)
                continue
            dt = time.monotonic() - t0
            tokens += n_tokens
            if self.step > first_step:  # the first step of a process is warm-up: not timed
                timed_tokens += n_tokens
                timed_s += dt
            self.step += 1
            self.losses.append(loss)
            if self.step % self.c.checkpoint_every == 0 and self.step < self.c.steps:
                self.save()
            if on_progress is not None:
                rate = timed_tokens / timed_s if timed_s > 0 else 0.0
                per_step = timed_s / max(self.step - first_step - 1, 1) if timed_s > 0 else dt
                on_progress(
                    Progress(
                        self.step,
                        self.c.steps,
                        loss,
                        rate,
                        per_step * (self.c.steps - self.step),
                        self.micro_batch,
                        self.grad_accum,
                        n_tokens,
                    )
                )
        return TrainResult(
            Path(self.c.out) / "adapter",
            self.step,
            self.losses,
            tokens,
            time.monotonic() - started,
            self.oom_retries,
            self.resumed_from,
            self.micro_batch,
            self.grad_accum,
        )

    @property
    def grad_accum(self) -> int:
        return math.ceil(self.c.batch / self.micro_batch)

    def one_step(self, fault: FaultFn | None) -> tuple[float, int]:
        indices = step_indices(len(self.examples), self.c.batch, self.c.seed, self.step)
        chosen = [self.examples[i] for i in indices]
        trained = sum(e.trained_tokens for e in chosen)
        total_loss = 0.0
        n_tokens = 0
        for chunk in split(indices, self.micro_batch):
            if fault is not None:
                fault(self.step)
            batch = pack([self.examples[i] for i in chunk], row_len=self.c.max_seq_len).to(
                self.device
            )
            loss = packed_loss_sum(self.model, batch) / trained
            loss.backward()
            total_loss += float(loss.detach())
            n_tokens += batch.tokens
        torch.nn.utils.clip_grad_norm_(
            [p for p in self.model.parameters() if p.requires_grad], self.c.max_grad_norm
        )
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total_loss, n_tokens

    def recover_from_oom(self, exc: BaseException) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if self.oom_retries >= self.c.max_oom_retries or self.micro_batch <= 1:
            raise OutOfMemoryRetriesExhausted(
                f"CUDA ran out of memory at step {self.step} with micro-batch {self.micro_batch} "
                f"after {self.oom_retries} retries",
                "lower max_seq_len, enable gradient_checkpointing, or use a smaller base model",
            ) from exc
        self.oom_retries += 1
        self.micro_batch = max(self.micro_batch // 2, 1)
        logger.warning(
            "CUDA out of memory at step {}: micro-batch {} x {} accumulation, resuming from "
            "the last checkpoint",
            self.step,
            self.micro_batch,
            self.grad_accum,
        )
        self.restore(keep_micro_batch=True)
