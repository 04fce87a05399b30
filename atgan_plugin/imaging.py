"""Image helpers shared by the attack and the measures below both: bounds and total variation."""

from __future__ import annotations

import torch

__all__ = ["to_bounds", "total_variation"]


def to_bounds(images: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    """Maps generator output in [0, 1] to the classifier's input range ``bounds``."""
    low, high = bounds
    return images if (low, high) == (0.0, 1.0) else low + (high - low) * images


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation per sample: the ℓ1 norm of horizontal and vertical differences.

    Shape: ``(N, C, H, W)`` -> ``(N,)``. Applied to ``G_attack − G_orig`` it is zero for an unchanged
    image, small for a smooth change and large for stripes, speckle or sign noise.
    """
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().flatten(1).sum(1)
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().flatten(1).sum(1)
    return dx + dy
