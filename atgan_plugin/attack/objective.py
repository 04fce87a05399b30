"""One fit step's objective: G_orig's reference batch, the guards' views, the loss and its record.

    loss = α · L_adv + β · L_dist + γ · Σ_guards L_guard + λ_feature · Σ_guards L_feature + λ_tv · L_tv

(the terms: :mod:`atgan_plugin.attack.losses`). Everything computed on G_orig's images, which never need a
gradient, is a :class:`Reference`: rendered per step, or once for a pool of ``(z, y_s)``
(:mod:`atgan_plugin.attack.reference_pool`). The model and the guards are only read: gradients flow to
G_attack's parameters alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import nn

from atgan_plugin.attack.config import TransferConfig
from atgan_plugin.attack.losses import (
    adversarial_loss,
    distance_loss,
    feature_distance,
    source_guard_loss,
    total_variation,
)
from atgan_plugin.attack.precision import autocast

__all__ = [
    "GuardView",
    "Reference",
    "check_logits",
    "history_record",
    "guard_views",
    "logits_and_features",
    "render_reference",
    "transfer_loss",
]


def check_logits(logits: torch.Tensor, num_classes: int) -> None:
    """A ``ValueError`` naming both sizes when the model's ``logits`` are not ``(N, num_classes)``."""
    if logits.ndim != 2 or logits.shape[1] != num_classes:
        raise ValueError(
            f"the generator has {num_classes} classes but the model returns logits of shape "
            f"{tuple(logits.shape)}; they must agree"
        )


def logits_and_features(guard: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A guard's logits ``(N, K)`` and penultimate features ``(N, D)``: the input of its last ``nn.Linear``
    (in registration order), caught by a forward hook; a guard without one gives its logits as features."""
    linears = [m for m in guard.modules() if isinstance(m, nn.Linear)]
    caught: list[torch.Tensor] = []
    hook = linears[-1].register_forward_hook(lambda _m, inputs, _out: caught.append(inputs[0])) if linears else None
    try:
        logits = guard(images).float()
    finally:
        if hook is not None:
            hook.remove()
    return logits, (caught[-1].float().flatten(1) if caught else logits)


class Reference(NamedTuple):
    """What a step needs of G_orig's images ``(N, C, H, W)``: the images and, per guard, its logits ``(N, K)``
    and features ``(N, D)`` on them. No gradient anywhere."""

    images: torch.Tensor
    guard_logits: tuple[torch.Tensor, ...]
    guard_features: tuple[torch.Tensor, ...]

    def take(self, index: torch.Tensor | slice) -> Reference:
        """The rows ``index`` (a slice, or indices ``(n,)``)."""
        return Reference(
            self.images[index],
            tuple(t[index] for t in self.guard_logits),
            tuple(t[index] for t in self.guard_features),
        )

    @staticmethod
    def concat(parts: Sequence[Reference]) -> Reference:
        """The parts' rows one after another."""
        return Reference(
            torch.cat([p.images for p in parts]),
            tuple(torch.cat(ts) for ts in zip(*(p.guard_logits for p in parts), strict=True)),
            tuple(torch.cat(ts) for ts in zip(*(p.guard_features for p in parts), strict=True)),
        )


@torch.no_grad()
def render_reference(
    g_orig: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    guards: Sequence[nn.Module],
    z: torch.Tensor,
    sources: torch.Tensor,
    *,
    num_classes: int,
    precision: str,
) -> Reference:
    """G_orig's images for ``(z, sources)`` and each guard's view of them; a ``ValueError`` when a guard
    does not classify the generator's ``num_classes`` classes."""
    with autocast(z.device, precision):
        images = g_orig(z, sources).float()
        views = [logits_and_features(g, images) for g in guards]
    for logits, _ in views:
        if logits.ndim != 2 or logits.shape[1] != num_classes:
            raise ValueError(
                f"a guard returns logits of shape {tuple(logits.shape)} but the generator has {num_classes} "
                "classes; a guard must classify the generator's classes"
            )
    return Reference(images, tuple(v[0] for v in views), tuple(v[1] for v in views))


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


def guard_views(guards: Sequence[nn.Module], images: torch.Tensor, reference: Reference) -> list[GuardView]:
    """Each guard's view of G_attack's ``images`` (with gradient) beside its view of ``reference``."""
    views = []
    for guard, ref_logits, ref_features in zip(guards, reference.guard_logits, reference.guard_features, strict=True):
        logits, features = logits_and_features(guard, images)
        views.append(GuardView(logits, ref_logits, features, ref_features))
    return views


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

    ``images`` are G_attack's, ``reference`` G_orig's, ``labels`` the targets (or the sources when
    untargeted); ``guards`` holds each guard's view of both (:func:`guard_views`).
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
def history_record(
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
