"""The per-example shrink: each adversarial image moved as close to G_orig's as it can go and still fool.

our choice (not in the paper): the fit changes G_attack for all ``(z, y_s)`` at once, so it pushes
every image about as far as the hardest ones need. For each example we search the segment
``G_orig(z, y_s) + t · (G_attack(z, y_s) − G_orig(z, y_s))``, ``t ∈ [0, 1]``, for the smallest ``t`` at
which the model is still fooled, as Foolbox's minimization attacks shrink their perturbations. Success is
unchanged (an example fooled at ``t = 1`` is fooled at the ``t`` returned), while the change from G_orig,
and with it the stripes and blotches the fit paints, shrinks by the factor ``t``.

The search reads the model's fooling margin (logits), not only whether it is fooled: it measures the
margin at both ends of the segment, then each of ``steps`` passes tries the point where the straight line
through the bracket's ends reaches a tenth of the fooled end's margin (:data:`AIM`: a little past the
boundary, so that the pass most often lands fooled and closer), and keeps the bracket ``[not fooled,
fooled]`` around the boundary. The margin changes smoothly along the segment, so two
such passes land about as close to the boundary as eight halvings of the bracket. It costs ``steps + 2``
forward passes of the model, no gradient. Measured: ``docs/benchmarks.md``, "Generation at a fraction of the shrink's passes".
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from atgan_plugin.attack.precision import autocast
from atgan_plugin.imaging import to_bounds

__all__ = [
    "AIM",
    "SHRINK_MARGIN",
    "fooling_margin",
    "shrink_towards_reference",
    "shrink_while_fooled",
]

SHRINK_MARGIN = 0.01  # logits: a shrunk example stays adversarial when the model is re-run in another batch
AIM = 0.1  # each pass aims for this fraction of the fooled end's margin: past the boundary, towards it


def fooling_margin(logits: torch.Tensor, labels: torch.Tensor, *, targeted: bool) -> torch.Tensor:
    """How far each example is past the decision boundary, in logits ``(N,)``: positive when fooled.

    Untargeted: the best other class minus the source ``labels``; targeted: the target ``labels`` minus the
    best other class.
    """
    label_logit = logits.gather(1, labels[:, None]).squeeze(1)
    best_other = logits.scatter(1, labels[:, None], float("-inf")).amax(dim=1)
    return (label_logit - best_other) if targeted else (best_other - label_logit)


@torch.no_grad()
def shrink_towards_reference(
    reference: torch.Tensor,
    adversarial: torch.Tensor,
    margin: Callable[[torch.Tensor], torch.Tensor],
    *,
    steps: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The smallest fooling ``t`` on ``reference + t · (adversarial − reference)``, searched as the module says.

    Shape: ``reference``, ``adversarial`` ``(N, C, H, W)`` in [0, 1]; ``margin`` maps such images to ``(N,)``,
    positive where they count as fooled. Returns the images and ``t`` ``(N,)``: the smallest ``t`` seen to fool
    for examples fooled at ``t = 1``; exactly 1 (the adversarial image as it is) for the rest and with
    ``steps=0``; 0 (G_orig's image) where G_orig's own image already fools.
    """
    n = len(adversarial)
    hi = torch.ones(n, device=adversarial.device)  # smallest t seen to fool
    change = adversarial - reference
    if steps > 0 and n > 0:
        f_hi = margin(adversarial)
        fooled_at_one = f_hi > 0
        lo = torch.zeros_like(hi)  # largest t seen not to fool
        f_lo = margin(reference)
        hi = torch.where(f_lo > 0, torch.zeros_like(hi), hi)  # G_orig's image fools already
        last = torch.zeros_like(hi, dtype=torch.bool)  # whether the previous pass landed fooled
        for step in range(steps):
            width = hi - lo
            fraction = (AIM * f_hi - f_lo) / (f_hi - f_lo).clamp(min=1e-12)
            t = lo + width * fraction.clamp(0.01, 0.99)  # strictly inside the bracket
            f = margin(reference + t[:, None, None, None] * change)
            fooled = (f > 0) & (width > 0)
            kept = (width == 0) | fooled
            # Illinois: an end kept twice in a row weighs half, so that a bent margin cannot pin it.
            again = (fooled == last) & (step > 0)
            f_lo = torch.where(fooled & again, f_lo / 2, f_lo)
            f_hi = torch.where(~fooled & again, f_hi / 2, f_hi)
            hi, f_hi = torch.where(fooled, t, hi), torch.where(fooled, f, f_hi)
            lo, f_lo = torch.where(kept, lo, t), torch.where(kept, f_lo, f)
            last = fooled
        hi = torch.where(fooled_at_one, hi, torch.ones_like(hi))
    unchanged = (hi == 1)[:, None, None, None]  # exactly G_attack's image, not a rounding of it
    images = torch.where(unchanged, adversarial, reference + hi[:, None, None, None] * change)
    return images, hi


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

    def margin(images: torch.Tensor) -> torch.Tensor:
        with autocast(images.device, precision):
            logits = classify(to_bounds(images, bounds)).float()
        return fooling_margin(logits, labels, targeted=target is not None) - SHRINK_MARGIN

    images, _ = shrink_towards_reference(reference, adversarial, margin, steps=steps)
    return images
