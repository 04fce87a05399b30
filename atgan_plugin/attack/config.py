"""The attack's settings: one frozen dataclass, :class:`TransferConfig`, and its two presets.

paper (appendix Table 6 and D.3): α = 2, β = 1 for MNIST and Fashion-MNIST (α = 3, β = 2 for CelebA and
CIFAR-10), ‖ρ‖₀ = 200 of 784 and ‖ρ‖∞ = 0.5. The paper's "epochs = 100" is undefined; one step here is one
Adam update on a batch of ``(z, y_s)``.

our choices (each one a field, switchable): the source-class guards (``gamma``), a distance in their
features (``feature``), an optional smoothness term (``tv``), a learning-rate schedule with warm-up
(``schedule``, ``warmup``) lengthened where the fit lags (``stretch``), a pool of G_orig's images rendered
once (``pool``) and a stopping rule (``settle``), and the per-example shrink of each generated image (``search_steps``,
:mod:`atgan_plugin.attack.shrink`). :meth:`TransferConfig.paper` is the paper's attack, :meth:`TransferConfig.realistic`
the default of ``ATGANAttack(generator=G)``; :data:`PRESETS` names both. How each was chosen:
``docs/benchmarks.md``, "The realistic fit at the paper fit's cost".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["PRESETS", "SCHEDULES", "SEARCH_STEPS_RANGE", "TransferConfig"]

SCHEDULES = ("constant", "cosine")
SEARCH_STEPS_RANGE = (0, 30)  # the shrink's passes: 0 (none) to enough for any float32 precision


@dataclass(frozen=True)
class TransferConfig:
    """The attack's settings (see the module docstring). The defaults are the paper's attack, with γ for guard
    classifiers when some are given.

    Fields:
        alpha, beta: weights of L_adv and L_dist.
        kappa: log-probability margin at which L_adv stops pulling.
        gamma: weight of each guard's L_guard (needs guard classifiers; 0 turns the guards off).
        feature: weight of L_feature, the distance in the guards' penultimate features (needs guards).
        rho_l0, rho_linf: ℓ0 and ℓ∞ bounds of the noise ρ in L_dist; ``rho_l0`` an ``int`` counts entries (the
            paper's 200 of 784), a ``float`` in [0, 1] is a fraction of the image's values (the realistic
            preset's 200/784, so that it suits every image size).
        steps: Adam steps, the schedule's length (``stretch`` may lengthen it, ``settle`` end it earlier).
        lr: the learning rate (the peak of the schedule).
        batch_size: ``(z, y_s)`` per step.
        tv: weight of L_tv, the total variation of ``G_attack − G_orig``.
        schedule: ``"constant"`` or ``"cosine"`` (to 0 at ``steps``), after a linear warm-up over the
            fraction ``warmup`` of ``steps``.
        pool: ``(z, y_s)`` rendered once through G_orig and the guards and drawn from at each step, at most
            ``steps × batch_size`` (what one setting's fit draws; 0: fresh draws every step, the paper's).
        ema: the decay of a moving average of G_attack's parameters, which the fit returns instead of its last
            step's (0: none); it averages out the steps' noise.
        stretch: the most times the schedule is lengthened by ``steps`` when, halfway along it, the fit's batch
            success lags (0: never); see :mod:`atgan_plugin.attack.schedule`.
        settle: the stopping rule's window in steps (0: the fit runs all ``steps``); see
            :mod:`atgan_plugin.attack.schedule`.
        search_steps: passes of the per-example shrink towards G_orig's image (``search_steps + 2`` model passes
            per example; 0: G_attack's image as it is, the paper's).
        seed: seeds the draws of ``(z, y_s, ρ)``.
    """

    alpha: float = 2.0
    beta: float = 1.0
    kappa: float = 2.0
    gamma: float = 50.0
    feature: float = 0.0
    rho_l0: int | float = 200
    rho_linf: float = 0.5
    steps: int = 1000
    lr: float = 1e-4
    batch_size: int = 64
    tv: float = 0.0
    schedule: str = "constant"
    warmup: float = 0.0
    pool: int = 0
    ema: float = 0.0
    stretch: int = 0
    settle: int = 0
    search_steps: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        weights = ("alpha", "beta", "kappa", "gamma", "feature", "lr", "tv")
        for name in (*weights, "rho_linf", "warmup", "ema"):  # NaN passes every comparison below
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        for name in weights:
            if getattr(self, name) < 0 or (name == "lr" and self.lr == 0):
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be a decay in [0, 1), got {self.ema}")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup must be a fraction of the steps in [0, 1), got {self.warmup}")
        if isinstance(self.rho_l0, bool) or not isinstance(self.rho_l0, (int, float)) or self.rho_l0 < 0:
            raise ValueError(f"rho_l0 must be a count (int >= 0) or a fraction (float in [0, 1]), got {self.rho_l0!r}")
        if isinstance(self.rho_l0, float) and not self.rho_l0 <= 1:
            raise ValueError(f"rho_l0 as a fraction of the image's values must be in [0, 1], got {self.rho_l0}")
        for name, low in (("steps", 1), ("batch_size", 1), ("pool", 0), ("stretch", 0), ("settle", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        if (
            isinstance(self.search_steps, bool)
            or not isinstance(self.search_steps, int)
            or not SEARCH_STEPS_RANGE[0] <= self.search_steps <= SEARCH_STEPS_RANGE[1]
        ):
            low, high = SEARCH_STEPS_RANGE
            raise ValueError(f"search_steps must be an integer in [{low}, {high}], got {self.search_steps!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")

    @property
    def warmup_steps(self) -> int:
        """The warm-up's length in steps."""
        return int(self.warmup * self.steps)

    @classmethod
    def paper(cls, **changes: object) -> TransferConfig:
        """The paper's attack: α 2, β 1, 1,000 constant-rate steps on fresh batches, no guard (γ 0), no shrink."""
        return cls(**{"gamma": 0.0, **changes})  # type: ignore[arg-type]

    @classmethod
    def realistic(cls, **changes: object) -> TransferConfig:
        """The default of ``ATGANAttack(generator=G)``: guards with their feature term, a doubled α to win
        back the success they cost, a doubled β to stay near G_orig's images, a warmed-up cosine schedule
        on a pool of G_orig's images, lengthened once where the fit lags, and the stopping rule
        (``docs/benchmarks.md``, "The realistic fit at the paper fit's cost")."""
        realistic = {
            "alpha": 4.0,
            "beta": 2.0,
            "feature": 8.0,
            "steps": REALISTIC_STEPS,
            "lr": 3e-4,
            "batch_size": 32,
            "schedule": "cosine",
            "warmup": 0.05,
            "pool": 8192,
            "stretch": 1,
            "settle": 100,
            "search_steps": 2,
            "rho_l0": 200 / 784,  # the paper's density on 28x28, for every image size
        }
        return cls(**{**realistic, **changes})  # type: ignore[arg-type]


REALISTIC_STEPS = 1000  # the realistic preset's ceiling; its cost is measured against the paper's fit
PRESETS = {"realistic": TransferConfig.realistic, "paper": TransferConfig.paper}
