"""Every target in one fit: K copies of G_attack's fine-tuned parameters, stepped together.

Ten targets fitted one after another pay ten times for everything. Here the K fits share one run:
each fit keeps its own copy of the parameters G_attack fine-tunes (``attack_parameters()``, stacked
along a new first axis; the rest of the generator and its frozen batch-norm statistics are shared),
and each step makes

- one G_orig reference pass over the K groups of ``(z, y_s)`` together,
- one forward pass of the K parameter sets (``torch.func.vmap`` over ``functional_call``; a loop over
  the groups for generators that ``vmap`` cannot batch, e.g. a data-dependent check in ``forward``),
- one call of the user's model and one of each guard on all ``K · b`` images,
- one backward pass, and one fused Adam step over the stacked parameters.

Each group's loss is exactly the one :func:`~atgan_plugin.attack.transfer.fit_attack_generator` computes
(:func:`~atgan_plugin.attack.transfer.transfer_loss`), and the K losses only add, so each copy gets its own
fit's gradient; Adam works element by element, so stepping the stack is stepping K optimisers. Group k
draws its ``(z, y_s, ρ)`` from its own generator seeded like a separate fit: with ``batch_per_target``
equal to ``config.batch_size`` the K results equal K separate fits up to floating-point rounding.

our choice: on a CPU the cost of a step is the model's and the guards' passes per (target, example),
which no sharing removes; ``batch_per_target`` (``ATGANAttack(joint_batch_size=...)``) draws fewer
examples per target and step than a separate fit. Speed and per-target success and realism against
separate fits: ``docs/benchmarks.md``, "Ten targets in one fit against ten separate fits".
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
from torch import nn
from torch.func import functional_call, vmap
from tqdm.auto import tqdm

from atgan_plugin.adapters.protocol import as_generator_module, check_generator
from atgan_plugin.attack.guards import as_guards
from atgan_plugin.attack.losses import sample_rho
from atgan_plugin.attack.precision import autocast, check_precision
from atgan_plugin.attack.transfer import (
    Classifier,
    FitDivergedError,
    FitResult,
    GradientSync,
    TransferConfig,
    check_logits,
    fit_record,
    guard_view,
    sample_sources,
    to_bounds,
    transfer_loss,
)

__all__ = ["StackedGenerator", "check_joint_batch_size", "fit_attack_generators", "fit_groups"]

Target = int | None
_DEFAULT_CONFIG = TransferConfig()


def check_joint_batch_size(joint_batch_size: int | None) -> None:
    """A ``ValueError`` unless ``joint_batch_size`` (examples per target and step) is an integer >= 1 or None."""
    if joint_batch_size is not None and (
        isinstance(joint_batch_size, bool) or not isinstance(joint_batch_size, int) or joint_batch_size < 1
    ):
        raise ValueError(f"joint_batch_size must be an integer >= 1 or None, got {joint_batch_size!r}")


def fit_groups(targets: Sequence[Target], reduced_batch: bool) -> list[list[Target]]:
    """The runs that fit ``targets``: all together, except that with a ``reduced_batch`` per target the
    untargeted setting (``None``) is fitted alone, at the full batch, first.

    our choice, from a measurement: a targeted fit at 16 examples per step reaches its separate fit's
    success, an untargeted one does not (shipped target C-nor: 0.925 against 0.999 alone;
    ``docs/benchmarks.md``, "Ten targets in one fit"). Fitting it alone costs about one separate fit.
    """
    if not reduced_batch or None not in targets or len(targets) == 1:
        return [list(targets)]
    return [[None], [t for t in targets if t is not None]]


class StackedGenerator:
    """K parameter sets of one generator: ``forward(z, y)`` maps ``(K, b, z_dim)``, ``(K, b)`` to
    ``(K, b, C, H, W)``, group k through parameter set k.

    ``stacked`` holds the fine-tuned parameters ``(K, *shape)`` by name (leaves that require grad, or
    after :meth:`adopt_layout` permuted views of such leaves); every other parameter and buffer of
    ``module`` is shared by the K sets.
    """

    def __init__(self, module: nn.Module, fine_tuned: Sequence[nn.Parameter], copies: int):
        chosen = {id(p) for p in fine_tuned}
        named = dict(module.named_parameters())
        self.module = module
        self.copies = copies
        self.stacked = {
            name: p.detach()[None].repeat(copies, *([1] * p.ndim)).requires_grad_(True)
            for name, p in named.items()
            if id(p) in chosen
        }
        self.shared = {name: p.detach() for name, p in named.items() if id(p) not in chosen}
        self.shared.update(dict(module.named_buffers()))
        self.vectorised: bool | None = None  # decided on the first call

    def _one(self, params: dict[str, torch.Tensor], z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        images: torch.Tensor = functional_call(self.module, {**params, **self.shared}, (z, y))
        return images

    def _loop(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.stack(
            [self._one({n: p[k] for n, p in self.stacked.items()}, z[k], y[k]) for k in range(self.copies)]
        )

    def _vmap(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return vmap(self._one)(self.stacked, z, y)

    def _can_vectorise(self, z: torch.Tensor, y: torch.Tensor) -> bool:
        """Whether ``vmap`` runs this generator and agrees with the loop, tried on two examples per group."""
        with torch.no_grad():
            try:
                batched = self._vmap(z[:, :2], y[:, :2])
            except (RuntimeError, NotImplementedError, ValueError, TypeError):  # e.g. .item() inside forward
                return False
            return torch.allclose(batched, self._loop(z[:, :2], y[:, :2]), rtol=1e-4, atol=1e-5)

    def __call__(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.vectorised is None:
            self.vectorised = self._can_vectorise(z, y)
        return self._vmap(z, y) if self.vectorised else self._loop(z, y)

    def adopt_layout(self, grads: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Stores each stacked parameter contiguous in its gradient's memory order; returns the tensors to
        optimise and ``grads`` matched to them. Call once, on the first step's gradients, before an
        optimiser holds the parameters.

        ``vmap`` gives a linear layer's weight gradient transposed, ``(K, out, in)`` with the strides of
        ``(K, in, out)``. Such a parameter becomes a contiguous leaf ``(K, in, out)``, and ``stacked`` keeps
        a permuted view of it: later gradients reach the leaf contiguous with no copy, and fused Adam on a
        CPU steps it in place (on a permuted tensor it copies all four operands, 6x slower for the shipped
        generator's largest layer)."""
        leaves, leaf_grads = [], []
        for (name, param), grad in zip(list(self.stacked.items()), grads, strict=True):
            order = _memory_order(grad)
            if grad.stride() == param.stride() or not grad.permute(order).is_contiguous():
                leaves.append(param)
                leaf_grads.append(grad)  # the caller lays every gradient out like its leaf (_in_layout)
                continue
            leaf = param.detach().permute(order).contiguous().requires_grad_(True)
            self.stacked[name] = leaf.permute(_inverse(order))  # shape (K, *shape), the gradient's strides
            leaves.append(leaf)
            leaf_grads.append(grad.permute(order))
        return leaves, leaf_grads

    def generator(self, k: int) -> nn.Module:
        """A frozen copy of ``module`` holding parameter set ``k``."""
        copy_ = copy.deepcopy(self.module)
        named = dict(copy_.named_parameters())
        with torch.no_grad():
            for name, stacked in self.stacked.items():
                named[name].copy_(stacked[k])
        return copy_.requires_grad_(False).eval()


def _memory_order(tensor: torch.Tensor) -> list[int]:
    """The dimensions of ``tensor`` from the largest stride to the smallest: ``tensor.permute(order)`` is
    contiguous when ``tensor`` is dense (a permuted contiguous layout)."""
    strides = tensor.stride()
    return sorted(range(tensor.ndim), key=lambda d: -strides[d])


def _inverse(order: list[int]) -> list[int]:
    """The permutation that undoes ``permute(order)``."""
    inverse = [0] * len(order)
    for position, dim in enumerate(order):
        inverse[dim] = position
    return inverse


def _in_layout(grad: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """``grad`` laid out like ``param``: fused Adam misreads a gradient whose strides differ (pytorch#106951)."""
    if grad.stride() == param.stride():
        return grad
    return torch.empty_strided(param.shape, param.stride(), dtype=grad.dtype, device=grad.device).copy_(grad)


def _adam(params: list[torch.Tensor], lr: float, device: torch.device) -> torch.optim.Optimizer:
    """Adam, fused into one kernel where torch has one (CPU and CUDA): the same update as the default."""
    if device.type in ("cpu", "cuda"):
        return torch.optim.Adam(params, lr=lr, fused=True)
    return torch.optim.Adam(params, lr=lr)


@torch.enable_grad()  # callers may sit inside torch.no_grad()
def fit_attack_generators(
    g_orig: nn.Module,
    classifier: Classifier,
    targets: Sequence[Target],
    *,
    config: TransferConfig = _DEFAULT_CONFIG,
    batch_per_target: int | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
    device: torch.device | None = None,
    progress: bool = True,
    guard: nn.Module | Sequence[nn.Module] | None = None,
    precision: str = "fp32",
    sync: GradientSync | None = None,
    callback: Callable[[int, dict[Target, float]], None] | None = None,
) -> dict[Target, FitResult]:
    """Fits one G_attack per entry of ``targets`` (``None``: untargeted) in one run; see the module docstring.

    Arguments as :func:`~atgan_plugin.attack.transfer.fit_attack_generator`, plus ``batch_per_target``:
    examples ``(z, y_s)`` per target and step (default ``config.batch_size``, which gives the separate
    fits' results). ``callback(step, success)`` gets each target's batch success every 10th step.
    Returns each target's :class:`~atgan_plugin.attack.transfer.FitResult`, whose ``config`` records the batch
    it was fitted with.
    """
    check_generator(g_orig)
    check_precision(precision)
    targets = list(targets)
    num_classes = int(as_generator_module(g_orig).num_classes)
    if not targets:
        raise ValueError("no targets to fit: give at least one class index (or None for untargeted)")
    if len(set(targets)) != len(targets):
        raise ValueError(f"targets {targets} name a setting twice")
    bad = [t for t in targets if t is not None and not (isinstance(t, int) and 0 <= t < num_classes)]
    if bad:
        raise ValueError(f"target classes {bad} are outside [0, {num_classes})")
    b = config.batch_size if batch_per_target is None else batch_per_target
    if isinstance(b, bool) or not isinstance(b, int) or b < 1:
        raise ValueError(f"batch_per_target must be an integer >= 1, got {batch_per_target!r}")
    fit_config = replace(config, batch_size=b)
    if device is None:
        device = next(g_orig.parameters()).device
    k = len(targets)

    # Work on copies: the caller's generator keeps its device, mode and flags; batch norm frozen.
    g_orig = as_generator_module(copy.deepcopy(g_orig).to(device).requires_grad_(False).eval())
    stack = StackedGenerator(g_orig, list(g_orig.attack_parameters()), k)
    guards = (
        [copy.deepcopy(g).to(device).requires_grad_(False).eval() for g in as_guards(guard)] if config.gamma > 0 else []
    )
    params = list(stack.stacked.values())
    optimizer: torch.optim.Optimizer | None = None  # made after the first backward pass (adopt_layout)
    rngs = [torch.Generator().manual_seed(config.seed) for _ in targets]  # each group draws as its own fit would
    labels = torch.tensor([num_classes if t is None else t for t in targets], device=device).repeat_interleave(b)
    histories: dict[Target, list[dict[str, float]]] = {t: [] for t in targets}

    bar = tqdm(range(config.steps), desc=f"AT-GAN fit ({k} targets together)", disable=not progress)
    for step in bar:
        draws = [
            (g_orig.sample_z(b, generator=rng, device=device), sample_sources(b, num_classes, t, rng).to(device))
            for t, rng in zip(targets, rngs, strict=True)
        ]
        z = torch.stack([d[0] for d in draws])  # (K, b, z_dim)
        y_s = torch.stack([d[1] for d in draws])  # (K, b)
        with torch.no_grad(), autocast(device, precision):
            reference = g_orig(z.flatten(0, 1), y_s.flatten()).float()  # (K·b, C, H, W): one pass for all targets
        with autocast(device, precision):
            images = stack(z, y_s).flatten(0, 1).float()
            logits = classifier(to_bounds(images, bounds)).float()  # one call of the model for all targets
            check_logits(logits, num_classes)
            views = [guard_view(g, images, reference, logits.shape) for g in guards]
        sources = y_s.flatten()
        group_labels = torch.where(labels == num_classes, sources, labels)  # untargeted groups: their sources
        losses, records = [], {}
        for i, (target, rng) in enumerate(zip(targets, rngs, strict=True)):
            rows = slice(i * b, (i + 1) * b)
            rho = sample_rho(images[rows].shape, l0=config.rho_l0, linf=config.rho_linf, generator=rng, device=device)
            loss, terms = transfer_loss(
                images[rows],
                reference[rows],
                logits[rows],
                sources[rows],
                group_labels[rows],
                rho,
                targeted=target is not None,
                config=config,
                guards=[view.rows(rows) for view in views],
            )
            losses.append(loss)
            if step % 10 == 9 or step == config.steps - 1:
                records[target] = (terms, rows)
        total = torch.stack(losses).sum()  # the groups' losses only add: each copy gets its own gradient
        grads: Sequence[torch.Tensor] = torch.autograd.grad(total, params)
        group_losses = torch.stack(losses).detach()
        if sync is not None:
            group_losses = sync(group_losses, grads)
        finite = torch.isfinite(group_losses).tolist()
        if not all(finite):
            diverged = [t for t, ok in zip(targets, finite, strict=True) if not ok]
            raise FitDivergedError(f"AT-GAN fit diverged at step {step} for targets {diverged}; lower lr")
        if optimizer is None:
            params, grads = stack.adopt_layout(grads)
            optimizer = _adam(params, config.lr, device)
        for p, g in zip(params, grads, strict=True):
            p.grad = _in_layout(g, p)
        optimizer.step()

        if records:
            success: dict[Target, float] = {}
            for target, (terms, rows) in records.items():
                record = fit_record(
                    step + 1,
                    group_losses[targets.index(target)],
                    terms,
                    logits[rows],
                    group_labels[rows],
                    target is not None,
                    images[rows],
                    reference[rows],
                )
                histories[target].append(record)
                success[target] = record["success"]
            bar.set_postfix(success=f"{min(success.values()):.2f}..{max(success.values()):.2f}")
            if callback is not None:
                callback(step + 1, success)

    for p in params:
        p.grad = None
    return {t: FitResult(stack.generator(i), t, fit_config, histories[t]) for i, t in enumerate(targets)}
