"""Checks of the latents a caller hands :meth:`ATGANAttack.generate` (``z=``), like every other input.

Shape:
    - z: ``(N, z_dim)`` floating point, finite; ``N`` the number of source labels.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["check_latents"]


def check_latents(z: Any, n: int, z_dim: int) -> torch.Tensor | None:
    """``z`` itself when it is ``None`` or ``n`` finite floating-point latents ``(n, z_dim)``; otherwise an
    error naming ``z`` and what is wrong (``TypeError`` for its type or dtype, ``ValueError`` else)."""
    if z is None:
        return None
    if not isinstance(z, torch.Tensor):
        raise TypeError(f"z must be a torch.Tensor of latents (N, z_dim), got {type(z).__name__}")
    if not z.dtype.is_floating_point:
        raise TypeError(f"z must be floating-point latents, got dtype {z.dtype}")
    if tuple(z.shape) != (n, z_dim):
        raise ValueError(
            f"z must have shape ({n}, {z_dim}): one latent of the generator's z_dim per source label, "
            f"got {tuple(z.shape)}"
        )
    if z.numel() and not bool(torch.isfinite(z).all()):
        raise ValueError(f"z contains {int((~torch.isfinite(z)).sum())} NaN or infinite values")
    return z
