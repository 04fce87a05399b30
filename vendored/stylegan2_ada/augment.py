"""A small differentiable augmentation pipeline and the adaptive (ADA) heuristic that sets its strength.

Our own code, from the ADA paper (Karras et al. 2020, arXiv:2006.06676) and the training
specification (``stylegan2_training_spec.md`` §2, §4.6, §5). Of NVIDIA's 'bgc' pipeline we keep two
of the 'blit' operations, x-flip and integer translation (up to ``xint_max`` = 0.125 of the image
size), each applied per image with probability ``p``: they cannot hide what a 32-pixel image of a
garment shows, and they need no resampling. x-flip suits only data without a left-right orientation:
at ``p`` near 0.5 a flipped and an unflipped image are equally likely after augmentation, so the
generator is free to flip (the ADA paper's "leaking"); Fashion-MNIST's shoes all point left, so our
trainer leaves it off by default. The pipe runs inside every discriminator call, on reals
and fakes alike, and is differentiable (R1 is taken through it with respect to the un-augmented reals).

Differences from the original that are our choice:
- only xflip and xint; no rotate90, geometric or colour operations (a small data set of centred,
  upright garments at 32 px is what this pipe is for; the original's full pipe is not reproduced).
- the translation fills the uncovered border by reflection (the specification leaves it open).
- at ``p = 0`` the pipe returns its input unchanged (exactly), and draws no random numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["AdaptiveAugment", "AugmentPipe"]


class AugmentPipe(nn.Module):
    """x-flip and integer translation, each with probability ``p`` per image.

    ``p`` is a buffer (a 0-d float tensor), so it is saved with the module; p > 1 behaves as 1
    (the ADA heuristic does not cap it, as in the original).

    Shape: ``(N, C, H, W)`` -> ``(N, C, H, W)``.
    """

    p: torch.Tensor  # buffer: ()

    def __init__(self, p: float = 0.0, xflip: bool = True, xint: bool = True, xint_max: float = 0.125):
        super().__init__()
        if not (math.isfinite(p) and p >= 0):
            raise ValueError(f"p must be a finite number >= 0, got {p}")
        if not 0 <= xint_max < 0.5:
            raise ValueError(f"xint_max must be in [0, 0.5), got {xint_max}")
        self.xflip = xflip
        self.xint = xint
        self.xint_max = xint_max
        self.register_buffer("p", torch.tensor(float(p)))

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augmented images; the random draws come from ``generator`` (CPU), so a seeded run repeats."""
        if images.ndim != 4:
            raise ValueError(f"AugmentPipe expects NCHW images, got shape {tuple(images.shape)}")
        p = float(self.p)
        if p <= 0:
            return images
        n, _, h, w = images.shape
        x = images

        # x-flip: mirror the width axis of the chosen images.
        if self.xflip:
            chosen = torch.rand(n, generator=generator) < p
            x = torch.where(chosen.to(x.device)[:, None, None, None], x.flip(3), x)

        # Integer translation by up to xint_max of the size, per axis; the border is filled by reflection.
        if self.xint and self.xint_max > 0:
            chosen = torch.rand(n, generator=generator) < p
            shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * self.xint_max
            shift = (shift * torch.tensor([w, h])).round().long() * chosen[:, None]  # (N, 2): dx, dy in pixels
            x = translate(x, shift.to(x.device))
        return x


def translate(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Each image moved by its integer ``shift`` ``(N, 2)`` = (dx, dy) pixels (right, down), border reflected.

    Shape: images ``(N, C, H, W)`` with ``|dx| < W``, ``|dy| < H`` -> ``(N, C, H, W)``; differentiable in images.
    """
    n, c, h, w = images.shape
    pad_x, pad_y = int(shift[:, 0].abs().max()), int(shift[:, 1].abs().max())
    if pad_x == 0 and pad_y == 0:
        return images
    padded = torch.nn.functional.pad(images, [pad_x, pad_x, pad_y, pad_y], mode="reflect")
    # Output pixel (i, j) of image k reads padded pixel (i + pad_y - dy_k, j + pad_x - dx_k).
    rows = torch.arange(h, device=images.device)[None, :] + pad_y - shift[:, 1:2]  # (N, H)
    cols = torch.arange(w, device=images.device)[None, :] + pad_x - shift[:, 0:1]  # (N, W)
    batch = torch.arange(n, device=images.device)[:, None, None]
    moved = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
    return moved.permute(0, 3, 1, 2).contiguous()


@dataclass
class AdaptiveAugment:
    """The ADA heuristic (spec §4.6): every ``interval`` iterations, ``r_t`` = the mean sign of D's logits
    on reals since the last update, and ``p ← max(0, p + sign(r_t − target)·batch·interval / (speed_kimg·1000))``.

    Every D evaluation of reals reports its logits' signs (:meth:`observe`); :meth:`step` is called once
    per training iteration with the batch size. Plain numbers only, so it is saved with the training state.
    """

    target: float = 0.6
    interval: int = 4
    speed_kimg: float = 500.0  # images for p to move by 1
    p: float = 0.0
    sign_sum: float = 0.0
    sign_count: int = 0
    iterations: int = 0
    last_rt: float = float("nan")  # r_t of the last adjustment (nan before the first)

    def observe(self, real_logits: torch.Tensor) -> None:
        """Adds the signs of D's logits on a batch of reals."""
        self.sign_sum += float(real_logits.detach().sign().sum())
        self.sign_count += real_logits.numel()

    def step(self, batch_size: int) -> None:
        """Counts one iteration; every ``interval`` of them, moves ``p`` towards the target ``r_t``."""
        self.iterations += 1
        if self.iterations % self.interval or self.sign_count == 0:
            return
        self.last_rt = self.sign_sum / self.sign_count
        direction = math.copysign(1.0, self.last_rt - self.target) if self.last_rt != self.target else 0.0
        self.p = max(0.0, self.p + direction * batch_size * self.interval / (self.speed_kimg * 1000))
        self.sign_sum, self.sign_count = 0.0, 0
