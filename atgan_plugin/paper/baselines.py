"""The perturbation baselines of the paper's tables: FGSM, PGD and R+FGSM, run through Foolbox or AdverTorch.

Nothing is re-implemented: FGSM is ``foolbox.attacks.FGSM`` / ``advertorch.attacks.GradientSignAttack``,
PGD is ``foolbox.attacks.LinfPGD`` / ``advertorch.attacks.LinfPGDAttack``. Neither toolkit ships
R+FGSM (Tramèr et al. 2018), so it is composed from their parts: a random step
``x' = clip(x + α·sign(N(0, I)))`` and then the toolkit's FGSM with budget ``ε − α`` from ``x'``;
the result stays within ε of ``x`` in ℓ∞.

paper (appendix A.1, Table 6): the settings per dataset in :data:`SETTINGS`; all ℓ∞, untargeted.
our choice: PGD starts at a uniform random point of the ε-ball (Madry et al.; both toolkits'
default); the random draws come from ``seed`` (torch's generator is forked, so the caller's
random state is left as it was); the toolkit is AdverTorch unless asked (plain torch; both
toolkits' PGD speeds side by side: ``docs/benchmarks.md``, "Generation throughput versus 20-step PGD").

The model is only read: it runs in eval mode, its parameters' ``requires_grad`` is switched off
while the toolkit back-propagates (so no ``.grad`` accumulates), and every flag is restored.

Shape: images ``(N, C, H, W)`` within ``bounds``, labels ``(N,)`` int64 (true classes); the
output has the images' shape, detached.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import foolbox as fb
import torch
from foolbox.models.pytorch import PyTorchModel  # the defining module: foolbox re-exports it implicitly
from torch import nn

from atgan_plugin.attack._advertorch_compat import advertorch, ctx_noparamgrad
from atgan_plugin.utils import eval_mode, model_device

__all__ = ["BASELINES", "SETTINGS", "TOOLKITS", "BaselineSettings", "fgsm", "pgd", "rfgsm", "run_baseline"]

BASELINES = ("fgsm", "pgd", "rfgsm")
TOOLKITS = ("advertorch", "foolbox")


@dataclass(frozen=True)
class BaselineSettings:
    """One dataset's row of appendix Table 6 (ℓ∞ budgets in [0, 1] pixel units)."""

    fgsm_epsilon: float
    pgd_epsilon: float
    pgd_step_size: float
    pgd_steps: int
    rfgsm_epsilon: float | None  # None: the paper gives no R+FGSM setting for this dataset
    rfgsm_alpha: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# paper: AT-GAN paper, appendix D.1, Table 6. Fashion-MNIST's R+FGSM ε (0.2) is larger than its FGSM ε
# (0.1) in the table; we keep the table's values.
SETTINGS: dict[str, BaselineSettings] = {
    "mnist": BaselineSettings(0.3, 0.3, 0.075, 20, 0.3, 0.15),
    "fashion-mnist": BaselineSettings(0.1, 0.1, 0.01, 20, 0.2, 0.1),
    "celeba": BaselineSettings(0.015, 0.015, 0.005, 20, 0.015, 0.003),
    "cifar10": BaselineSettings(0.03, 0.03, 0.0075, 20, None, None),
}


def settings_for(dataset: str) -> BaselineSettings:
    if dataset not in SETTINGS:
        raise ValueError(f"no baseline settings for dataset {dataset!r}; known: {sorted(SETTINGS)}")
    return SETTINGS[dataset]


@contextmanager
def _read_only(model: nn.Module, device: torch.device, seed: int | None) -> Iterator[None]:
    """Eval mode, parameters without gradients, and (with ``seed``) a forked, seeded torch RNG."""
    devices = [device] if device.type == "cuda" else []
    with eval_mode(model), ctx_noparamgrad(model), torch.random.fork_rng(devices=devices):
        if seed is not None:
            torch.manual_seed(seed)
        yield


def _check(toolkit: str, x: torch.Tensor, y: torch.Tensor, bounds: tuple[float, float]) -> None:
    if toolkit not in TOOLKITS:
        raise ValueError(f"unknown toolkit {toolkit!r}; choose one of {TOOLKITS}")
    if x.ndim != 4 or y.shape != (len(x),):
        raise ValueError(f"images must be (N, C, H, W) and labels (N,), got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.numel() and (x.min().item() < bounds[0] or x.max().item() > bounds[1]):
        raise ValueError(f"images must lie within bounds {bounds}, found [{x.min().item():.4g}, {x.max().item():.4g}]")


def _foolbox_model(model: nn.Module, bounds: tuple[float, float], device: torch.device) -> PyTorchModel:
    return PyTorchModel(model, bounds=bounds, device=device)


def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epsilon: float,
    toolkit: str = "advertorch",
    bounds: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """FGSM (Goodfellow et al.): ``clip(x + ε·sign(∇x CE(model(x), y)))`` through ``toolkit``."""
    _check(toolkit, x, y, bounds)
    device = model_device(model, default=x.device)
    with _read_only(model, device, None):
        if toolkit == "foolbox":
            _, clipped, _ = fb.attacks.FGSM()(_foolbox_model(model, bounds, device), x, y, epsilons=epsilon)
            return clipped.detach()
        attack = advertorch.attacks.GradientSignAttack(model, eps=epsilon, clip_min=bounds[0], clip_max=bounds[1])
        # advertorch is untyped: perturb returns Any.
        return attack.perturb(x, y).detach()  # type: ignore[no-any-return]


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epsilon: float,
    step_size: float,
    steps: int,
    random_start: bool = True,
    toolkit: str = "advertorch",
    seed: int = 0,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """ℓ∞ PGD (Madry et al.) with ``steps`` steps of ``step_size`` in the ε-ball, through ``toolkit``."""
    _check(toolkit, x, y, bounds)
    if steps < 1:
        raise ValueError(f"PGD needs at least one step, got {steps}")
    device = model_device(model, default=x.device)
    with _read_only(model, device, seed):
        if toolkit == "foolbox":
            attack = fb.attacks.LinfPGD(abs_stepsize=step_size, steps=steps, random_start=random_start)
            _, clipped, _ = attack(_foolbox_model(model, bounds, device), x, y, epsilons=epsilon)
            return clipped.detach()
        adversary = advertorch.attacks.LinfPGDAttack(
            model,
            eps=epsilon,
            nb_iter=steps,
            eps_iter=step_size,
            rand_init=random_start,
            clip_min=bounds[0],
            clip_max=bounds[1],
        )
        # advertorch is untyped: perturb returns Any.
        return adversary.perturb(x, y).detach()  # type: ignore[no-any-return]


def random_sign_step(
    x: torch.Tensor, alpha: float, *, seed: int, bounds: tuple[float, float] = (0.0, 1.0)
) -> torch.Tensor:
    """R+FGSM's first half: ``clip(x + α·sign(N(0, I)))``, the noise drawn on CPU from ``seed``."""
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)).to(x.device, x.dtype)
    return (x + alpha * noise.sign()).clamp(*bounds)


def rfgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epsilon: float,
    alpha: float,
    toolkit: str = "advertorch",
    seed: int = 0,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """R+FGSM (Tramèr et al.): a random sign step of α, then the toolkit's FGSM with ε − α.

    The result stays within ℓ∞ ≤ ε of ``x``.
    """
    if not 0 <= alpha < epsilon:
        raise ValueError(f"R+FGSM needs 0 <= alpha < epsilon, got alpha={alpha}, epsilon={epsilon}")
    start = random_sign_step(x, alpha, seed=seed, bounds=bounds)
    return fgsm(model, start, y, epsilon=epsilon - alpha, toolkit=toolkit, bounds=bounds)


def run_baseline(
    name: str,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    dataset: str = "fashion-mnist",
    toolkit: str = "advertorch",
    seed: int = 0,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """Baseline ``name`` ("fgsm", "pgd" or "rfgsm") with ``dataset``'s Table 6 settings."""
    s = settings_for(dataset)
    if name == "fgsm":
        return fgsm(model, x, y, epsilon=s.fgsm_epsilon, toolkit=toolkit, bounds=bounds)
    if name == "pgd":
        return pgd(
            model,
            x,
            y,
            epsilon=s.pgd_epsilon,
            step_size=s.pgd_step_size,
            steps=s.pgd_steps,
            toolkit=toolkit,
            seed=seed,
            bounds=bounds,
        )
    if name == "rfgsm":
        if s.rfgsm_epsilon is None or s.rfgsm_alpha is None:
            raise ValueError(f"the paper gives no R+FGSM setting for {dataset!r}")
        return rfgsm(
            model, x, y, epsilon=s.rfgsm_epsilon, alpha=s.rfgsm_alpha, toolkit=toolkit, seed=seed, bounds=bounds
        )
    raise ValueError(f"unknown baseline {name!r}; known: {BASELINES}")
