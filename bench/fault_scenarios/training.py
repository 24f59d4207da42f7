"""Scenario 4: SIGKILL during ``familiar train fit`` of a tiny model; the rerun resumes identically."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.fault_scenarios.harness import (
    Context,
    Trial,
    base_env,
    familiar,
    last_error,
    wait_until,
)
from tests.telegram.conftest import VENV_BIN

TRAIN_STEPS = 30


def train_env(data_dir: Path) -> dict[str, str]:
    """The tiny model's settings (as tests/training use them), one torch thread each."""
    return base_env(data_dir) | {
        "OMP_NUM_THREADS": "1",
        "FAMILIAR_TRAINING__CHECKPOINT_EVERY": "5",
        "FAMILIAR_TRAINING__LORA_RANK": "8",
        "FAMILIAR_TRAINING__LORA_ALPHA": "16",
        "FAMILIAR_TRAINING__MICRO_BATCH": "4",
        "FAMILIAR_TRAINING__GRAD_ACCUM": "2",
        "FAMILIAR_TRAINING__LR": "0.01",
        "FAMILIAR_TRAINING__WARMUP_STEPS": "2",
        "FAMILIAR_TRAINING__MAX_SEQ_LEN": "256",
    }


def tiny_training_setup(ctx: Context) -> tuple[Path, Path, dict[str, Any]]:
    """The tiny random Llama of tests/training (built here, nothing downloaded), its chat data,
    and the adapter of one uninterrupted run with the campaign's seed; built once per campaign."""
    if "training" in ctx.cache:
        return ctx.cache["training"]  # type: ignore[no-any-return]
    from tests.training.conftest import build_tiny_model, conversations, corpus, write_jsonl

    root = ctx.work / "training"
    model = build_tiny_model(root / "tiny-llama", corpus())
    data = write_jsonl(root / "data.jsonl", conversations())
    ref_dir = root / "reference"
    done = familiar(train_env(ref_dir / "data"), *train_args(model, data, ref_dir))
    if done.returncode != 0:
        raise RuntimeError(f"the uninterrupted training run failed: {done.stderr[-500:]}")
    reference = adapter_tensors(ref_dir / "out")
    ctx.cache["training"] = (model, data, reference)
    return model, data, reference


def train_args(model: Path, data: Path, root: Path) -> list[str]:
    return [
        "train",
        "fit",
        "--base-model",
        str(model),
        "--data",
        str(data),
        "--out",
        str(root / "out"),
        "--steps",
        str(TRAIN_STEPS),
        "--seed",
        "11",
    ]


def adapter_tensors(out: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(out / "adapter" / "adapter_model.safetensors"))


def training_kill(ctx: Context, trial: Trial, rng: random.Random, n: int) -> None:
    import torch

    model, data, reference = tiny_training_setup(ctx)
    root = ctx.work / f"train-{n}"
    env = train_env(root / "data")
    args = train_args(model, data, root)
    proc = subprocess.Popen(
        [str(VENV_BIN / "familiar"), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the CLI and its worker: killed together, as a power cut would
    )
    kill_at_step = rng.randint(0, TRAIN_STEPS - 1)
    db = root / "data" / "familiar.db"

    def step() -> int:
        conn = sqlite3.connect(db, timeout=1)
        try:
            row = conn.execute("SELECT progress FROM train_jobs ORDER BY id DESC").fetchone()
        finally:
            conn.close()
        return int(json.loads(row[0])["step"]) if row and row[0] else 0

    if kill_at_step == 0:  # while it starts: loading the model, before any progress
        time.sleep(rng.uniform(0.0, 4.0))
    else:
        wait_until(lambda: proc.poll() is not None or step() >= kill_at_step, 300, 0.05)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = step() if db.exists() else 0
    # Killed after the run had written its adapter and record: the rerun returns that result
    # as it is (nothing to resume), and the adapter must still be the reference's.
    finished = (root / "out" / "training.json").is_file()
    restarted = time.monotonic()
    again = familiar(env, *args)
    trial.recovery_s = time.monotonic() - restarted
    if again.returncode != 0:
        trial.recovered = False
        trial.fail(f"the run after the kill failed: {last_error(again)}")
        return
    record = json.loads((root / "out" / "training.json").read_text())
    resumed = record["result"].get("resumed_from")
    if finished:
        trial.notes.append(f"killed at step {killed_at}, after the run had finished")
    elif killed_at >= 5 and not resumed:
        trial.fail(f"killed at step {killed_at}, the rerun started from scratch")
        trial.rows_lost += 1
    got = adapter_tensors(root / "out")
    if got.keys() != reference.keys() or not all(torch.equal(got[k], reference[k]) for k in got):
        trial.corrupt = True
        trial.fail(f"killed at step {killed_at}: the adapter differs from the uninterrupted run")
