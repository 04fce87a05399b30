"""The per-example shrink: each adversarial image moved as close to G_orig's as it can go and still fool.

our choice (not in the paper): the fit changes G_attack for all ``(z, y_s)`` at once, so it pushes
every image about as far as the hardest ones need. For each example we search the segment
``G_orig(z, y_s) + t · (G_attack(z, y_s) − G_orig(z, y_s))``, ``t ∈ (0, 1]``, by bisection for the
smallest ``t`` at which the model is still fooled, as Foolbox's minimization attacks shrink their
perturbations. Success is unchanged (an example fooled at ``t = 1`` is fooled at the ``t`` returned),
while the change from G_orig, and with it the stripes and blotches the fit paints, shrinks by the
factor ``t``. It costs ``steps`` forward passes of the model, no gradient. The study:
``docs/benchmarks.md``, "Realism by default".
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from atgan_plugin.attack.precision import autocast
from atgan_plugin.attack.transfer import to_bounds

__all__ = [
    "SHRINK_MARGIN",
    "check_search_steps",
    "fooled_with_margin",
    "shrink_towards_reference",
    "shrink_while_fooled",
]

SHRINK_MARGIN = 0.01  # logits: a shrunk example stays adversarial when the model is re-run in another batch


def check_search_steps(search_steps: int) -> None:
    """A ``ValueError`` unless ``search_steps`` (bisection steps) is an integer in [0, 30]."""
    if isinstance(search_steps, bool) or not isinstance(search_steps, int) or not 0 <= search_steps <= 30:
        raise ValueError(f"search_steps must be an integer in [0, 30], got {search_steps!r}")


def fooled_with_margin(logits: torch.Tensor, labels: torch.Tensor, *, targeted: bool, margin: float) -> torch.Tensor:
    """Whether each example is adversarial with a logit margin above ``margin``, ``(N,)`` bool.

    Untargeted: the best other class beats the source ``labels`` by more than ``margin``; targeted:
    the target ``labels`` beats every other class by more than ``margin``. A small positive margin
    keeps a result adversarial when the model is re-run in another batch (floating-point noise).
    """
    label_logit = logits.gather(1, labels[:, None]).squeeze(1)
    best_other = logits.scatter(1, labels[:, None], float("-inf")).amax(dim=1)
    return (label_logit - best_other > margin) if targeted else (best_other - label_logit > margin)


@torch.no_grad()
def shrink_towards_reference(
    reference: torch.Tensor,
    adversarial: torch.Tensor,
    is_adversarial: Callable[[torch.Tensor], torch.Tensor],
    *,
    steps: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bisection on ``reference + t · (adversarial − reference)`` for the smallest fooling ``t``.

    Shape: ``reference``, ``adversarial`` ``(N, C, H, W)`` in [0, 1]; ``is_adversarial`` maps such
    images to ``(N,)`` bool. Returns the images and ``t`` ``(N,)``: within ``2**-steps`` above the
    boundary for examples fooled at ``t = 1``; exactly 1 (the adversarial image as it is) for the rest.
    """
    n = len(adversarial)
    t_fooled = torch.ones(n, device=adversarial.device)  # smallest t known to fool
    t_clean = torch.zeros(n, device=adversarial.device)  # largest t known not to
    change = adversarial - reference
    if steps > 0 and n > 0:
        fooled_at_one = is_adversarial(adversarial)
        for _ in range(steps):
            middle = (t_clean + t_fooled) / 2
            fooled = is_adversarial(reference + middle[:, None, None, None] * change)
            t_fooled = torch.where(fooled, middle, t_fooled)
            t_clean = torch.where(fooled, t_clean, middle)
        t_fooled = torch.where(fooled_at_one, t_fooled, torch.ones_like(t_fooled))
    unchanged = (t_fooled == 1)[:, None, None, None]  # exactly G_attack's image, not a rounding of it
    images = torch.where(unchanged, adversarial, reference + t_fooled[:, None, None, None] * change)
    return images, t_fooled


def shrink_while_fooled(
    reference: torch.Tensor,
    adversarial: torch.Tensor,
    classify: Callable[[torch.Tensor], torch.Tensor],
    sources: torch.Tensor,
    target: int | None,
    *,
    bounds: tuple[float, float],
    precision: str,
    steps: int,
) -> torch.Tensor:
    """:func:`shrink_towards_reference` judged by the model: ``classify`` runs on the images mapped to
    ``bounds``, under ``precision``, and must stay fooled by more than :data:`SHRINK_MARGIN`: away from
    the ``sources`` ``(N,)`` (untargeted, ``target`` None) or into ``target``. Images ``(N, C, H, W)``
    in [0, 1] in and out."""
    labels = sources if target is None else torch.full_like(sources, target)

    def is_adversarial(images: torch.Tensor) -> torch.Tensor:
        with autocast(images.device, precision):
            logits = classify(to_bounds(images, bounds)).float()
        return fooled_with_margin(logits, labels, targeted=target is not None, margin=SHRINK_MARGIN)

    images, _ = shrink_towards_reference(reference, adversarial, is_adversarial, steps=steps)
    return images
