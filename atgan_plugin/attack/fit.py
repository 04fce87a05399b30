"""Stage 2 of AT-GAN, the fit: G_orig copied into G_attack and fine-tuned against a classifier.

One loop fits K ≥ 1 settings at once (``None`` for untargeted, or a target class each): K copies of the
parameters G_attack fine-tunes, stepped together (:class:`~atgan_plugin.attack.stacked.StackedGenerator`).
Each step, on a batch of ``(z, y_s)`` per setting (fresh, or drawn from a pool rendered once:
:mod:`atgan_plugin.attack.reference_pool`),

- G_orig's reference and the guards' view of it (:class:`~atgan_plugin.attack.objective.Reference`), no gradient;
- one forward pass of the K parameter sets, one call of the model and of each guard on all K·b images;
- each setting's loss (:func:`~atgan_plugin.attack.objective.transfer_loss`); the K losses only add, so each
  copy gets its own fit's gradient; one backward pass and one fused Adam step at the schedule's rate
  (:mod:`atgan_plugin.attack.schedule`), until ``steps`` (lengthened where the fit lags) or the stopping rule.

Setting k draws from its own generator seeded like a fit of that setting alone, so a setting fitted with
others at the same batch gives its separate fit's result up to floating-point rounding. The model is only
read: gradients are taken with ``torch.autograd.grad`` with respect to the stacked parameters alone, so its
``.grad`` fields, ``requires_grad`` flags and parameters are never touched; the caller sets its eval mode.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import nn
from torch.profiler import record_function
from tqdm.auto import tqdm

from atgan_plugin.adapters.protocol import as_generator_module, check_generator
from atgan_plugin.attack.config import TransferConfig
from atgan_plugin.attack.guards import as_guards
from atgan_plugin.attack.losses import sample_rho
from atgan_plugin.attack.objective import (
    Reference,
    check_logits,
    guard_views,
    history_record,
    render_reference,
    transfer_loss,
)
from atgan_plugin.attack.precision import autocast, check_precision
from atgan_plugin.attack.reference_pool import ReferencePool
from atgan_plugin.attack.schedule import Horizon, SettleRule, learning_rate
from atgan_plugin.attack.stacked import StackedGenerator, adam, in_layout
from atgan_plugin.imaging import to_bounds

__all__ = [
    "Classifier",
    "FitDivergedError",
    "FitProgress",
    "FitResult",
    "GradientSync",
    "Target",
    "check_joint_batch_size",
    "fit_attack_generator",
    "fit_attack_generators",
    "fit_groups",
    "sample_sources",
]

Target = int | None
Classifier = Callable[[torch.Tensor], torch.Tensor]  # images in the model's bounds -> logits
# (per-setting signals, grads) -> the signals averaged over the processes of a data-parallel fit; averages
# grads in place.
GradientSync = Callable[[torch.Tensor, Sequence[torch.Tensor]], torch.Tensor]
RECORD_EVERY = 10  # steps between history records
PAPER = TransferConfig.paper()


class FitDivergedError(RuntimeError):
    """The fit's loss became NaN or infinite (lower the learning rate)."""


@dataclass(frozen=True)
class FitProgress:
    """What a fit's ``callback`` sees every 10 steps: the step, each setting's latest history record, and
    (at a copy's cost) each setting's G_attack as it stands."""

    step: int
    records: dict[Target, dict[str, float]]
    _stack: StackedGenerator
    _targets: list[Target]

    def generator(self, target: Target) -> nn.Module:
        """A frozen copy of ``target``'s G_attack now."""
        return self._stack.generator(self._targets.index(target))


@dataclass
class FitResult:
    """A fitted G_attack and how the fit went (``history``: a record every 10 steps and at the last)."""

    generator: nn.Module
    target: Target
    config: TransferConfig
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def steps_run(self) -> int:
        """Steps the fit took (fewer than ``config.steps`` when the stopping rule ended it, more when lengthened)."""
        return int(self.history[-1]["step"]) if self.history else 0

    def summary(self) -> dict[str, Any]:
        return {"target": self.target, "config": asdict(self.config), "final": self.history[-1] if self.history else {}}


def sample_sources(n: int, num_classes: int, target: Target, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform source classes ``(n,)``; with a target, uniform over the classes other than it."""
    if target is None:
        return torch.randint(num_classes, (n,), generator=generator)
    y = torch.randint(num_classes - 1, (n,), generator=generator)
    return y + (y >= target).long()  # skip the target class


def check_joint_batch_size(joint_batch_size: int | None) -> None:
    """A ``ValueError`` unless ``joint_batch_size`` (examples per target and step) is an integer >= 1 or None."""
    if joint_batch_size is not None and (
        isinstance(joint_batch_size, bool) or not isinstance(joint_batch_size, int) or joint_batch_size < 1
    ):
        raise ValueError(f"joint_batch_size must be an integer >= 1 or None, got {joint_batch_size!r}")


def fit_groups(targets: Sequence[Target], reduced_batch: bool) -> list[list[Target]]:
    """The runs that fit ``targets``: all together, except that with a ``reduced_batch`` per target the
    untargeted setting (``None``) is fitted alone, at the full batch, first (our choice: at a reduced batch
    an untargeted fit falls short of its separate fit where targeted ones do not; ``docs/benchmarks.md``,
    "Ten targets in one fit")."""
    if not reduced_batch or None not in targets or len(targets) == 1:
        return [list(targets)]
    return [[None], [t for t in targets if t is not None]]


def _check_targets(targets: list[Target], num_classes: int) -> None:
    if not targets:
        raise ValueError("no targets to fit: give at least one class index (or None for untargeted)")
    if len(set(targets)) != len(targets):
        raise ValueError(f"targets {targets} name a setting twice")
    bad = [t for t in targets if t is not None and not (isinstance(t, int) and 0 <= t < num_classes)]
    if len(targets) == 1 and bad:
        raise ValueError(f"target class {bad[0]} is outside [0, {num_classes})")
    if bad:
        raise ValueError(f"target classes {bad} are outside [0, {num_classes})")


class _Draws:
    """Each setting's batch of ``(z, y_s)`` and G_orig's reference for it: fresh, or from the pool."""

    def __init__(
        self,
        g_orig: nn.Module,
        guards: Sequence[nn.Module],
        targets: list[Target],
        rngs: list[torch.Generator],
        *,
        config: TransferConfig,
        batch: int,
        num_classes: int,
        device: torch.device,
        precision: str,
    ):
        self.g_orig, self.guards, self.targets, self.rngs = g_orig, guards, targets, rngs
        self.batch, self.num_classes, self.device, self.precision = batch, num_classes, device, precision
        self.pool: ReferencePool | None = None
        if config.pool > 0:
            pool_rng = torch.Generator().manual_seed(config.seed)  # the same pool for every setting
            with record_function("fit: pool render"):
                self.pool = ReferencePool.render(
                    g_orig,
                    guards,
                    min(config.pool, config.steps * batch),  # no more than one setting's fit draws
                    num_classes=num_classes,
                    generator=pool_rng,
                    device=device,
                    precision=precision,
                )
            self.samplers = [self.pool.sampler(t, rng) for t, rng in zip(targets, rngs, strict=True)]

    def next(self) -> tuple[torch.Tensor, torch.Tensor, Reference]:
        """``z`` ``(K, b, z_dim)``, ``y_s`` ``(K, b)`` and the reference of all ``K·b`` rows."""
        if self.pool is not None:
            rows = torch.stack([draw(self.batch) for draw in self.samplers])  # (K, b)
            return self.pool.z[rows], self.pool.sources[rows], self.pool.reference.take(rows.flatten())
        b = self.batch
        draws = [
            (
                as_generator_module(self.g_orig).sample_z(b, generator=rng, device=self.device),
                sample_sources(b, self.num_classes, t, rng),
            )
            for t, rng in zip(self.targets, self.rngs, strict=True)
        ]
        z = torch.stack([d[0] for d in draws])
        y_s = torch.stack([d[1] for d in draws]).to(self.device)
        reference = render_reference(
            self.g_orig,
            self.guards,
            z.flatten(0, 1),
            y_s.flatten(),
            num_classes=self.num_classes,
            precision=self.precision,
        )  # one pass for all settings
        return z, y_s, reference


@torch.enable_grad()  # callers may sit inside torch.no_grad(), e.g. a generate() that fits on first use
def fit_attack_generators(
    g_orig: nn.Module,
    classifier: Classifier,
    targets: Sequence[Target],
    *,
    config: TransferConfig = PAPER,
    batch_per_target: int | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
    device: torch.device | None = None,
    progress: bool = True,
    guard: nn.Module | Sequence[nn.Module] | None = None,
    precision: str = "fp32",
    sync: GradientSync | None = None,
    callback: Callable[[FitProgress], None] | None = None,
    start_from: Mapping[Target, nn.Module] | None = None,
) -> dict[Target, FitResult]:
    """Fits one G_attack per entry of ``targets`` (``None``: untargeted) in one run; see the module docstring.

    Args:
        g_orig: a :class:`~atgan_plugin.adapters.ConditionalGenerator`; it is not modified.
        classifier: images ``(N, C, H, W)`` within ``bounds`` -> logits ``(N, K)``, differentiable.
        targets: the settings to fit, each a class index or ``None`` (untargeted), each once.
        config: the fit's settings (:class:`~atgan_plugin.attack.config.TransferConfig`).
        batch_per_target: ``(z, y_s)`` per setting and step (default ``config.batch_size``).
        device: where to fit; defaults to ``g_orig``'s device.
        guard: classifiers of the generator's classes on images in [0, 1] that must keep recognising the
            source class (each weighed by ``config.gamma``); copied to ``device`` and only read.
        precision: ``"fp32"`` or ``"bf16"``: the forward passes under bf16 autocast
            (:mod:`atgan_plugin.attack.precision`); parameters, Adam and the losses stay float32.
        sync: data-parallel fits (:mod:`atgan_plugin.attack.distributed`): ``sync(signals, grads)`` after each
            backward pass averages ``grads`` in place over the processes and returns the mean ``signals``.
        callback: called with a :class:`FitProgress` every 10 steps (curves, a goal to stop at).
        start_from: for some settings, a generator to start from instead of G_orig (an earlier fit's
            G_attack: a warm start); L_dist and the guards still measure against G_orig.

    Returns each setting's :class:`FitResult`, whose ``config`` records the batch it was fitted with.
    """
    check_generator(g_orig)
    check_precision(precision)
    targets = list(targets)
    num_classes = int(as_generator_module(g_orig).num_classes)
    _check_targets(targets, num_classes)
    b = config.batch_size if batch_per_target is None else batch_per_target
    if isinstance(b, bool) or not isinstance(b, int) or b < 1:
        raise ValueError(f"batch_per_target must be an integer >= 1, got {batch_per_target!r}")
    if device is None:
        device = next(g_orig.parameters()).device
    k = len(targets)

    # Work on copies: the caller's generator keeps its device, mode and flags; batch norm frozen.
    g_orig = as_generator_module(copy.deepcopy(g_orig).to(device).requires_grad_(False).eval())
    stack = StackedGenerator(g_orig, list(g_orig.attack_parameters()), k)
    for target, start in (start_from or {}).items():
        if target not in targets:
            raise ValueError(f"start_from names the setting {target}, which is not among the targets {targets}")
        stack.start_from(targets.index(target), start)
    guards = (
        [copy.deepcopy(g).to(device).requires_grad_(False).eval() for g in as_guards(guard)] if config.gamma > 0 else []
    )
    rngs = [torch.Generator().manual_seed(config.seed) for _ in targets]  # each draws as its own fit would
    draws = _Draws(
        g_orig,
        guards,
        targets,
        rngs,
        config=config,
        batch=b,
        num_classes=num_classes,
        device=device,
        precision=precision,
    )
    params = list(stack.stacked.values())
    optimizer: torch.optim.Optimizer | None = None  # made after the first backward pass (adopt_layout)
    averages: list[torch.Tensor] | None = None
    labels = torch.tensor([num_classes if t is None else t for t in targets], device=device).repeat_interleave(b)
    targeted = torch.tensor([t is not None for t in targets], device=device).repeat_interleave(b)
    histories: dict[Target, list[dict[str, float]]] = {t: [] for t in targets}
    settle, horizon = SettleRule(config), Horizon(config)

    desc = f"AT-GAN fit (target={targets[0]})" if k == 1 else f"AT-GAN fit ({k} targets together)"
    bar = tqdm(total=config.steps, desc=desc, disable=not progress)
    for step in range(horizon.ceiling):
        if step >= horizon.steps:
            break
        with record_function("fit: reference (G_orig, guards)"):
            z, y_s, reference = draws.next()
        with autocast(device, precision):
            with record_function("fit: G_attack forward"):
                images = stack(z, y_s).flatten(0, 1).float()  # (K·b, C, H, W)
            with record_function("fit: model forward"):
                logits = classifier(to_bounds(images, bounds)).float()  # one call of the model for all settings
            check_logits(logits, num_classes)
            with record_function("fit: guards forward"):
                views = guard_views(guards, images, reference)
        sources = y_s.flatten()
        group_labels = torch.where(labels == num_classes, sources, labels)  # untargeted: their sources
        predicted = logits.detach().argmax(1)
        fooled = torch.where(targeted, predicted == group_labels, predicted != group_labels).float()
        losses, terms_of = [], []
        with record_function("fit: losses (ρ, terms)"):
            for i, target in enumerate(targets):
                rows = slice(i * b, (i + 1) * b)
                rho = sample_rho(
                    images[rows].shape, l0=config.rho_l0, linf=config.rho_linf, generator=rngs[i], device=device
                )
                loss, terms = transfer_loss(
                    images[rows],
                    reference.images[rows],
                    logits[rows],
                    sources[rows],
                    group_labels[rows],
                    rho,
                    targeted=target is not None,
                    config=config,
                    guards=[view.rows(rows) for view in views],
                )
                losses.append(loss)
                terms_of.append(terms)
        total = torch.stack(losses).sum()  # the settings' losses only add: each copy gets its own gradient
        with record_function("fit: backward"):
            grads: Sequence[torch.Tensor] = torch.autograd.grad(total, params)
        signals = torch.stack([torch.stack(losses).detach(), fooled.view(k, b).mean(1)], 1)  # (K, 2)
        if sync is not None:
            signals = sync(signals, grads)
        finite = torch.isfinite(signals[:, 0]).tolist()
        if not all(finite):
            if k == 1:
                raise FitDivergedError(f"AT-GAN fit diverged at step {step} (loss {signals[0, 0].item()}); lower lr")
            diverged = [t for t, ok in zip(targets, finite, strict=True) if not ok]
            raise FitDivergedError(f"AT-GAN fit diverged at step {step} for targets {diverged}; lower lr")
        if optimizer is None:
            params, grads = stack.adopt_layout(grads)
            optimizer = adam(params, config.lr, device)
            averages = [torch.zeros_like(p) for p in params] if config.ema > 0 else None
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step, horizon.steps)
        with record_function("fit: optimizer"):
            for p, g in zip(params, grads, strict=True):
                p.grad = in_layout(g, p)
            optimizer.step()
            if averages is not None:  # the parameters' moving average (TransferConfig.ema)
                torch._foreach_lerp_(averages, params, 1.0 - config.ema)

        stop = settle.update(step, signals)
        if horizon.update(step, signals[:, 1]):
            bar.total = horizon.steps  # the bar shows the lengthened schedule
        bar.update()
        if step % RECORD_EVERY == RECORD_EVERY - 1 or step == horizon.steps - 1 or stop:
            for i, target in enumerate(targets):
                rows = slice(i * b, (i + 1) * b)
                record = history_record(
                    step + 1,
                    signals[i, 0],
                    terms_of[i],
                    logits[rows],
                    group_labels[rows],
                    target is not None,
                    images[rows],
                    reference.images[rows],
                )
                histories[target].append({**record, "lr": learning_rate(config, step, horizon.steps)})
            success = [histories[t][-1]["success"] for t in targets]
            bar.set_postfix(success=f"{min(success):.2f}" if k == 1 else f"{min(success):.2f}..{max(success):.2f}")
            if callback is not None:
                callback(FitProgress(step + 1, {t: histories[t][-1] for t in targets}, stack, targets))
        if stop:
            break
    bar.close()

    with torch.no_grad():
        for p in params:
            p.grad = None
        if averages is not None:  # bias-corrected: the average started from zero
            done = int(histories[targets[0]][-1]["step"])  # the last step is always recorded
            for p, average in zip(params, averages, strict=True):
                p.copy_(average / (1.0 - config.ema**done))
    fit_config = replace(config, batch_size=b)
    return {t: FitResult(stack.generator(i), t, fit_config, histories[t]) for i, t in enumerate(targets)}


def fit_attack_generator(
    g_orig: nn.Module,
    classifier: Classifier,
    *,
    target: Target = None,
    config: TransferConfig = PAPER,
    **options: Any,
) -> FitResult:
    """Fits one G_attack (``target`` ``None``: untargeted): :func:`fit_attack_generators` with one setting,
    the same keyword arguments."""
    return fit_attack_generators(g_orig, classifier, [target], config=config, **options)[target]
