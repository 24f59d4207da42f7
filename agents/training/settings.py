"""Settings of the training pipeline (``[training]``, ``FAMILIAR_TRAINING__*``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field


class TrainingSettings(BaseModel):
    base_model: Path | None = Field(
        None,
        description="Local directory of the base causal LM adapters are trained for and served on.",
    )
    lora_rank: int = Field(16, ge=1, le=1024, description="LoRA rank r.")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha (scaling = alpha / rank).")
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    lora_targets: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        description="Names of the linear modules that get LoRA adapters.",
    )
    steps: int = Field(300, ge=1, description="Optimizer steps per training run.")
    checkpoint_every: int = Field(50, ge=1, description="Steps between checkpoints.")
    micro_batch: int = Field(8, ge=1, description="Examples per forward pass (packed, no padding).")
    grad_accum: int = Field(2, ge=1, description="Micro-batches accumulated per optimizer step.")
    lr: float = Field(2e-4, gt=0, description="Peak learning rate.")
    warmup_steps: int = Field(10, ge=0, description="Linear warm-up steps before cosine decay.")
    max_seq_len: int = Field(
        2048, ge=16, description="Longest example in tokens; longer ones are cut."
    )
    gradient_checkpointing: bool = Field(
        False, description="Trade compute for memory on long sequences."
    )
    max_oom_retries: int = Field(
        3, ge=0, description="Times CUDA out-of-memory halves the micro-batch before the job fails."
    )
    promotion_margin: float = Field(
        0.05,
        ge=0.0,
        description="Relative held-out loss improvement over the base needed to propose promotion.",
    )
    adapters_lru: int = Field(
        4, ge=1, description="Adapters kept loaded at once by the local provider."
    )
    examples_per_call: int = Field(
        50, ge=1, description="Examples asked of the LLM per data-generation call."
    )
    target_examples: int = Field(400, ge=1, description="Generated examples wanted per archetype.")
    heldout_fraction: float = Field(
        0.1, gt=0.0, lt=0.5, description="Share of the data kept for evaluation."
    )
    min_inspection_score: float = Field(
        0.7,
        ge=0.0,
        le=1.0,
        description="Lowest mean score (0-1) the review panel may give a sample of the data "
        "when not every reviewer approves it, before the data is regenerated (once) or the "
        "pipeline stops.",
    )
    inspection_sample: int = Field(
        20, ge=1, le=200, description="Generated examples the review panel reads per inspection."
    )
    stage_attempts: int = Field(
        3,
        ge=1,
        le=20,
        description="Times a stage is tried when it fails unexpectedly (a bad model reply, a "
        "provider error) before the pipeline fails.",
    )
    stage_backoff_s: float = Field(
        30.0,
        ge=0.0,
        description="Wait before a failed stage is tried again; doubles with each attempt.",
    )
