"""Stage 2 of AT-GAN: transfer G_orig into G_attack against a target classifier.

G_attack starts as an exact copy of G_orig and is fine-tuned on fresh batches of ``(z, y_s)``
to minimise ``α · L_adv + β · L_dist``, plus ``γ · L_guard + λ_feature · L_feature`` for each guard
classifier given (see :mod:`atgan_plugin.attack.losses`). The classifier is only read: gradients are taken with
``torch.autograd.grad`` with respect to G_attack's parameters alone, so the classifier's
``.grad`` fields, ``requires_grad`` flags and parameters are never touched. The caller sets its
eval mode (:class:`atgan_plugin.attack.atgan.ATGANAttack` does).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn
from tqdm.auto import tqdm

from atgan_plugin.adapters.protocol import as_generator_module, check_generator
from atgan_plugin.attack.guards import as_guards
from atgan_plugin.attack.losses import (
    adversarial_loss,
    distance_loss,
    feature_distance,
    sample_rho,
    source_guard_loss,
    total_variation,
)
from atgan_plugin.attack.precision import autocast, check_precision

__all__ = [
    "ROBUST_GUARD_TRANSFER",
    "FitDivergedError",
    "FitResult",
    "GUARDED_TRANSFER",
    "GradientSync",
    "GuardView",
    "TransferConfig",
    "check_logits",
    "fit_attack_generator",
    "fit_record",
    "guard_view",
    "sample_sources",
    "transfer_loss",
]

Classifier = Callable[[torch.Tensor], torch.Tensor]  # images in the model's bounds -> logits
# (loss, grads) -> the loss averaged over the processes of a data-parallel fit; averages grads in place.
GradientSync = Callable[[torch.Tensor, Sequence[torch.Tensor]], torch.Tensor]


class FitDivergedError(RuntimeError):
    """The transfer's loss became NaN or infinite (lower the learning rate)."""


@dataclass(frozen=True)
class TransferConfig:
    """Hyper-parameters of the transfer.

    paper (appendix Table 6): α = 2, β = 1 for MNIST and Fashion-MNIST (α = 3, β = 2 for CelebA
    and CIFAR-10), ‖ρ‖₀ = 200 of 784 and ‖ρ‖∞ = 0.5 (appendix D.3).
    our choice: one step is one Adam update on a fresh batch of ``(z, y_s)`` (the paper's
    "epochs = 100" is undefined); ``steps``, ``lr`` and ``kappa`` were chosen from success/realism
    curves (``docs/benchmarks.md``, "Without the guard" and "Realism by default"); ``gamma`` weighs
    each source-class guard (our addition; 0 turns them off), without which the fit fools the model
    partly by erasing the source class; ``feature`` weighs the distance in each guard's penultimate
    features (our addition, needs guards: it keeps the change out of what the adversarially trained
    guards see, which lowers the robust-feature Fréchet distance; 0 here, :data:`GUARDED_TRANSFER`
    sets it for ATGANAttack); ``tv`` weighs the total variation of ``G_attack − G_orig`` (our
    addition, off by default: it removes the stripes the fit paints, at a cost in success against
    robust models).
    """

    alpha: float = 2.0
    beta: float = 1.0
    kappa: float = 2.0  # log-probability margin at which L_adv stops pulling
    gamma: float = 50.0  # weight of L_guard (needs a guard classifier)
    feature: float = 0.0  # weight of L_feature, summed over the guards (needs guards and γ > 0)
    rho_l0: int = 200
    rho_linf: float = 0.5
    steps: int = 1000
    lr: float = 1e-4
    batch_size: int = 64
    tv: float = 0.0  # weight of L_tv, the total variation of G_attack − G_orig
    seed: int = 0

    def __post_init__(self) -> None:
        weights = ("alpha", "beta", "kappa", "gamma", "feature", "lr", "tv")
        for name in (*weights, "rho_linf"):  # NaN passes every comparison below
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)}")
        for name in weights:
            if getattr(self, name) < 0 or (name == "lr" and self.lr == 0):
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


# our choice: ATGANAttack's defaults when guards are on (``guard="auto"``, the default, or given). The
# feature term holds what the adversarially trained guards see and a doubled α wins back the success it
# costs; 3,000 steps (1,500 before) let the guarded fit both fool robust targets and settle into changes the
# robust features see less: against an unseen normal target the robust-feature Fréchet distance falls
# from 2.8× to 1.6× G_orig's at the same success, against PGD-trained targets realistic success rises
# (docs/benchmarks.md, "A distance in the guards' features" and "A longer guarded fit").
# Without guards ATGANAttack keeps TransferConfig's defaults, the paper's α.
GUARDED_TRANSFER = TransferConfig(alpha=4.0, feature=8.0, steps=3000)

# our choice, for `atgan reproduce`: with a guard that is itself adversarially trained (the shipped
# ``robust_guard``) the guard keeps the source class, so L_dist can pull less than the paper's β = 1.
# Without such a guard keep β = 1. Why and the numbers: docs/results/fashion-mnist.md, "Why `atgan
# reproduce` uses a robust guard and β = 0.25".
ROBUST_GUARD_TRANSFER = TransferConfig(beta=0.25, steps=500)


@dataclass
class FitResult:
    """A fitted G_attack and how the fit went."""

    generator: nn.Module
    target: int | None
    config: TransferConfig
    history: list[dict[str, float]] = field(default_factory=list)  # every 10 steps

    def summary(self) -> dict[str, Any]:
        return {"target": self.target, "config": asdict(self.config), "final": self.history[-1] if self.history else {}}


def sample_sources(n: int, num_classes: int, target: int | None, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform source classes ``(n,)``; with a target, uniform over the classes other than it."""
    if target is None:
        return torch.randint(num_classes, (n,), generator=generator)
    y = torch.randint(num_classes - 1, (n,), generator=generator)
    return y + (y >= target).long()  # skip the target class


def to_bounds(images: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    """Maps generator output in [0, 1] to the classifier's input range ``bounds``."""
    low, high = bounds
    return images if (low, high) == (0.0, 1.0) else low + (high - low) * images


def check_logits(logits: torch.Tensor, num_classes: int) -> None:
    """A ``ValueError`` naming both sizes when the model's ``logits`` are not ``(N, num_classes)``."""
    if logits.ndim != 2 or logits.shape[1] != num_classes:
        raise ValueError(
            f"the generator has {num_classes} classes but the model returns logits of shape "
            f"{tuple(logits.shape)}; they must agree"
        )


class GuardView(NamedTuple):
    """One guard's view of a batch: on G_attack's images (with gradient) and on G_orig's (without).

    Shapes: logits ``(N, K)``; features ``(N, D)``, the input of the guard's last linear layer.
    """

    logits: torch.Tensor
    reference_logits: torch.Tensor
    features: torch.Tensor
    reference_features: torch.Tensor

    def rows(self, rows: slice) -> GuardView:
        """The same view for a slice of the batch (one target's rows in a joint fit)."""
        return GuardView(*(tensor[rows] for tensor in self))


def _logits_and_features(guard: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A guard's logits and penultimate features: the input of its last ``nn.Linear`` (in registration
    order), caught by a forward hook; a guard without one gives its logits as its features."""
    linears = [m for m in guard.modules() if isinstance(m, nn.Linear)]
    caught: list[torch.Tensor] = []
    hook = linears[-1].register_forward_hook(lambda _m, inputs, _out: caught.append(inputs[0])) if linears else None
    try:
        logits = guard(images).float()
    finally:
        if hook is not None:
            hook.remove()
    return logits, (caught[-1].float() if caught else logits)


def guard_view(guard: nn.Module, images: torch.Tensor, reference: torch.Tensor, logits_shape: torch.Size) -> GuardView:
    """One guard's logits and features on G_attack's ``images`` and (without gradient) on G_orig's ``reference``."""
    with torch.no_grad():
        reference_logits, reference_features = _logits_and_features(guard, reference)
    if reference_logits.shape != logits_shape:
        raise ValueError(
            f"a guard returns logits of shape {tuple(reference_logits.shape)} but the model returns "
            f"{tuple(logits_shape)}; a guard must classify the generator's classes"
        )
    logits, features = _logits_and_features(guard, images)
    return GuardView(logits, reference_logits, features, reference_features)


def transfer_loss(
    images: torch.Tensor,
    reference: torch.Tensor,
    logits: torch.Tensor,
    sources: torch.Tensor,
    labels: torch.Tensor,
    rho: torch.Tensor,
    *,
    targeted: bool,
    config: TransferConfig,
    guards: Sequence[GuardView] = (),
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The fit's loss on one batch (a scalar, the batch mean) and its per-example terms ``(N,)``.

    ``guards`` holds each guard's view of ``images`` and ``reference`` (:func:`guard_view`).
    """
    terms = {
        "l_adv": adversarial_loss(logits, labels, targeted=targeted, kappa=config.kappa, spread=bool(guards)),
        "l_dist": distance_loss(images, reference, rho),
    }
    loss = config.alpha * terms["l_adv"].mean() + config.beta * terms["l_dist"].mean()
    if guards:
        per_guard = [source_guard_loss(v.logits, v.reference_logits, sources) for v in guards]
        terms["l_guard"] = torch.stack(per_guard).sum(0)
        loss = loss + config.gamma * terms["l_guard"].mean()
        if config.feature > 0:
            per_guard = [feature_distance(v.features, v.reference_features) for v in guards]
            terms["l_feature"] = torch.stack(per_guard).sum(0)
            loss = loss + config.feature * terms["l_feature"].mean()
    if config.tv > 0:
        terms["l_tv"] = total_variation(images - reference)  # the stripes and speckle the fit paints
        loss = loss + config.tv * terms["l_tv"].mean()
    return loss, terms


@torch.no_grad()
def fit_record(
    step: int,
    loss: torch.Tensor,
    terms: dict[str, torch.Tensor],
    logits: torch.Tensor,
    labels: torch.Tensor,
    targeted: bool,
    images: torch.Tensor,
    reference: torch.Tensor,
) -> dict[str, float]:
    """One history record: the loss, the mean of each term, the batch's success and mean ℓ2 to G_orig."""
    predicted = logits.argmax(1)
    fooled = (predicted == labels) if targeted else (predicted != labels)
    return {
        "step": step,
        "loss": loss.item(),
        **{name: term.mean().item() for name, term in terms.items()},
        "success": fooled.float().mean().item(),
        "l2": (images - reference).flatten(1).norm(dim=1).mean().item(),
    }


@torch.enable_grad()  # callers may sit inside torch.no_grad(), e.g. a generate() that fits on first use
def fit_attack_generator(
    g_orig: nn.Module,
    classifier: Classifier,
    *,
    target: int | None = None,
    config: TransferConfig = TransferConfig(),
    bounds: tuple[float, float] = (0.0, 1.0),
    device: torch.device | None = None,
    progress: bool = True,
    callback: Callable[[int, nn.Module], None] | None = None,
    guard: nn.Module | Sequence[nn.Module] | None = None,
    precision: str = "fp32",
    sync: GradientSync | None = None,
) -> FitResult:
    """Fine-tunes a copy of ``g_orig`` so that ``classifier`` misclassifies its images.

    Args:
        g_orig: a :class:`~atgan_plugin.adapters.ConditionalGenerator`; it is not modified.
        classifier: images ``(N, C, H, W)`` within ``bounds`` -> logits ``(N, K)``, differentiable.
        target: ``None`` for untargeted, else the class every image should be classified as.
        device: where to fit; defaults to ``g_orig``'s device.
        callback: called as ``callback(step, g_attack)`` after every 10th step (for curves).
        guard: a classifier of the generator's classes on images in [0, 1] (AC-WGAN_GP's
            auxiliary classifier) that should keep recognising the source class, or a sequence of
            them; each one's L_guard is weighed by ``config.gamma``. They are copied to ``device``
            and only read, like ``g_orig``.
        precision: ``"fp32"`` or ``"bf16"``: the forward passes under bf16 autocast
            (:mod:`atgan_plugin.attack.precision`); parameters, Adam and the losses stay float32.
        sync: data-parallel fits (:mod:`atgan_plugin.attack.distributed`): called as ``sync(loss, grads)``
            after each backward pass, it averages ``grads`` in place over the processes and returns
            the mean loss. ``None``: one process.
    """
    check_generator(g_orig)
    check_precision(precision)
    num_classes = int(as_generator_module(g_orig).num_classes)
    if target is not None and not 0 <= target < num_classes:
        raise ValueError(f"target class {target} is outside [0, {num_classes})")
    if device is None:
        device = next(g_orig.parameters()).device
    # Work on copies: the caller's generator keeps its device, mode and flags.
    g_orig = as_generator_module(copy.deepcopy(g_orig).to(device).requires_grad_(False))
    g_attack = copy.deepcopy(g_orig)
    # Frozen batch-norm statistics and no dropout: G(z, y) is a fixed function of (z, y).
    g_orig.eval()
    g_attack.eval()
    guards = (
        [copy.deepcopy(g).to(device).requires_grad_(False).eval() for g in as_guards(guard)] if config.gamma > 0 else []
    )
    for p in g_attack.parameters():
        p.requires_grad_(False)
    params = list(g_attack.attack_parameters())
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=config.lr)
    rng = torch.Generator().manual_seed(config.seed)
    targeted = target is not None
    history: list[dict[str, float]] = []

    bar = tqdm(range(config.steps), desc=f"AT-GAN fit (target={target})", disable=not progress)
    for step in bar:
        z = g_orig.sample_z(config.batch_size, generator=rng, device=device)
        y_s = sample_sources(config.batch_size, num_classes, target, rng).to(device)
        with torch.no_grad(), autocast(device, precision):
            reference = g_orig(z, y_s).float()
        with autocast(device, precision):
            images = g_attack(z, y_s).float()
            logits = classifier(to_bounds(images, bounds)).float()
            check_logits(logits, num_classes)
            guard_views = [guard_view(g, images, reference, logits.shape) for g in guards]
        labels = y_s if target is None else torch.full_like(y_s, target)
        rho = sample_rho(images.shape, l0=config.rho_l0, linf=config.rho_linf, generator=rng, device=device)
        loss, terms = transfer_loss(
            images, reference, logits, y_s, labels, rho, targeted=targeted, config=config, guards=guard_views
        )
        grads = torch.autograd.grad(loss, params)
        if sync is not None:  # data-parallel: every rank ends with the mean over all ranks
            loss = sync(loss.detach(), grads)
        if not torch.isfinite(loss):
            raise FitDivergedError(f"AT-GAN fit diverged at step {step} (loss {loss.item()}); lower lr")
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        optimizer.step()

        if step % 10 == 9 or step == config.steps - 1:
            record = fit_record(step + 1, loss, terms, logits, labels, targeted, images, reference)
            history.append(record)
            bar.set_postfix(success=f"{record['success']:.2f}", l2=f"{record['l2']:.2f}")
            if callback is not None:
                callback(step + 1, g_attack)

    for p in g_attack.parameters():
        p.requires_grad_(False)
        p.grad = None
    return FitResult(g_attack, target, config, history)
