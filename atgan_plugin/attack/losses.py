"""AT-GAN's transfer losses and the noise ρ (AT-GAN paper, the transfer stage; ρ's bounds: appendix D.3).

    L(z, y_s) = α · L_adv + β · L_dist
    L_adv     = max(max_{i≠t} log p_i − log p_t, −κ)          targeted to t
              = max(log p_{y_s} − max_{i≠y_s} log p_i, −κ)    untargeted
    L_dist    = ‖G_orig(z, y_s) + ρ − G_attack(z, y_s)‖₂

and, our choices (not in the paper), a source-class guard weighted by γ, a distance in the guard's
features weighted by λ_feature, and an optional smoothness term weighted by λ_tv:

    L_guard   = max(CE(f(G_attack(z, y_s)), y_s) − CE(f(G_orig(z, y_s)), y_s), 0)
    L_feature = ‖φ(G_attack(z, y_s)) − φ(G_orig(z, y_s))‖₂ / ‖φ(G_orig(z, y_s))‖₂   (smoothed at zero)
    L_tv      = TV(G_attack(z, y_s) − G_orig(z, y_s))

and, with guards, an untargeted L_adv that spreads half of its pull over every other class (our choice):

    L_adv     = ½ · max(log p_{y_s} − max_{i≠y_s} log p_i, −κ) + ½ · max(log p_{y_s} − log Σ_{i≠y_s} p_i, −κ)

where f is a guard classifier (AC-WGAN_GP's auxiliary classifier, a guard distilled from G_orig;
:mod:`atgan_plugin.attack.guards`), never the target and never the realism oracle, φ its penultimate
features (the input of its last linear layer), and TV is the anisotropic total variation (the ℓ1 norm
of the finite differences).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from atgan_plugin.imaging import total_variation

__all__ = [
    "FEATURE_SMOOTHING",
    "adversarial_loss",
    "distance_loss",
    "feature_distance",
    "sample_rho",
    "source_guard_loss",
    "total_variation",
]


def adversarial_loss(
    logits: torch.Tensor, labels: torch.Tensor, *, targeted: bool, kappa: float, spread: bool = False
) -> torch.Tensor:
    """C&W-style loss on log-probabilities, per sample.

    Shape: logits ``(N, K)``, labels ``(N,)`` (the target when ``targeted``, else the source class);
    returns ``(N,)``, bounded below by ``-kappa``: once an example is adversarial with a log-probability
    margin of κ it stops pulling, and ``L_dist`` pulls it back towards ``G_orig``.

    ``spread`` (untargeted only; the fit sets it when guards hold the source class): half of the pull
    goes against all other classes together, ``log p_y − log Σ_{i≠y} p_i``, not only the nearest one.
    The nearest class may be the one the guards hold (a T-shirt's is shirt); the spread half lets the
    fit find another class it can reach. That half is at most the nearest-class margin (a log-sum-exp
    is at least the max), so it reaches −κ once an example is adversarial by κ, and stops pulling too.
    Measured: ``docs/benchmarks.md``, "A fully connected target".
    """
    log_probs = F.log_softmax(logits, dim=1)
    label_log_prob = log_probs.gather(1, labels[:, None]).squeeze(1)
    other_log_probs = log_probs.masked_fill(F.one_hot(labels, logits.shape[1]).bool(), float("-inf"))
    best_other = other_log_probs.amax(dim=1)
    margin = best_other - label_log_prob if targeted else label_log_prob - best_other
    loss = margin.clamp(min=-kappa)
    if spread and not targeted:
        against_all = (label_log_prob - torch.logsumexp(other_log_probs, dim=1)).clamp(min=-kappa)
        loss = (loss + against_all) / 2
    return loss


def sample_rho(
    shape: torch.Size | tuple[int, ...],
    *,
    l0: int | float,
    linf: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Gaussian noise N(0, 1) with at most ``l0`` non-zero entries per sample, clipped to ``±linf``.

    ``l0``: a count of entries (an ``int``; the paper's 200 of 784), or a fraction of the image's values (a
    ``float`` in [0, 1]; our choice for the realistic preset, so that one default suits every image size).
    Shape: ``shape = (N, C, H, W)``; the positions are drawn uniformly per sample.
    Drawn on CPU with ``generator`` (reproducible on every device), then moved to ``device``.
    """
    n, size = shape[0], int(torch.Size(shape[1:]).numel())
    if isinstance(l0, float):
        if not 0 <= l0 <= 1:
            raise ValueError(f"rho_l0 as a fraction of the image's values must be in [0, 1], got {l0}")
        l0 = round(l0 * size)
    if not 0 <= l0 <= size:
        raise ValueError(f"rho_l0 must be in [0, {size}] for images of {size} values, got {l0}")
    if linf < 0:
        raise ValueError(f"rho_linf must be >= 0, got {linf}")
    noise = torch.randn(n, size, generator=generator).clamp_(-linf, linf)
    # Keep the l0 entries with the smallest random scores: a uniform random subset per row.
    keep = torch.rand(n, size, generator=generator).argsort(dim=1)[:, :l0]
    mask = torch.zeros(n, size).scatter_(1, keep, 1.0)
    return (noise * mask).view(shape).to(device)


def distance_loss(attack_images: torch.Tensor, original_images: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """``‖G_orig + ρ − G_attack‖₂`` per sample (not squared, as in the paper). Shape: ``(N,)``."""
    distance: torch.Tensor = (original_images + rho - attack_images).flatten(1).norm(dim=1)
    return distance


def source_guard_loss(
    guard_logits: torch.Tensor, reference_guard_logits: torch.Tensor, sources: torch.Tensor
) -> torch.Tensor:
    """How much source-class evidence G_attack's image lost, for a guard classifier, per sample.

    Shape: logits ``(N, K)`` of the guard on G_attack's and on G_orig's images, sources ``(N,)``;
    returns ``(N,)`` ≥ 0. Our choice: a hinge relative to G_orig, so the guard only stops the fit
    from erasing the class (it never asks for a more typical image than G_orig's own).
    """
    lost = F.cross_entropy(guard_logits, sources, reduction="none")
    kept = F.cross_entropy(reference_guard_logits, sources, reduction="none")
    return (lost - kept).clamp(min=0)


FEATURE_SMOOTHING = 1e-3  # ε of feature_distance, relative to G_orig's features: far below the term's values in a fit


def feature_distance(features: torch.Tensor, reference_features: torch.Tensor) -> torch.Tensor:
    """How far G_attack's image moved in a guard's feature space, relative to G_orig's features, per sample.

    Shape: features ``(N, D)`` (or ``(N, ...)``, flattened) of the guard on G_attack's and on G_orig's
    images; returns ``(N,)`` ≥ 0. Our choice: relative, so that one weight suits guards whose features
    have different scales. The guards are adversarially trained, so their features follow what people
    see (shape, texture); holding them keeps the change in what the target alone sees.

    The norm is smoothed at zero, ``sqrt(r² + ε²) − ε`` with ε = :data:`FEATURE_SMOOTHING`: a plain norm's
    gradient at a zero change is a unit vector along rounding noise (G_attack starts as G_orig, and a
    batched forward pass can differ from a separate one in the last bit); within ε of the plain norm.
    """
    scale = reference_features.flatten(1).norm(dim=1).clamp(min=1e-6)
    squared = ((features - reference_features).flatten(1) / scale[:, None]).square().sum(dim=1)
    relative: torch.Tensor = (squared + FEATURE_SMOOTHING**2).sqrt() - FEATURE_SMOOTHING
    return relative
