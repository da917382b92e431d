"""Learning-rate schedules as pure functions of the epoch (nothing to save for resume but the epoch)."""

from __future__ import annotations

import math

SCHEDULES = ("constant", "step", "cosine", "hold-linear")


def lr_factor(schedule: str, epoch: int, epochs: int) -> float:
    """Multiplier of the base learning rate during 0-based ``epoch`` of ``epochs``.

    - ``step``: x0.1 at 50% and again at 75% of training (the AMP code's milestones 100/150 of 200).
    - ``cosine``: ``0.5 (1 + cos(pi epoch / epochs))`` (CosineAnnealingLR stepped per epoch, as ASAM).
    - ``hold-linear``: hold until 50%, linear down to 0.01 at 90%, then flat (the DAMP code's schedule).
    """
    t = epoch / epochs
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        return 0.1 ** ((t >= 0.5) + (t >= 0.75))
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    if schedule == "hold-linear":
        if t <= 0.5:
            return 1.0
        return 1.0 - 0.99 * min(1.0, (t - 0.5) / 0.4)
    raise ValueError(f"unknown schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")


__all__: list[str] = []  # the toolkit's own helpers: nothing here is public API
