"""Learning-rate schedules as per-step multipliers of the peak rate (for ``LambdaLR``)."""

from __future__ import annotations

import math
from collections.abc import Callable


def lr_multiplier(
    schedule: str, total_steps: int, warmup_fraction: float, update: str = "step", steps_per_epoch: int = 1
) -> Callable[[int], float]:
    """The multiplier at each step. ``update="epoch"`` holds it for a whole epoch at the value the schedule has at
    that epoch's start, on a scale of epochs (warm-up included), as a PyTorch scheduler stepped once per epoch does:
    cosine over 3 epochs gives 1, 0.75, 0.25 like ``CosineAnnealingLR(T_max=3)``."""
    if update == "epoch":
        per_epoch = max(steps_per_epoch, 1)
        by_epoch = lr_multiplier(schedule, max(total_steps // per_epoch, 1), warmup_fraction)
        return lambda s: by_epoch(s // per_epoch)
    total = max(total_steps, 1)
    warmup = int(round(warmup_fraction * total)) if schedule in ("onecycle", "cosine") else 0

    def warm(step: int) -> float | None:
        return (step + 1) / warmup if step < warmup else None

    if schedule == "onecycle":
        # Linear warm-up to the peak, then linear decay to zero at the last step (airbench, Smith's one-cycle).
        return lambda s: warm(s) or max(0.0, (total - s) / max(total - warmup, 1))
    if schedule == "cosine":
        return lambda s: warm(s) or 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warmup) / max(total - warmup, 1))))
    if schedule == "step":
        # x0.1 at half and at three quarters of training (the classic ResNet recipe, scaled to the run).
        return lambda s: 0.1 ** ((s >= total // 2) + (s >= (3 * total) // 4))
    return lambda s: 1.0
