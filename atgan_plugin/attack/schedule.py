"""The fit's learning-rate schedule, its length and its stopping rule (``TransferConfig.schedule``, ``warmup``,
``stretch``, ``settle``).

our choices: a linear warm-up over the fraction ``warmup`` of the steps, then the rate held (``"constant"``, the paper's) or brought
down to 0 at ``steps`` along a half cosine (``"cosine"``): the fit settles into its final images while the
rate falls, where a constant rate keeps it moving at its noise floor.

The schedule's length (:class:`Horizon`, ``stretch`` > 0) is ``steps``, lengthened by ``steps`` (at most
``stretch`` times) when the fit lags: halfway along it, some setting's batch success over the last
:data:`STRETCH_WINDOW` steps is below :data:`STRETCH_BELOW`. A target the preset's steps suit is fitted in
``steps``; one that resists it (a fully connected network, a robust one) gets a longer, slower-cooling fit
instead of an unfinished one. The cosine's horizon moves with it, so the rate rises again where it was
lengthened.

The stopping rule (``settle`` > 0) reads what the fit computes anyway, per target group: the batch success
and the loss (whose guard and feature terms are the realism signals). Every ``settle`` steps it compares the
window's means with the previous window's: a group is quiet when its mean loss moved by less than
:data:`NOISE_MULTIPLE` standard errors of the difference (the steps' own noise: a fixed tolerance would either
never trigger or stop a fit still moving) and its success by less than :data:`SUCCESS_TOLERANCE`. The fit ends
once every group has been quiet twice in a row after the warm-up. ``steps`` stays the ceiling. Measured:
``docs/benchmarks.md``, "The realistic fit at the paper fit's cost".
"""

from __future__ import annotations

import math

import torch

from atgan_plugin.attack.config import TransferConfig

__all__ = [
    "NOISE_MULTIPLE",
    "STRETCH_BELOW",
    "STRETCH_WINDOW",
    "SUCCESS_TOLERANCE",
    "Horizon",
    "SettleRule",
    "learning_rate",
]

SUCCESS_TOLERANCE = 0.02  # batch success, as a fraction
NOISE_MULTIPLE = 2.0  # standard errors of the difference of two window means
STRETCH_BELOW = 0.95  # batch success halfway along the schedule below which it is lengthened
STRETCH_WINDOW = 50  # steps whose batch success that decision averages


def learning_rate(config: TransferConfig, step: int, horizon: int | None = None) -> float:
    """The rate of step ``step`` (0-based): ``config.lr`` times the warm-up ramp and the decay, which reaches
    0 at ``horizon`` (default ``config.steps``; :class:`Horizon` may lengthen it)."""
    warmup = config.warmup_steps
    if step < warmup:
        return config.lr * (step + 1) / warmup
    if config.schedule == "constant":
        return config.lr
    span = max((config.steps if horizon is None else horizon) - warmup, 1)
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(step - warmup, span) / span))


class Horizon:
    """The schedule's length in steps (see the module docstring); fed each step's batch success per setting."""

    def __init__(self, config: TransferConfig):
        self.base = self.steps = config.steps
        self.ceiling = config.steps * (1 + config.stretch)
        self._success: torch.Tensor | None = None  # (K,): Σ batch success over the window before halfway

    def update(self, step: int, success: torch.Tensor) -> bool:
        """Adds step ``step``'s batch success ``(K,)``; ``True`` when the schedule was lengthened at this step."""
        halfway = self.steps // 2
        window = min(STRETCH_WINDOW, halfway)
        if self.steps >= self.ceiling or not halfway - window <= step < halfway:
            return False
        success = success.detach().double().cpu()
        self._success = success if self._success is None else self._success + success
        if step < halfway - 1:
            return False
        lagging = bool((self._success / window < STRETCH_BELOW).any())
        self._success = None
        if lagging:
            self.steps += self.base
        return lagging


class SettleRule:
    """Decides when a fit has settled; fed each step's per-group ``(loss, success)`` ``(K, 2)``."""

    def __init__(self, config: TransferConfig):
        self.window = config.settle
        self.start = config.warmup_steps
        self._sums: torch.Tensor | None = None  # (K, 3): Σ loss, Σ loss², Σ success over the open window
        self._previous: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # mean, its variance, success
        self._quiet = 0  # consecutive windows without change

    def update(self, step: int, signals: torch.Tensor) -> bool:
        """Adds step ``step``'s signals; ``True`` when the fit should stop after this step."""
        if self.window < 2 or step < self.start:
            return False
        signals = signals.detach().double().cpu()
        row = torch.stack([signals[:, 0], signals[:, 0].square(), signals[:, 1]], 1)
        self._sums = row if self._sums is None else self._sums + row
        if (step - self.start + 1) % self.window:
            return False
        n = self.window
        mean, success = self._sums[:, 0] / n, self._sums[:, 2] / n
        variance = ((self._sums[:, 1] - n * mean.square()) / (n - 1)).clamp(min=0) / n  # of the window's mean
        self._sums = None
        previous, self._previous = self._previous, (mean, variance, success)
        if previous is None:
            return False
        noise = NOISE_MULTIPLE * (variance + previous[1]).sqrt()
        quiet = bool(
            ((mean - previous[0]).abs() <= noise).all() and ((success - previous[2]).abs() < SUCCESS_TOLERANCE).all()
        )
        self._quiet = self._quiet + 1 if quiet else 0
        return self._quiet >= 2
