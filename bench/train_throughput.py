"""Training throughput: the project's trainer against peft + transformers ``Trainer`` done well.

All train the same randomly initialised Llama-style model (built here from a config, with a
byte-level BPE tokenizer trained here on the synthetic data, nothing downloaded), on the same
chat examples of varied length, with the same LoRA rank and targets, sequence length, micro-batch,
gradient accumulation, learning-rate schedule and seed. The project's trainer packs each
micro-batch; it is compared with three ``Trainer`` baselines:

- ``padded``: each micro-batch padded to its longest example (the naive way; it draws the same
  batches in the same order as the project's trainer, so their loss curves must agree);
- ``grouped``: the same, with HF's length-grouped sampler (``group_by_length``), which puts
  examples of like length together so that little is padded;
- ``flattened``: HF's padding-free collator ``DataCollatorWithFlattening`` (one row per
  micro-batch, positions restarting per example), the fair baseline for packing.

Each run is its own child process, so its peak memory is its own (CUDA: ``max_memory_allocated``;
CPU: peak RSS). Runs are interleaved: every repeat runs each variant once, in a rotated order, so
a machine that slows down or speeds up during the benchmark affects all alike. Tokens/s counts
non-padding tokens only and leaves out the first ``--warmup`` steps; the table gives the median
and the spread (min-max) over the repeats, and each ratio is the median of the per-repeat ratios.

    python bench/train_throughput.py                       # CPU, tiny model
    python bench/train_throughput.py --repeats 5 --threads 1
    python bench/train_throughput.py --preset gpu-0.5b     # CUDA, ~0.5B parameters
    python bench/train_throughput.py --data FILE.jsonl     # your own chat data
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # hidden, layers, heads, kv heads, intermediate, model vocab
    "cpu-tiny": dict(
        hidden=128,
        layers=2,
        heads=4,
        kv=2,
        inter=344,
        vocab=2000,
        micro_batch=8,
        grad_accum=2,
        seq_len=256,
        steps=20,
        warmup=4,
        rank=8,
        examples=256,
    ),
    "gpu-0.5b": dict(
        hidden=896,
        layers=24,
        heads=14,
        kv=2,
        inter=4864,
        vocab=151936,
        micro_batch=16,
        grad_accum=2,
        seq_len=1024,
        steps=60,
        warmup=10,
        rank=16,
        examples=2048,
    ),
}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
WORDS = (
    "the a ship sea wind sail captain crew star night storm harbour map gold island wave rope deck "
    "north south east west river stone light dark quick slow bright old new far near over under "
    "answer question because therefore however although always never sometimes"
).split()


def synthetic_chats(n: int, seed: int, max_words: int) -> list[dict[str, Any]]:
    """Conversations whose lengths vary widely, as real chats do (what padding wastes compute on)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):

        def text(lo: int, hi: int) -> str:
            return (
                " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi))).capitalize() + "."
            )

        rows.append(
            {
                "messages": [
                    {"role": "user", "content": text(4, max_words // 6)},
                    {"role": "assistant", "content": text(8, max_words)},
                ]
            }
        )
    return rows


def build_model(directory: Path, p: dict[str, Any], corpus: list[str]) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=min(p["vocab"], 2000),
            special_tokens=["<pad>", "<s>", "</s>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=max(p["vocab"], len(fast)),
        hidden_size=p["hidden"],
        intermediate_size=p["inter"],
        num_hidden_layers=p["layers"],
        num_attention_heads=p["heads"],
        num_key_value_heads=p["kv"],
        max_position_embeddings=max(2048, p["seq_len"]),
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(directory)
    fast.save_pretrained(directory)


def peak_memory(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def throughput(step_times: list[float], step_tokens: list[int], warmup: int) -> float:
    """Tokens per second over the steps after ``warmup`` (step_times[i]: when step i ended)."""
    return sum(step_tokens[warmup + 1 :]) / (step_times[-1] - step_times[warmup])


def run_project(args: argparse.Namespace, p: dict[str, Any]) -> dict[str, Any]:
    from agents.training.trainer import TrainConfig, train

    times, tokens, losses = [], [], []

    def on_progress(progress: Any) -> None:
        times.append(time.perf_counter())
        tokens.append(progress.tokens)
        losses.append(progress.loss)

    config = TrainConfig(
        base_model=args.model_dir,
        data=args.data,
        out=Path(tempfile.mkdtemp()) / "out",
        steps=p["steps"],
        seed=args.seed,
        lora_rank=p["rank"],
        lora_alpha=2 * p["rank"],
        lora_targets=tuple(TARGETS),
        micro_batch=p["micro_batch"],
        grad_accum=p["grad_accum"],
        lr=args.lr,
        warmup_steps=2,
        max_seq_len=p["seq_len"],
        checkpoint_every=10**9,
        gradient_checkpointing=args.gradient_checkpointing,
        device=args.device,
    )
    train(config, on_progress=on_progress)
    return {
        "tokens_per_s": throughput(times, tokens, p["warmup"]),
        "losses": losses,
        "tokens_per_step": sum(tokens) / len(tokens),
    }


BASELINES = ("padded", "grouped", "flattened")


def run_baseline(args: argparse.Namespace, p: dict[str, Any], mode: str) -> dict[str, Any]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorWithFlattening,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from agents.training.data import IGNORE, encode, load_chat_jsonl
    from agents.training.schedule import lr_factor

    tok = AutoTokenizer.from_pretrained(str(args.model_dir))
    cuda = args.device == "cuda"
    model = AutoModelForCausalLM.from_pretrained(
        str(args.model_dir), dtype=torch.bfloat16 if cuda else torch.float32
    )
    torch.manual_seed(args.seed)
    model = get_peft_model(
        model,
        LoraConfig(
            r=p["rank"],
            lora_alpha=2 * p["rank"],
            target_modules=TARGETS,
            lora_dropout=0.0,
            task_type="CAUSAL_LM",
        ),
    )
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    rows = []
    for conv in load_chat_jsonl(args.data):
        e = encode(tok, conv, p["seq_len"])
        # same tokens and trained positions as the project's trainer; Trainer shifts labels itself
        labels = [IGNORE] + [t if t != IGNORE else IGNORE for t in e.targets[:-1]]
        rows.append({"input_ids": e.input_ids, "labels": labels})
    counted: list[int] = []
    slots: list[int] = []  # token positions computed, padding included

    def count(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        # counted at the forward, not in the collator: the data loader fetches a batch ahead
        mask = kwargs.get("attention_mask")
        ids = kwargs["input_ids"]
        counted.append(int(mask.sum()) if mask is not None else int(ids.numel()))
        slots.append(int(mask.numel()) if mask is not None else int(ids.numel()))

    model.register_forward_pre_hook(count, with_kwargs=True)

    def pad(batch: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in batch)
        fill = tok.pad_token_id
        return {
            "input_ids": torch.tensor(
                [r["input_ids"] + [fill] * (width - len(r["input_ids"])) for r in batch]
            ),
            "labels": torch.tensor(
                [r["labels"] + [IGNORE] * (width - len(r["labels"])) for r in batch]
            ),
            "attention_mask": torch.tensor(
                [[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in batch]
            ),
        }

    # flattened: one row, no attention mask; the position ids restarting at 0 tell the
    # attention where each example starts (transformers builds a block-diagonal causal mask)
    collate = DataCollatorWithFlattening() if mode == "flattened" else pad

    times, tokens, losses = [], [], []

    class Clock(TrainerCallback):
        def on_step_end(self, *_a: Any, **_k: Any) -> None:
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter())
            tokens.append(sum(counted))
            counted.clear()

        def on_log(
            self, _args: Any, _state: Any, _control: Any, logs: dict | None = None, **_k: Any
        ) -> None:
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    params = [x for x in model.parameters() if x.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, p["steps"], 2))
    targs = TrainingArguments(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=p["micro_batch"],
        gradient_accumulation_steps=p["grad_accum"],
        max_steps=p["steps"],
        learning_rate=args.lr,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=args.seed,
        bf16=cuda,
        use_cpu=not cuda,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        max_grad_norm=1.0,
        disable_tqdm=True,
        # transformers 5 spells ``group_by_length=True`` as this sampling strategy
        train_sampling_strategy="group_by_length" if mode == "grouped" else "random",
    )
    trainer = Trainer(
        model=model,
        args=targs,
        train_dataset=rows,
        data_collator=collate,
        optimizers=(optimizer, scheduler),
        callbacks=[Clock()],
    )
    trainer.train()
    return {
        "tokens_per_s": throughput(times, tokens, p["warmup"]),
        "losses": losses,
        "tokens_per_step": sum(tokens) / len(tokens),
        "padding_share": 1 - sum(tokens) / sum(slots),
    }


def child(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    p = json.loads(args.params)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if args.only == "project":
        result = run_project(args, p)
    else:
        result = run_baseline(args, p, args.only)
    result["peak_mb"] = peak_memory(args.device)
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None)
    parser.add_argument("--data", type=Path, default=None, help="chat JSONL (default: synthetic)")
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="a local model (default: random from the preset)",
    )
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="interleaved runs of every variant (default 3)"
    )
    parser.add_argument("--only", choices=["project", *BASELINES], help=argparse.SUPPRESS)
    parser.add_argument("--params", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        child(args)
        return
    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    p = dict(PRESETS[args.preset or ("gpu-0.5b" if args.device == "cuda" else "cpu-tiny")])
    if args.steps:
        p["steps"] = args.steps
    work = Path(tempfile.mkdtemp(prefix="train-bench-"))
    if args.data is None:
        args.data = work / "data.jsonl"
        rows = synthetic_chats(p["examples"], args.seed, max_words=p["seq_len"] // 3)
        args.data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    if args.model_dir is None:
        args.model_dir = work / "model"
        corpus = [
            m["content"]
            for line in args.data.read_text().splitlines()
            for m in json.loads(line)["messages"]
        ]
        build_model(args.model_dir, p, corpus + ["<|user|>\n", "<|assistant|>\n"])
    variants = ["project", *BASELINES]
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for repeat in range(args.repeats):
        shift = repeat % len(variants)  # rotate the order: no variant always runs first
        for which in variants[shift:] + variants[:shift]:
            runs[which].append(run_child(args, p, which))
            print(
                f"repeat {repeat + 1}/{args.repeats} {which:10} "
                f"{runs[which][-1]['tokens_per_s']:8.0f} tokens/s",
                file=sys.stderr,
                flush=True,
            )
    report(args, p, runs, torch.get_num_threads())


def run_child(args: argparse.Namespace, p: dict[str, Any], which: str) -> dict[str, Any]:
    cmd = (
        [
            sys.executable,
            __file__,
            "--only",
            which,
            "--params",
            json.dumps(p),
            "--data",
            str(args.data),
            "--model-dir",
            str(args.model_dir),
            "--seed",
            str(args.seed),
            "--lr",
            str(args.lr),
            "--device",
            args.device,
        ]
        + (["--gradient-checkpointing"] if args.gradient_checkpointing else [])
        + (["--threads", str(args.threads)] if args.threads else [])
    )
    out = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"}
    )
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        sys.exit(f"{which} run failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(line[len("RESULT ") :]))


def spread(values: list[float], fmt: str = "{:.0f}") -> str:
    """Median (min-max) of ``values``."""
    return (
        f"{fmt.format(statistics.median(values))} "
        f"({fmt.format(min(values))}-{fmt.format(max(values))})"
    )


def report(
    args: argparse.Namespace, p: dict[str, Any], runs: dict[str, list[dict[str, Any]]], threads: int
) -> None:
    print(
        f"device {args.device}  preset {json.dumps(p)}  torch threads {args.threads or threads}  "
        f"repeats {args.repeats} (interleaved)"
    )
    print("median (min-max) over the repeats")
    print(
        f"{'':10} {'tokens/s':>18} {'peak MB':>16} {'padding':>8} {'tokens/step':>12} "
        f"{'loss last':>10}  project speed-up"
    )
    project = runs["project"]
    for name, rs in runs.items():
        ratios = [o["tokens_per_s"] / r["tokens_per_s"] for o, r in zip(project, rs, strict=True)]
        padding = statistics.median(r.get("padding_share", 0.0) for r in rs)
        print(
            f"{name:10} {spread([r['tokens_per_s'] for r in rs]):>18} "
            f"{spread([r['peak_mb'] for r in rs]):>16} {padding:8.0%} "
            f"{statistics.median(r['tokens_per_step'] for r in rs):12.0f} "
            f"{statistics.median(r['losses'][-1] for r in rs):10.4f}  "
            + ("" if name == "project" else spread(ratios, "{:.2f}x"))
        )
    for name in ("padded", "flattened"):  # same sampler and seed: the same batches in order
        b, o = runs[name][0], project[0]
        n = min(len(b["losses"]), len(o["losses"]))
        diff = sum(abs(x - y) for x, y in zip(b["losses"][:n], o["losses"][:n], strict=True)) / n
        print(f"mean |loss difference| per step, project vs {name}: {diff:.4f}")


if __name__ == "__main__":
    main()
