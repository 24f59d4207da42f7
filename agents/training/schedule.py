"""The learning-rate schedule as a pure function of the step: linear warm-up, cosine decay to 10 %.

Pure so that a resumed run, a test and the benchmark all compute the same rate for a step.
"""

import math


def lr_factor(step: int, total_steps: int, warmup_steps: int, floor: float = 0.1) -> float:
    """Multiplier of the peak rate for optimizer step ``step`` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / span, 1.0)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
