"""The StyleGAN2-ADA discriminator: residual blocks down to 4×4, minibatch standard deviation, and a
projection onto the mapped class label.

Our own implementation, written from the training specification (``stylegan2_training_spec.md``
§1: layers, sizes, state dict, forward pass; see ``vendored/stylegan2_ada/README.md``). Class names,
parameter and buffer names, shapes and registration order follow NVIDIA's PyTorch release, so a
state dict with their names loads with ``load_state_dict(strict=True)``; the constructor arguments
are theirs (``D.init_kwargs`` of a snapshot, spec §6) and are kept in :attr:`Discriminator.init_kwargs`.

Differences from the original that are our choice:
- architectures ``'resnet'`` (the default) and ``'orig'`` only; ``'skip'`` (an image pyramid through
  every block) is refused, as is Freeze-D (``block_kwargs.freeze_layers`` > 0): the specification
  does not describe them fully.
- low precision is torch autocast over the blocks the original runs in fp16 (``num_fp16_res``), as
  in our generator; the label mapping and the epilogue always run in float32.
- the epilogue's minibatch-std layer is registered as ``mbstd`` (it holds no tensors, so the state
  dict does not depend on the name).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from atgan_plugin.limits import Fields, Flag, Int, OneOf, Optional, Real, Taps
from atgan_plugin.vendored.stylegan2_ada.networks import (
    Conv2dLayer,
    FullyConnectedLayer,
    MappingNetwork,
    _precision_scope,
    resolve_precision,
)
from atgan_plugin.vendored.stylegan2_ada.ops import ACTIVATIONS, fir_filter

__all__ = [
    "DISCRIMINATOR_KWARGS_SCHEMA",
    "Discriminator",
    "DiscriminatorBlock",
    "DiscriminatorEpilogue",
    "MinibatchStdLayer",
]

_ARCHITECTURES = ("resnet", "orig")
_DEFAULT_FILTER = (1, 3, 3, 1)

# Bounds on the constructor arguments as a snapshot or checkpoint records them (atgan_plugin.limits),
# checked before anything is built. NVIDIA's presets (spec §3, §6) lie well inside.
_ACTIVATION = OneOf(tuple(ACTIVATIONS))
DISCRIMINATOR_KWARGS_SCHEMA = Fields(
    {
        "c_dim": Int(0, 1000),
        "img_resolution": Int(8, 2048),
        "img_channels": Int(1, 4),
        "architecture": OneOf(_ARCHITECTURES),
        "channel_base": Int(1, 1 << 20),
        "channel_max": Int(1, 4096),
        "num_fp16_res": Int(0, 16),
        "conv_clamp": Optional(Real(0, 1e6)),
        "cmap_dim": Optional(Int(1, 4096)),
        "block_kwargs": Optional(
            Fields(
                {
                    "activation": _ACTIVATION,
                    "resample_filter": Taps(16),
                    "fp16_channels_last": Flag(),
                    "freeze_layers": Int(0, 0),
                }
            )
        ),
        "mapping_kwargs": Optional(
            Fields(
                {
                    "num_layers": Int(1, 32),
                    "embed_features": Optional(Int(1, 4096)),
                    "layer_features": Optional(Int(1, 4096)),
                    "activation": _ACTIVATION,
                    "lr_multiplier": Real(1e-6, 1e3),
                }
            )
        ),
        "epilogue_kwargs": Optional(
            Fields(
                {
                    "mbstd_group_size": Optional(Int(1, 1 << 16)),
                    "mbstd_num_channels": Int(0, 64),
                    "activation": _ACTIVATION,
                }
            )
        ),
    },
    required=frozenset({"c_dim", "img_resolution", "img_channels"}),
)


class MinibatchStdLayer(nn.Module):
    """Appends ``num_channels`` feature maps holding the batch's standard deviation (spec §1.5).

    The batch is split into ``N/G`` strided groups of ``G = min(group_size, N)`` members (sample
    ``i`` is in group ``i mod N/G``); per group, the population standard deviation over its members
    (ε = 1e-8 inside the root) is averaged over each channel slice, height and width.

    Shape: ``(N, C, H, W)`` -> ``(N, C + num_channels, H, W)``; N must be a multiple of G.
    """

    def __init__(self, group_size: int | None, num_channels: int = 1):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = n if self.group_size is None else min(self.group_size, n)
        f = self.num_channels
        if n % g:
            raise ValueError(f"minibatch std: the batch ({n}) must be a multiple of the group size ({g})")
        if c % f:
            raise ValueError(f"minibatch std: {c} channels do not split into {f} slices")
        y = x.float().reshape(g, n // g, f, c // f, h, w)  # [G, n, F, C/F, H, W]; sample g·n + j in group j
        y = y - y.mean(dim=0)
        y = (y.square().mean(dim=0) + 1e-8).sqrt()  # [n, F, C/F, H, W]
        y = y.mean(dim=[2, 3, 4]).reshape(n // g, f, 1, 1)  # [n, F, 1, 1]
        y = y.repeat(g, 1, h, w)  # [N, F, H, W]: sample g·n + j gets group j's value
        return torch.cat([x, y.to(x.dtype)], dim=1)


class DiscriminatorBlock(nn.Module):
    """One resolution ``r`` -> ``r/2``: ``fromrgb`` (first block only), ``conv0``, ``conv1`` (down 2) and,
    for 'resnet', the bias-free linear ``skip`` (down 2); both paths scaled by √0.5 there (spec §1.4).

    Shape: x ``(N, tmp, r, r)`` (or the image ``(N, img_channels, r, r)`` in the first block) ->
    ``(N, out, r/2, r/2)``.
    """

    resample_filter: torch.Tensor  # buffer (ops.fir_filter): (4, 4)

    def __init__(
        self,
        in_channels: int,
        tmp_channels: int,
        out_channels: int,
        resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        activation: str = "lrelu",
        resample_filter: Sequence[float] = _DEFAULT_FILTER,
        conv_clamp: float | None = None,
        use_fp16: bool = False,
        fp16_channels_last: bool = False,
        freeze_layers: int = 0,
    ):
        super().__init__()
        if architecture not in _ARCHITECTURES:
            raise ValueError(f"architecture must be one of {_ARCHITECTURES}, got {architecture!r}")
        if freeze_layers:
            raise ValueError(f"Freeze-D (freeze_layers={freeze_layers}) is not supported")
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last  # a speed hint of the original; no effect here
        self.register_buffer("resample_filter", fir_filter(list(resample_filter)))
        layer: dict[str, Any] = dict(resample_filter=resample_filter, channels_last=self.channels_last)

        if in_channels == 0:
            self.fromrgb = Conv2dLayer(
                img_channels, tmp_channels, kernel_size=1, activation=activation, conv_clamp=conv_clamp, **layer
            )
        self.conv0 = Conv2dLayer(
            tmp_channels, tmp_channels, kernel_size=3, activation=activation, conv_clamp=conv_clamp, **layer
        )
        self.conv1 = Conv2dLayer(
            tmp_channels, out_channels, kernel_size=3, activation=activation, down=2, conv_clamp=conv_clamp, **layer
        )
        if architecture == "resnet":
            self.skip = Conv2dLayer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2, **layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = (self.img_channels if self.in_channels == 0 else self.in_channels, self.resolution, self.resolution)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"block b{self.resolution} expects input (N, {', '.join(map(str, expected))}), got {tuple(x.shape)}"
            )
        # Input: the image through fromrgb (first block), or the previous block's features.
        if self.in_channels == 0:
            x = self.fromrgb(x)

        # Main layers.
        if self.architecture == "resnet":
            y: torch.Tensor = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x)
            x = self.conv1(x, gain=math.sqrt(0.5))
            return y + x
        out: torch.Tensor = self.conv1(self.conv0(x))
        return out


class DiscriminatorEpilogue(nn.Module):
    """The 4×4 end: minibatch std, ``conv`` (3×3), ``fc`` (on the C·4·4 features, flattened C, H, W),
    ``out``; with a class map, the logit is ``Σ_k out_k·cmap_k / √cmap_dim`` (spec §1.4).

    Shape: x ``(N, C, 4, 4)``, cmap ``(N, cmap_dim)`` or None -> logits ``(N, 1)``.
    """

    def __init__(
        self,
        in_channels: int,
        cmap_dim: int,
        resolution: int,
        mbstd_group_size: int | None = 4,
        mbstd_num_channels: int = 1,
        activation: str = "lrelu",
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.cmap_dim = cmap_dim
        self.resolution = resolution
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(
            in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation=activation, conv_clamp=conv_clamp
        )
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x: torch.Tensor, cmap: torch.Tensor | None) -> torch.Tensor:
        expected = (self.in_channels, self.resolution, self.resolution)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"the epilogue expects (N, {', '.join(map(str, expected))}), got {tuple(x.shape)}")
        x = x.float()
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))  # C, H, W order
        x = self.out(x)  # (N, cmap_dim) or (N, 1)

        # Conditioning: projection onto the mapped label.
        if self.cmap_dim > 0:
            if cmap is None:
                raise ValueError("a conditional discriminator needs its class map")
            x = (x * cmap).sum(dim=1, keepdim=True) / math.sqrt(self.cmap_dim)
        return x


class Discriminator(nn.Module):
    """``D(img, c)``: the StyleGAN2-ADA discriminator; one real-vs-fake logit per image.

    Blocks ``b{R}, …, b8`` (``channels[r] = min(channel_base // r, channel_max)``; block ``r`` maps
    ``channels[r]`` to ``channels[r/2]``), the label ``mapping`` (8 layers at lr ×0.01 by default,
    output ``cmap_dim`` = ``channels[4]`` unless given; none when ``c_dim`` = 0), the epilogue ``b4``.
    Registered in that order, as in the original.

    Shape:
        - img: ``(N, img_channels, R, R)`` float, nominally in [-1, 1]; c: ``(N, c_dim)`` one-hot
          float (None or ``(N, 0)`` when unconditional). N a multiple of the minibatch-std group.
        - output: ``(N, 1)`` float32 logits (positive: real).
    """

    def __init__(
        self,
        c_dim: int,
        img_resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        conv_clamp: float | None = None,
        cmap_dim: int | None = None,
        block_kwargs: dict[str, Any] | None = None,
        mapping_kwargs: dict[str, Any] | None = None,
        epilogue_kwargs: dict[str, Any] | None = None,
    ):
        super().__init__()
        if img_resolution < 8 or img_resolution & (img_resolution - 1):
            raise ValueError(f"img_resolution must be a power of 2 and at least 8, got {img_resolution}")
        block_kwargs, mapping_kwargs = dict(block_kwargs or {}), dict(mapping_kwargs or {})
        epilogue_kwargs = dict(epilogue_kwargs or {})
        if "resample_filter" in block_kwargs:  # JSON- and pickle-friendly: a list of taps
            block_kwargs["resample_filter"] = [float(t) for t in block_kwargs["resample_filter"]]
        self.init_kwargs: dict[str, Any] = dict(
            c_dim=c_dim,
            img_resolution=img_resolution,
            img_channels=img_channels,
            architecture=architecture,
            channel_base=channel_base,
            channel_max=channel_max,
            num_fp16_res=num_fp16_res,
            conv_clamp=conv_clamp,
            cmap_dim=cmap_dim,
            block_kwargs=block_kwargs,
            mapping_kwargs=mapping_kwargs,
            epilogue_kwargs=epilogue_kwargs,
        )
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(math.log2(img_resolution))
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(self.img_resolution_log2, 2, -1)]
        channels = {r: min(channel_base // r, channel_max) for r in [*self.block_resolutions, 4]}
        if cmap_dim is None:
            cmap_dim = channels[4]
        if c_dim == 0:
            cmap_dim = 0
        self.cmap_dim = cmap_dim
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)

        # Registration order gives the original's state-dict order: blocks, mapping, epilogue.
        for r in self.block_resolutions:
            block = DiscriminatorBlock(
                channels[r] if r < img_resolution else 0,
                channels[r],
                channels[r // 2],
                resolution=r,
                img_channels=img_channels,
                architecture=architecture,
                conv_clamp=conv_clamp,
                use_fp16=r >= fp16_resolution,
                **block_kwargs,
            )
            setattr(self, f"b{r}", block)
        if c_dim > 0:
            self.mapping = MappingNetwork(
                z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None, **mapping_kwargs
            )
        epilogue = {"activation": block_kwargs.get("activation", "lrelu"), **epilogue_kwargs}
        self.b4 = DiscriminatorEpilogue(channels[4], cmap_dim=cmap_dim, resolution=4, conv_clamp=conv_clamp, **epilogue)

    def blocks(self) -> list[DiscriminatorBlock]:
        return [getattr(self, f"b{r}") for r in self.block_resolutions]

    def forward(self, img: torch.Tensor, c: torch.Tensor | None, precision: str = "auto") -> torch.Tensor:
        expected = (self.img_channels, self.img_resolution, self.img_resolution)
        if img.ndim != 4 or tuple(img.shape[1:]) != expected:
            raise ValueError(f"D expects images (N, {', '.join(map(str, expected))}), got {tuple(img.shape)}")
        lowp_dtype = resolve_precision(precision, img.device)
        x = img
        for block in self.blocks():
            with _precision_scope(img.device, lowp_dtype if block.use_fp16 else None):
                x = block(x if block.use_fp16 and lowp_dtype is not None else x.float())

        # Label mapping and epilogue, in float32.
        with _precision_scope(img.device, None):
            cmap = None
            if self.c_dim > 0:
                n = img.shape[0]
                if c is None or tuple(c.shape) != (n, self.c_dim):
                    raise ValueError(
                        f"c must have shape ({n}, {self.c_dim}), got {None if c is None else tuple(c.shape)}"
                    )
                cmap = self.mapping(img.new_zeros(n, 0), c)
            logits: torch.Tensor = self.b4(x, cmap)
        return logits
