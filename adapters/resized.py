"""A generator whose images are brought to the classifier's input size: what the model sees.

A 32×32 generator meets a 28×28 classifier (Fashion-MNIST padded to 32 for StyleGAN2-ADA), a 256-px one a
224-px classifier. :class:`ResizedGenerator` wraps any adapter and maps each image, so the fit, the shrink,
the oracle, the Fréchet distance and the grids all see the model's input:

- ``"crop"`` (our default): the centred ``H×W`` window, or centred zero padding where the generator's image is
  smaller. It changes no pixel it keeps, and undoes exactly the padding a generator was trained with
  (Fashion-MNIST's 2 px of black to 32×32); ImageNet-style 256 → 224 is the usual centre crop.
- ``"resize"``: bilinear resampling with anti-aliasing (``torch.nn.functional.interpolate``), for a generator
  and a model that see the same field of view at different sizes.

The wrapped generator's own guards were trained at its own size: the wrapper hands them the image mapped
back (padding for a crop, resampling for a resize), so ``guard="auto"`` keeps them. The fit fine-tunes the
wrapped generator's ``attack_parameters()``; the mapping has no parameters.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from atgan_plugin.adapters.protocol import SharedGuards, as_generator_module, check_generator

__all__ = ["RESIZE_MODES", "ResizedGenerator", "map_images"]

RESIZE_MODES = ("crop", "resize")


def map_images(images: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """``images`` ``(N, C, H, W)`` brought to ``size`` ``(H', W')`` by ``mode`` (see the module docstring)."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")
    height, width = images.shape[-2:]
    if (height, width) == tuple(size):
        return images
    if mode == "resize":
        return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)
    # Crop or pad each axis about its centre (F.pad crops for negative amounts).
    pad_h, pad_w = size[0] - height, size[1] - width
    return F.pad(images, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))


class _AtNativeSize(nn.Module):
    """A guard of the wrapped generator, fed images mapped back to the size it was trained at."""

    def __init__(self, guard: nn.Module, size: tuple[int, int], mode: str):
        super().__init__()
        self.guard, self.size, self.mode = guard, size, mode
        if hasattr(guard, "checkpoint_meta"):  # what it is (a distilled guard, say) stays readable
            self.checkpoint_meta = guard.checkpoint_meta

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.guard(map_images(images, self.size, self.mode))
        return logits


class ResizedGenerator(nn.Module):
    """``generator``'s images brought to ``size`` ``(H, W)`` by ``mode`` (``"crop"`` or ``"resize"``).

    Shape: ``forward(z, y)``: ``(N, z_dim)``, ``(N,)`` -> ``(N, C, H, W)`` in [0, 1].
    """

    def __init__(self, generator: nn.Module, size: tuple[int, int], mode: str = "crop"):
        super().__init__()
        check_generator(generator)
        if mode not in RESIZE_MODES:
            raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")
        size = (int(size[0]), int(size[1]))
        if min(size) < 1:
            raise ValueError(f"the size to map the generator's images to must be positive, got {size}")
        inner = as_generator_module(generator)
        self.generator = generator
        self.size, self.mode = size, mode
        self.z_dim, self.num_classes = int(inner.z_dim), int(inner.num_classes)
        channels, height, width = (int(v) for v in inner.image_shape)
        self.image_shape = (channels, *size)
        own = tuple(getattr(generator, "default_guards", ()) or ())
        self.default_guards = SharedGuards(_AtNativeSize(g, (height, width), mode) for g in own)

    def extra_repr(self) -> str:
        return f"size={self.size}, mode={self.mode!r}"

    def sample_z(
        self, n: int, *, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> torch.Tensor:
        return as_generator_module(self.generator).sample_z(n, generator=generator, device=device)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return map_images(self.generator(z, y), self.size, self.mode)

    def attack_parameters(self) -> Iterator[nn.Parameter]:
        return as_generator_module(self.generator).attack_parameters()
