"""Latent inversion: find ``z`` with ``G(z, y) ≈ x`` (used by the attack's ``latent="invert"`` mode).

Our choice (the paper draws z at random and never inverts): Adam on
``‖G(z, y) − x‖² / (C·H·W) + λ·‖z‖² / z_dim`` from a prior sample, a fixed number of steps,
all images of a batch at once. The prior term keeps z where the generator was trained.
"""

from __future__ import annotations

import torch
from torch import nn

from atgan_plugin.adapters.protocol import as_generator_module

__all__ = ["invert_latents"]


def invert_latents(
    generator: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    steps: int = 200,
    lr: float = 0.05,
    prior_weight: float = 1e-3,
    rng: torch.Generator | None = None,
) -> torch.Tensor:
    """Shape: images ``(N, C, H, W)`` in [0, 1], labels ``(N,)`` -> latents ``(N, z_dim)``.

    ``generator`` must be in eval mode; its parameters receive no gradient.
    """
    z = as_generator_module(generator).sample_z(len(images), generator=rng, device=images.device).requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=lr)
    for _ in range(steps):
        reconstruction = generator(z, labels)
        loss = (reconstruction - images).pow(2).flatten(1).mean(1) + prior_weight * z.pow(2).mean(1)
        (grad,) = torch.autograd.grad(loss.sum(), z)
        z.grad = grad
        optimizer.step()
    return z.detach()
