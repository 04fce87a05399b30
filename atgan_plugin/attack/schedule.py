"""The fit's learning-rate schedule and its stopping rule (``TransferConfig.schedule``, ``warmup``, ``settle``).

our choices: a linear warm-up over the fraction ``warmup`` of the steps, then the rate held (``"constant"``, the paper's) or brought
down to 0 at ``steps`` along a half cosine (``"cosine"``): the fit settles into its final images while the
rate falls, where a constant rate keeps it moving at its noise floor.

The stopping rule (``settle`` > 0) reads what the fit computes anyway, per target group: the batch success
and the loss (whose guard and feature terms are the realism signals). Every ``settle`` steps it compares the
window's means with the previous window's; the fit ends once, for every group, success moved by less than
:data:`SUCCESS_TOLERANCE` and the loss by less than :data:`LOSS_TOLERANCE` of itself, twice in a row, and the
warm-up is over. ``steps`` stays the ceiling. Measured: ``docs/benchmarks.md``, "The realistic fit at the
paper fit's cost".
"""

from __future__ import annotations

import math

import torch

from atgan_plugin.attack.config import TransferConfig

__all__ = ["LOSS_TOLERANCE", "SUCCESS_TOLERANCE", "SettleRule", "learning_rate"]

SUCCESS_TOLERANCE = 0.01  # batch success, as a fraction
LOSS_TOLERANCE = 0.01  # relative change of the window's mean loss


def learning_rate(config: TransferConfig, step: int) -> float:
    """The rate of step ``step`` (0-based): ``config.lr`` times the warm-up ramp and the decay."""
    warmup = config.warmup_steps
    if step < warmup:
        return config.lr * (step + 1) / warmup
    if config.schedule == "constant":
        return config.lr
    span = max(config.steps - warmup, 1)
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(step - warmup, span) / span))


class SettleRule:
    """Decides when a fit has settled; fed each step's per-group ``(loss, success)`` ``(K, 2)``."""

    def __init__(self, config: TransferConfig):
        self.window = config.settle
        self.start = config.warmup_steps
        self._sums: torch.Tensor | None = None
        self._previous: torch.Tensor | None = None
        self._quiet = 0  # consecutive windows without change

    def update(self, step: int, signals: torch.Tensor) -> bool:
        """Adds step ``step``'s signals; ``True`` when the fit should stop after this step."""
        if self.window == 0 or step < self.start:
            return False
        signals = signals.detach().double().cpu()
        self._sums = signals if self._sums is None else self._sums + signals
        if (step - self.start + 1) % self.window:
            return False
        means, self._sums = self._sums / self.window, None
        previous, self._previous = self._previous, means
        if previous is None:
            return False
        loss_change = (means[:, 0] - previous[:, 0]).abs() / previous[:, 0].abs().clamp(min=1e-6)
        success_change = (means[:, 1] - previous[:, 1]).abs()
        quiet = bool((loss_change < LOSS_TOLERANCE).all() and (success_change < SUCCESS_TOLERANCE).all())
        self._quiet = self._quiet + 1 if quiet else 0
        return self._quiet >= 2
