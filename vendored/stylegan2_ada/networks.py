"""The StyleGAN2-ADA generator: mapping network, synthesis network and their layers.

Our own implementation of the architecture of Karras et al. 2020 (StyleGAN2-ADA, arXiv:2006.06676,
on StyleGAN2's generator, arXiv:1912.04958); ``vendored/stylegan2_ada/README.md`` says what it reads.
Class names, parameter and buffer names, their shapes and registration order equal those of
NVIDIA's PyTorch release, so a state dict read from one of their snapshots loads with
``load_state_dict(strict=True)``; ``SNAPSHOT_ATTRIBUTES`` names, per class, the plain attributes a
snapshot records, which the loader compares with ours.

Differences from the original that are our choice:
- ``noise_mode`` defaults to ``"const"`` (deterministic) instead of ``"random"``.
- ``w_avg`` is never updated by ``forward``, not even in training mode: AT-GAN fine-tunes a
  copy of a trained generator and must not drift its truncation centre.
- Low precision is torch autocast (fp16 on CUDA by default, or bf16) over the blocks the
  original runs in fp16 (``num_fp16_res``); everything else, and the RGB sum, stays float32.
- The modulated convolution is grouped ("fused") unless the caller asks for the equal non-fused
  form (``fused_modconv=False``, what our trainer uses: faster on a CPU); the original picks one
  by mode and dtype, a speed matter only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from atgan_plugin.limits import Fields, Flag, Int, OneOf, Optional, Real, Taps
from atgan_plugin.vendored.stylegan2_ada.ops import (
    ACTIVATIONS,
    bias_act,
    downsample_conv2d,
    fir_filter,
    modulated_conv2d,
    normalize_2nd_moment,
    upsample2d,
)

__all__ = [
    "GENERATOR_KWARGS_SCHEMA",
    "NOISE_MODES",
    "PRECISIONS",
    "SNAPSHOT_ATTRIBUTES",
    "Conv2dLayer",
    "FullyConnectedLayer",
    "Generator",
    "MappingNetwork",
    "SynthesisBlock",
    "SynthesisLayer",
    "SynthesisNetwork",
    "ToRGBLayer",
]

NOISE_MODES = ("const", "random", "none")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
_ARCHITECTURES = ("orig", "skip", "resnet")
_DEFAULT_FILTER = (1, 3, 3, 1)

# Plain (non-tensor) attributes each class records in a snapshot's module state; the loader compares them with ours.
SNAPSHOT_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "Generator": ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "num_ws"),
    "MappingNetwork": ("z_dim", "c_dim", "w_dim", "num_ws", "num_layers", "w_avg_beta"),
    "FullyConnectedLayer": ("activation", "weight_gain", "bias_gain"),
    "SynthesisNetwork": (
        "w_dim",
        "img_resolution",
        "img_resolution_log2",
        "img_channels",
        "block_resolutions",
        "num_ws",
    ),
    "SynthesisBlock": (
        "in_channels",
        "w_dim",
        "resolution",
        "img_channels",
        "is_last",
        "architecture",
        "use_fp16",
        "channels_last",
        "num_conv",
        "num_torgb",
    ),
    "SynthesisLayer": ("resolution", "up", "use_noise", "activation", "conv_clamp", "padding", "act_gain"),
    "ToRGBLayer": ("conv_clamp", "weight_gain"),
    "Conv2dLayer": ("activation", "up", "down", "conv_clamp", "padding", "weight_gain", "act_gain"),
}


# Bounds on the Generator's constructor arguments as a snapshot or checkpoint records them, checked
# before anything is built (atgan_plugin.limits). NVIDIA's configurations (train.py's presets: 32 to 1024 px,
# z = w = 512, channel_max 512, 2 or 8 mapping layers) lie well inside.
_ACTIVATION = OneOf(tuple(ACTIVATIONS))
GENERATOR_KWARGS_SCHEMA = Fields(
    {
        "z_dim": Int(1, 4096),
        "c_dim": Int(0, 1000),
        "w_dim": Int(1, 4096),
        "img_resolution": Int(4, 2048),
        "img_channels": Int(1, 4),
        "mapping_kwargs": Optional(
            Fields(
                {
                    "num_layers": Int(1, 32),
                    "embed_features": Optional(Int(0, 4096)),
                    "layer_features": Optional(Int(1, 4096)),
                    "activation": _ACTIVATION,
                    "lr_multiplier": Real(1e-6, 1e3),
                    "w_avg_beta": Optional(Real(0, 1)),
                }
            )
        ),
        "synthesis_kwargs": Optional(
            Fields(
                {
                    "channel_base": Int(1, 1 << 20),
                    "channel_max": Int(1, 4096),
                    "num_fp16_res": Int(0, 16),
                    "architecture": OneOf(_ARCHITECTURES),
                    "resample_filter": Taps(16),
                    "conv_clamp": Optional(Real(0, 1e6)),
                    "fp16_channels_last": Flag(),
                    "use_noise": Flag(),
                    "activation": _ACTIVATION,
                    "kernel_size": Int(1, 7),
                }
            )
        ),
    },
    required=frozenset({"z_dim", "c_dim", "w_dim", "img_resolution", "img_channels"}),
)


def _check_activation(activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; known: {sorted(ACTIVATIONS)}")


def _precision_scope(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager[Any]:
    """Autocast to ``dtype`` on ``device``, or autocast explicitly off (float32) when ``dtype`` is None.

    Turning it off matters: a caller may run the whole generator under autocast, and the blocks
    the original keeps in float32 must stay float32.
    """
    if dtype is None:
        return torch.autocast(device_type=device.type, enabled=False)
    return torch.autocast(device_type=device.type, dtype=dtype)


def resolve_precision(precision: str, device: torch.device, force_fp32: bool = False) -> torch.dtype | None:
    """The low-precision dtype for the fp16 blocks, or None for float32 everywhere."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if force_fp32 or precision == "fp32":
        return None
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else None
    return torch.float16 if precision == "fp16" else torch.bfloat16


# ------------------------------------------------------------------------------------------------
# Layers.


class FullyConnectedLayer(nn.Module):
    """Linear layer with an equalised learning rate: ``act(x · (W·g_w)ᵀ + b·g_b)``.

    The stored weight is ``N(0, 1) / lr_multiplier`` at init; the gains ``g_w = lr/√in`` and
    ``g_b = lr`` are applied in ``forward``. Weight ``(out, in)``, bias ``(out,)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
    ):
        super().__init__()
        _check_activation(activation)
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.weight.shape[1]:
            raise ValueError(f"expected input (N, {self.weight.shape[1]}), got {tuple(x.shape)}")
        weight = self.weight * self.weight_gain
        bias = None if self.bias is None else self.bias * self.bias_gain
        if self.activation == "linear":
            return F.linear(x, weight, bias)
        return bias_act(F.linear(x, weight), bias, self.activation)


class Conv2dLayer(nn.Module):
    """Plain convolution with an equalised learning rate: ``clamp(act(conv(x, W/√fan_in) + b)·gain)``.

    The generator's resnet ``skip`` uses ``up=2``: a true convolution after zero insertion
    followed by the FIR filter, as in :func:`~.ops.modulated_conv2d`. The discriminator's layers
    use ``down=2`` (:func:`~.ops.downsample_conv2d`): FIR low-pass, then a stride-2 convolution.
    """

    resample_filter: torch.Tensor  # buffer (ops.fir_filter)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        up: int = 1,
        down: int = 1,
        resample_filter: Sequence[float] = _DEFAULT_FILTER,
        conv_clamp: float | None = None,
        channels_last: bool = False,
    ):
        super().__init__()
        _check_activation(activation)
        if up not in (1, 2) or down not in (1, 2) or up * down == 4:
            raise ValueError(f"Conv2dLayer supports up = 2 or down = 2 (or neither), got up={up}, down={down}")
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.act_gain = float(ACTIVATIONS[activation][1])
        self.channels_last = channels_last  # a speed hint of the original; no effect here
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.register_buffer("resample_filter", fir_filter(list(resample_filter)))
        if bias:
            self.bias: nn.Parameter | None = nn.Parameter(torch.zeros(out_channels))
        else:
            self.bias = None

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        weight = self.weight * self.weight_gain
        if self.down == 2:
            y = downsample_conv2d(x, weight.to(x.dtype), self.resample_filter)
        elif self.up == 1:
            y = F.conv2d(x, weight.to(x.dtype), padding=self.padding)
        else:
            unit_styles = torch.ones(x.shape[0], x.shape[1], device=x.device)
            y = modulated_conv2d(x, weight, unit_styles, demodulate=False, up=2, resample_filter=self.resample_filter)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(y, self.bias, self.activation, gain=self.act_gain * gain, clamp=clamp)


class SynthesisLayer(nn.Module):
    """Modulated 3×3 convolution with demodulation, noise input, bias, lrelu·√2 and clamp.

    Shape: x ``(N, in, r/up, r/up)``, w ``(N, w_dim)`` -> ``(N, out, r, r)``.
    """

    resample_filter: torch.Tensor  # buffer (ops.fir_filter)
    noise_const: torch.Tensor  # buffer, with use_noise: (resolution, resolution)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        kernel_size: int = 3,
        up: int = 1,
        use_noise: bool = True,
        activation: str = "lrelu",
        resample_filter: Sequence[float] = _DEFAULT_FILTER,
        conv_clamp: float | None = None,
        channels_last: bool = False,
    ):
        super().__init__()
        _check_activation(activation)
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.padding = kernel_size // 2
        self.act_gain = float(ACTIVATIONS[activation][1])
        self.channels_last = channels_last  # a speed hint of the original; no effect here
        # Registration order gives the original's state-dict order (README.md, "Compatible with").
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.register_buffer("resample_filter", fir_filter(list(resample_filter)))
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "const", gain: float = 1.0, fused_modconv: bool = True
    ) -> torch.Tensor:
        in_resolution = self.resolution // self.up
        expected = (x.shape[0], self.weight.shape[1], in_resolution, in_resolution)
        if tuple(x.shape) != expected:
            raise ValueError(f"SynthesisLayer at {self.resolution}px expects input {expected}, got {tuple(x.shape)}")
        styles = self.affine(w)  # (N, in)

        noise = None
        if self.use_noise and noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        elif noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")

        y = modulated_conv2d(
            x,
            self.weight,
            styles,
            demodulate=True,
            up=self.up,
            resample_filter=self.resample_filter,
            noise=noise,
            fused=fused_modconv,
        )
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(y, self.bias, self.activation, gain=self.act_gain * gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1×1 convolution to image channels, without demodulation; styles scaled by 1/√in.

    Shape: x ``(N, in, r, r)``, w ``(N, w_dim)`` -> ``(N, img_channels, r, r)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        kernel_size: int = 1,
        conv_clamp: float | None = None,
        channels_last: bool = False,
    ):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        y = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused_modconv)
        return bias_act(y, self.bias, "linear", clamp=self.conv_clamp)


# ------------------------------------------------------------------------------------------------
# Blocks and networks.


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network: (features, image) at r/2 -> at r.

    Holds ``const`` (first block only), ``conv0`` (up=2, not in the first block), ``conv1``,
    ``torgb`` (last block, or every block for 'skip'), ``skip`` ('resnet' only).
    """

    resample_filter: torch.Tensor  # buffer (ops.fir_filter)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        is_last: bool,
        architecture: str = "skip",
        resample_filter: Sequence[float] = _DEFAULT_FILTER,
        conv_clamp: float | None = None,
        use_fp16: bool = False,
        fp16_channels_last: bool = False,
        **layer_kwargs: Any,
    ):
        super().__init__()
        if architecture not in _ARCHITECTURES:
            raise ValueError(f"architecture must be one of {_ARCHITECTURES}, got {architecture!r}")
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", fir_filter(list(resample_filter)))
        self.num_conv = 0
        self.num_torgb = 0
        layer = dict(
            w_dim=w_dim,
            resolution=resolution,
            resample_filter=resample_filter,
            conv_clamp=conv_clamp,
            channels_last=self.channels_last,
            **layer_kwargs,
        )

        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, up=2, **layer)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, **layer)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(
                out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp, channels_last=self.channels_last
            )
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(
                in_channels,
                out_channels,
                kernel_size=1,
                bias=False,
                up=2,
                resample_filter=resample_filter,
                channels_last=self.channels_last,
            )

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: torch.Tensor,
        noise_mode: str = "const",
        lowp_dtype: torch.dtype | None = None,
        fused_modconv: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``ws``: ``(N, num_conv + num_torgb, w_dim)``. Returns features and the float32 image (or None)."""
        expected_ws = (ws.shape[0], self.num_conv + self.num_torgb, self.w_dim)
        if ws.ndim != 3 or tuple(ws.shape) != expected_ws:
            raise ValueError(f"block b{self.resolution} expects ws of shape {expected_ws}, got {tuple(ws.shape)}")
        n = ws.shape[0]
        w_iter = iter(ws.unbind(dim=1))
        dtype = lowp_dtype if self.use_fp16 else None
        layer: dict[str, Any] = dict(noise_mode=noise_mode, fused_modconv=fused_modconv)

        with _precision_scope(ws.device, dtype):
            # Input: the learned constant, or the previous block's features.
            if self.in_channels == 0:
                x = self.const[None].expand(n, -1, -1, -1)
            else:
                expected_x = (n, self.in_channels, self.resolution // 2, self.resolution // 2)
                if x is None or tuple(x.shape) != expected_x:
                    raise ValueError(
                        f"block b{self.resolution} expects features {expected_x}, got "
                        f"{None if x is None else tuple(x.shape)}"
                    )
                if dtype is None:
                    x = x.float()

            # Main layers.
            if self.in_channels == 0:
                x = self.conv1(x, next(w_iter), **layer)
            elif self.architecture == "resnet":
                y = self.skip(x, gain=math.sqrt(0.5))
                x = self.conv0(x, next(w_iter), **layer)
                x = self.conv1(x, next(w_iter), gain=math.sqrt(0.5), **layer)
                x = y.to(x.dtype) + x
            else:
                x = self.conv0(x, next(w_iter), **layer)
                x = self.conv1(x, next(w_iter), **layer)

            rgb = self.torgb(x, next(w_iter), fused_modconv=fused_modconv) if self.num_torgb else None

        # The image path is float32 throughout.
        with _precision_scope(ws.device, None):
            if img is not None:
                expected_img = (n, self.img_channels, self.resolution // 2, self.resolution // 2)
                if tuple(img.shape) != expected_img:
                    raise ValueError(
                        f"block b{self.resolution} expects an image {expected_img}, got {tuple(img.shape)}"
                    )
                img = upsample2d(img.float(), self.resample_filter)
            if rgb is not None:
                img = rgb.float() if img is None else img + rgb.float()
        return x, img  # img stays None until the first block with a ToRGB ('orig', 'resnet')


class SynthesisNetwork(nn.Module):
    """ws ``(N, num_ws, w_dim)`` -> image ``(N, img_channels, R, R)``, nominally in [-1, 1], unclamped.

    Blocks ``b4, b8, …, bR``; channels per resolution ``min(channel_base // r, channel_max)``;
    the last ``num_fp16_res`` resolutions (never below 8) run in low precision when enabled.
    """

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        **block_kwargs: Any,
    ):
        super().__init__()
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ValueError(f"img_resolution must be a power of 2 and at least 4, got {img_resolution}")
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(math.log2(img_resolution))
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(2, self.img_resolution_log2 + 1)]
        channels = {r: min(channel_base // r, channel_max) for r in self.block_resolutions}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)

        self.num_ws = 0
        for r in self.block_resolutions:
            is_last = r == img_resolution
            block = SynthesisBlock(
                channels[r // 2] if r > 4 else 0,
                channels[r],
                w_dim=w_dim,
                resolution=r,
                img_channels=img_channels,
                is_last=is_last,
                use_fp16=r >= fp16_resolution,
                **block_kwargs,
            )
            self.num_ws += block.num_conv
            if is_last:
                self.num_ws += block.num_torgb
            setattr(self, f"b{r}", block)

    def blocks(self) -> list[SynthesisBlock]:
        return [getattr(self, f"b{r}") for r in self.block_resolutions]

    def forward(
        self,
        ws: torch.Tensor,
        noise_mode: str = "const",
        force_fp32: bool = False,
        precision: str = "auto",
        fused_modconv: bool = True,
    ) -> torch.Tensor:
        """``fused_modconv=False`` runs the equal non-fused form of the modulated convolutions
        (:func:`~.ops.modulated_conv2d`): a speed choice, faster for training on a CPU."""
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must have shape (N, {self.num_ws}, {self.w_dim}), got {tuple(ws.shape)}")
        lowp_dtype = resolve_precision(precision, ws.device, force_fp32)
        ws = ws.float()
        # A block's ToRGB shares its w with the next block's conv0, as in StyleGAN2's synthesis network.
        x: torch.Tensor | None = None
        img: torch.Tensor | None = None
        index = 0
        for block in self.blocks():
            block_ws = ws.narrow(1, index, block.num_conv + block.num_torgb)
            x, img = block(x, img, block_ws, noise_mode=noise_mode, lowp_dtype=lowp_dtype, fused_modconv=fused_modconv)
            index += block.num_conv
        assert img is not None  # at least one block
        return img


class MappingNetwork(nn.Module):
    """(z, one-hot c) -> ws ``(N, num_ws, w_dim)``: normalise, embed, concatenate, MLP, broadcast, truncate.

    ``w_avg`` (the running mean of w recorded during training) is the truncation centre; our
    choice: ``forward`` never updates it.
    """

    w_avg: torch.Tensor  # buffer, only with num_ws and w_avg_beta: (w_dim,)

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int | None,
        num_layers: int = 8,
        embed_features: int | None = None,
        layer_features: int | None = None,
        activation: str = "lrelu",
        lr_multiplier: float = 0.01,
        w_avg_beta: float | None = 0.995,
    ):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        widths = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for i in range(num_layers):
            fc = FullyConnectedLayer(widths[i], widths[i + 1], activation=activation, lr_multiplier=lr_multiplier)
            setattr(self, f"fc{i}", fc)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
    ) -> torch.Tensor:
        n = z.shape[0]
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape (N, {self.z_dim}), got {tuple(z.shape)}")
        with _precision_scope(z.device, None):
            # Embed and normalise.
            parts = []
            if self.z_dim > 0:
                parts.append(normalize_2nd_moment(z.float()))
            if self.c_dim > 0:
                if c is None or c.ndim != 2 or tuple(c.shape) != (n, self.c_dim):
                    raise ValueError(
                        f"c must have shape ({n}, {self.c_dim}), got {None if c is None else tuple(c.shape)}"
                    )
                parts.append(normalize_2nd_moment(self.embed(c.float())))
            x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

            # Main layers.
            for i in range(self.num_layers):
                x = getattr(self, f"fc{i}")(x)

            # Broadcast and truncate.
            if self.num_ws is None:
                return x
            ws = x[:, None, :].repeat(1, self.num_ws, 1)
            if truncation_psi != 1:
                if not hasattr(self, "w_avg"):
                    raise ValueError("truncation needs w_avg, which this mapping network does not have")
                cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
                head = self.w_avg.lerp(ws[:, :cutoff], truncation_psi)
                ws = torch.cat([head, ws[:, cutoff:]], dim=1)
        return ws


class Generator(nn.Module):
    """``G(z, c)``: the StyleGAN2-ADA generator, ``mapping`` then ``synthesis``.

    The constructor arguments are those a snapshot records in ``_init_kwargs``; they are kept in
    :attr:`init_kwargs` (JSON-serialisable) so our checkpoints rebuild the network.

    Shape:
        - z: ``(N, z_dim)``; c: ``(N, c_dim)`` one-hot float (``(N, 0)`` or None when unconditional).
        - output: ``(N, img_channels, img_resolution, img_resolution)`` float32, nominally in [-1, 1].
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        mapping_kwargs: dict[str, Any] | None = None,
        synthesis_kwargs: dict[str, Any] | None = None,
    ):
        super().__init__()
        mapping_kwargs = dict(mapping_kwargs or {})
        synthesis_kwargs = dict(synthesis_kwargs or {})
        if "resample_filter" in synthesis_kwargs:  # JSON- and pickle-friendly: a list of taps
            synthesis_kwargs["resample_filter"] = [float(t) for t in synthesis_kwargs["resample_filter"]]
        self.init_kwargs: dict[str, Any] = dict(
            z_dim=z_dim,
            c_dim=c_dim,
            w_dim=w_dim,
            img_resolution=img_resolution,
            img_channels=img_channels,
            mapping_kwargs=mapping_kwargs,
            synthesis_kwargs=synthesis_kwargs,
        )
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(
            w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels, **synthesis_kwargs
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **mapping_kwargs)

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
        force_fp32: bool = False,
        precision: str = "auto",
    ) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        images: torch.Tensor = self.synthesis(ws, noise_mode=noise_mode, force_fp32=force_fp32, precision=precision)
        return images
