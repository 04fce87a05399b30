"""StyleGAN2-ADA's losses and the small per-step rules around them (the EMA, lazy regularisation, w_avg).

Each function is one equation of the training specification (``stylegan2_training_spec.md``; Karras
et al. 2020, arXiv:2006.06676, and StyleGAN2, arXiv:1912.04958), with A(·) the augmentation pipe
applied inside every D call, to reals and fakes alike:

    Gmain:  L_G  = mean softplus(−D(A(G(z, c)), c))                                   (spec §2)
    Dmain:  L_D  = mean softplus(D(A(G(z, c)), c)) + mean softplus(−D(A(x), c_x))
    Dreg:   L_R1 = mean_i (γ/2)·‖∇_x D(A(x_i), c_i)‖²,  the gradient w.r.t. the un-augmented reals
    G_ema:  p_ema ← p + β·(p_ema − p),  β = 0.5^(batch / ema_nimg),  buffers copied      (spec §4.4)

The trainer multiplies L_R1 by its interval (lazy regularisation). Path-length regularisation and
style mixing are not implemented: the 'cifar' preset, the original's 32-pixel conditional
configuration, uses neither (spec §3).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from atgan_plugin.vendored.stylegan2_ada import Generator
from atgan_plugin.vendored.stylegan2_ada.discriminator import Discriminator

__all__ = [
    "Augment",
    "discriminator_loss",
    "ema_beta",
    "generate",
    "generator_loss",
    "lazy_regularisation",
    "r1_penalty",
    "update_ema",
]

Augment = Callable[[torch.Tensor], torch.Tensor]  # A(·): images (N, C, H, W) -> (N, C, H, W)


def generate(G: Generator, z: torch.Tensor, c: torch.Tensor, *, update_w_avg: bool = True) -> torch.Tensor:
    """``G(z, c)`` as in training: random noise inputs, the non-fused modulated convolution (faster to train) and, with ``update_w_avg``, the running mean of w
    moved towards this batch's (``w_avg ← mean(w) + β·(w_avg − mean(w))``, spec pitfall 8; our network
    never does it in ``forward``). Shape: ``(N, z_dim)``, ``(N, c_dim)`` -> ``(N, C, R, R)``."""
    ws = G.mapping(z, c)  # (N, num_ws, w_dim)
    mapping = G.mapping
    if update_w_avg and hasattr(mapping, "w_avg") and mapping.w_avg_beta is not None:
        with torch.no_grad():
            mapping.w_avg.copy_(ws[:, 0].detach().mean(dim=0).lerp(mapping.w_avg, mapping.w_avg_beta))
    images: torch.Tensor = G.synthesis(ws, noise_mode="random", precision="fp32", fused_modconv=False)
    return images


def generator_loss(D: Discriminator, fake: torch.Tensor, c: torch.Tensor, augment: Augment) -> torch.Tensor:
    """Gmain: the non-saturating logistic loss ``mean softplus(−D(A(fake), c))``."""
    return F.softplus(-D(augment(fake), c, precision="fp32")).mean()


def discriminator_loss(
    D: Discriminator,
    fake: torch.Tensor,
    c_fake: torch.Tensor,
    real: torch.Tensor,
    c_real: torch.Tensor,
    augment: Augment,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Dmain: ``mean softplus(D(A(fake))) + mean softplus(−D(A(real)))``; returns the loss and both logits ``(N, 1)``."""
    logits_fake = D(augment(fake.detach()), c_fake, precision="fp32")
    logits_real = D(augment(real), c_real, precision="fp32")
    loss = F.softplus(logits_fake).mean() + F.softplus(-logits_real).mean()
    return loss, logits_fake.detach(), logits_real.detach()


def r1_penalty(
    D: Discriminator, real: torch.Tensor, c_real: torch.Tensor, augment: Augment, gamma: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Dreg: ``mean_i (γ/2)·Σ_{C,H,W} (∂ Σ_j D(A(x_j)) / ∂x_i)²``, differentiable in D's parameters.

    The gradient is taken with respect to the reals *before* augmentation, through the pipe (spec
    pitfall 4). Returns the loss, the per-image squared gradient norms ``(N,)`` and the logits ``(N, 1)``.
    """
    x = real.detach().requires_grad_(True)
    logits = D(augment(x), c_real, precision="fp32")
    (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    norms = grad.square().sum(dim=[1, 2, 3])  # (N,)
    return (norms * (gamma / 2)).mean(), norms.detach(), logits.detach()


def ema_beta(batch_size: int, cur_nimg: int, ema_kimg: float, rampup: float | None) -> float:
    """The EMA decay of one step: ``0.5^(batch / ema_nimg)``, ``ema_nimg = min(ema_kimg·1000, cur_nimg·rampup)``.

    ``cur_nimg`` counts the images shown *before* this step, so the first step copies (β = 0).
    """
    ema_nimg = ema_kimg * 1000
    if rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * rampup)
    return float(0.5 ** (batch_size / max(ema_nimg, 1e-8)))


@torch.no_grad()
def update_ema(G_ema: Generator, G: Generator, beta: float) -> None:
    """Parameters: ``p_ema ← p + β·(p_ema − p)``; every buffer (w_avg, noise_const, filters) copied verbatim."""
    for p_ema, p in zip(G_ema.parameters(), G.parameters(), strict=True):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers(), strict=True):
        b_ema.copy_(b)


def lazy_regularisation(lr: float, betas: tuple[float, float], interval: int) -> tuple[float, tuple[float, float]]:
    """Adam's settings for a network regularised every ``interval`` steps: with ``r = I/(I+1)``, ``lr·r`` and
    ``β^r`` (spec §4; applied even when that network's regulariser is off)."""
    ratio = interval / (interval + 1)
    return lr * ratio, (betas[0] ** ratio, betas[1] ** ratio)
