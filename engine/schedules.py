"""Learning-rate schedules, as a function of training progress t measured in epochs (0 ≤ t < E).

constant: η(t) = η₀
step:     η(t) = η₀ · decay^⌊t⌋              (the notebook: halved after every epoch)
cosine:   η(t) = η₀ · ½ (1 + cos(π t / E))
Warm-up multiplies any of them by min(1, (t + 1/steps) / warmup) during the first `warmup` epochs.
"""

from __future__ import annotations

import math

from engine.config import TrainConfig


def learning_rate(config: TrainConfig, epochs_done: float, step_fraction: float = 0.0) -> float:
    """η at progress `epochs_done` (fractional epochs); `step_fraction` = 1/steps_per_epoch."""
    base = config.learning_rate
    if config.lr_schedule == "constant":
        lr = base
    elif config.lr_schedule == "step":
        lr = base * config.lr_decay ** math.floor(epochs_done)
    elif config.lr_schedule == "cosine":
        lr = base * 0.5 * (1.0 + math.cos(math.pi * min(epochs_done / config.epochs, 1.0)))
    else:
        raise ValueError(f"unknown lr_schedule {config.lr_schedule!r}")
    if config.warmup_epochs > 0 and epochs_done < config.warmup_epochs:
        lr *= min(1.0, (epochs_done + step_fraction) / config.warmup_epochs)
    return lr
