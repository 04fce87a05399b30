"""The per-example shrink: each adversarial image moved as close to G_orig's as it can go and still fool.

our choice (not in the paper): the fit changes G_attack for all ``(z, y_s)`` at once, so it pushes
every image about as far as the hardest ones need. For each example we search the segment
``G_orig(z, y_s) + t · (G_attack(z, y_s) − G_orig(z, y_s))``, ``t ∈ (0, 1]``, by bisection for the
smallest ``t`` at which the model is still fooled, as Foolbox's minimization attacks shrink their
perturbations. Success is unchanged (an example fooled at ``t = 1`` is fooled at the ``t`` returned),
while the change from G_orig, and with it the stripes and blotches the fit paints, shrinks by the
factor ``t``. It costs ``steps`` forward passes of the model, no gradient. Measurements:
``docs/benchmarks.md``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["fooled_with_margin", "shrink_towards_reference"]


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
