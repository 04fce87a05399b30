"""Numerical primitives of the StyleGAN2-ADA generator, in plain torch ops.

Written from the published mathematics (Karras et al. 2020, StyleGAN2 and StyleGAN2-ADA; see
``vendored/stylegan2_ada/README.md``), not from NVIDIA's code. Every function works on CPU and
CUDA, in float32 and under autocast; none needs a compiled extension. Shapes: images are NCHW
throughout.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = [
    "ACTIVATIONS",
    "bias_act",
    "downsample_conv2d",
    "fir_filter",
    "modulated_conv2d",
    "normalize_2nd_moment",
    "upfirdn2d",
    "upsample2d",
]

# name -> (function, default gain). The gains keep the activations' second moment near 1.
ACTIVATIONS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], float]] = {
    "linear": (lambda t: t, 1.0),
    "relu": (F.relu, math.sqrt(2)),
    "lrelu": (lambda t: F.leaky_relu(t, 0.2), math.sqrt(2)),
    "tanh": (torch.tanh, 1.0),
    "sigmoid": (torch.sigmoid, 1.0),
    "elu": (F.elu, 1.0),
    "selu": (F.selu, 1.0),
    "softplus": (F.softplus, 1.0),
    "swish": (lambda t: t * torch.sigmoid(t), math.sqrt(2)),
}


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``x / sqrt(mean(x², dim 1) + eps)`` per sample: ``(N, D)`` -> ``(N, D)``."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def bias_act(
    x: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str = "linear",
    gain: float | None = None,
    clamp: float | None = None,
) -> torch.Tensor:
    """``clamp(act(x + bias) · gain, ±clamp)``, bias broadcast along dim 1.

    ``gain=None`` takes the activation's default gain (√2 for lrelu, 1 for linear). The clamp
    has zero gradient where it is active, as in the original.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; known: {sorted(ACTIVATIONS)}")
    function, default_gain = ACTIVATIONS[activation]
    if bias is not None:
        if bias.ndim != 1 or bias.shape[0] != x.shape[1]:
            raise ValueError(f"bias has shape {tuple(bias.shape)}, expected ({x.shape[1]},) for input {tuple(x.shape)}")
        x = x + bias.to(x.dtype).reshape([1, -1] + [1] * (x.ndim - 2))
    x = function(x)
    gain = default_gain if gain is None else gain
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def fir_filter(taps: list[float] | tuple[float, ...] = (1, 3, 3, 1)) -> torch.Tensor:
    """The 2-D FIR filter ``(fh, fw)`` of a 1-D tap list: its outer product divided by its sum."""
    k = torch.as_tensor(taps, dtype=torch.float32)
    if k.ndim != 1 or k.numel() == 0:
        raise ValueError(f"resample filter taps must be a non-empty 1-D list, got shape {tuple(k.shape)}")
    f = torch.outer(k, k)
    return f / f.sum()


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor,
    up: int = 1,
    down: int = 1,
    pad: tuple[int, int, int, int] = (0, 0, 0, 0),
    gain: float = 1.0,
) -> torch.Tensor:
    """Zero-insertion upsampling, padding, FIR filtering and decimation, per channel.

    ``pad = (left, right, top, bottom)``; a negative pad crops. The filter is applied as a true
    convolution (flipped correlation), scaled by ``gain``.

    Shape: ``(N, C, H, W)`` -> ``(N, C, (H·up + top + bottom − fh) // down + 1, (W·up + ...) // down + 1)``.
    """
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects NCHW input, got shape {tuple(x.shape)}")
    if f.ndim != 2:
        raise ValueError(f"upfirdn2d expects a 2-D filter, got shape {tuple(f.shape)}")
    n, c, h, w = x.shape
    if up > 1:
        # (N, C, H, 1, W, 1) -> pad the singleton axes to `up` -> (N, C, H·up, W·up)
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, list(pad))
    # Depthwise conv with the flipped, scaled filter: one (1, fh, fw) kernel per channel.
    kernel = (f * gain).flip([0, 1]).to(x.dtype)
    kernel = kernel[None, None].expand(c, 1, *f.shape)
    x = F.conv2d(x, kernel, groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """2× (``up``×) upsampling with the FIR filter ``f``: ``(N, C, H, W)`` -> ``(N, C, H·up, W·up)``."""
    fh, fw = f.shape
    pad_x = ((fw + up - 1) // 2, (fw - up) // 2)
    pad_y = ((fh + up - 1) // 2, (fh - up) // 2)
    return upfirdn2d(x, f, up=up, pad=(pad_x[0], pad_x[1], pad_y[0], pad_y[1]), gain=up * up)


def downsample_conv2d(x: torch.Tensor, weight: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Convolution with 2× down-sampling: the FIR low-pass ``f``, then a stride-2 convolution.

    ``weight`` (already scaled by its gain) is applied as a plain correlation. A ``k``×``k`` kernel
    (k odd) sees the input filtered with ``(fh − 1)//2 + k//2`` zeros per side (2 for k = 3 and the
    4-tap filter), then strides by 2 without padding; a 1×1 kernel runs after the filter's own 2×
    decimation (1 zero per side), the cheaper order of two operations that commute.

    Shape: x ``(N, I, H, W)``, weight ``(O, I, k, k)`` -> ``(N, O, H/2, W/2)`` (H, W even).
    """
    if x.ndim != 4 or x.shape[2] % 2 or x.shape[3] % 2:
        raise ValueError(f"downsample_conv2d expects NCHW input of even height and width, got {tuple(x.shape)}")
    kh, kw = weight.shape[2:]
    if kh != kw or kh % 2 == 0:
        raise ValueError(f"downsample_conv2d expects an odd square kernel, got {kh}x{kw}")
    fh = f.shape[0]
    if kh == 1:
        p = (fh - 1) // 2
        return F.conv2d(upfirdn2d(x, f, down=2, pad=(p, p, p, p)), weight)
    p = (fh - 1) // 2 + kh // 2
    return F.conv2d(upfirdn2d(x, f, pad=(p, p, p, p)), weight, stride=2)


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    demodulate: bool = True,
    up: int = 1,
    resample_filter: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    fused: bool = True,
) -> torch.Tensor:
    """Style-modulated convolution, as one grouped convolution over the batch (or, ``fused=False``,
    as the equal "non-fused" form: scale the input by the styles, one convolution with the shared
    weight, scale the output by the demodulation factors; faster to train on a CPU).

    ``w'[n,o,i] = W[o,i] · s[n,i]``; with ``demodulate``, each ``w'[n,o]`` is divided by its
    ℓ2 norm (+1e-8 inside the root), so every output channel has unit-norm weights. With
    ``up=2`` the convolution is a *true* convolution after 2× zero insertion (the stored kernel
    is not flipped), followed by the FIR filter: computed as a stride-2 transposed convolution
    and ``upfirdn2d(pad=1, gain=4)``. ``noise`` (broadcastable to the output) is added after
    demodulation.

    Shape:
        - x: ``(N, I, H, W)``; weight: ``(O, I, k, k)``; styles: ``(N, I)``.
        - output: ``(N, O, H·up, W·up)``.
    """
    n, in_channels, h, w = x.shape
    out_channels, weight_in, kh, kw = weight.shape
    if weight_in != in_channels:
        raise ValueError(f"weight expects {weight_in} input channels, input has {in_channels} (shape {tuple(x.shape)})")
    if styles.shape != (n, in_channels):
        raise ValueError(f"styles have shape {tuple(styles.shape)}, expected ({n}, {in_channels})")
    if up not in (1, 2):
        raise ValueError(f"up must be 1 or 2, got {up}")
    if up == 2 and resample_filter is None:
        raise ValueError("up=2 needs the resample filter")
    if not fused:
        return _modulated_conv2d_unfused(x, weight, styles, demodulate, up, resample_filter, noise)

    # Per-sample weights (N, O, I, k, k), computed in float32 whatever the autocast state.
    w_n = weight.float()[None] * styles.float()[:, None, :, None, None]
    if demodulate:
        w_n = w_n * (w_n.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()

    # One grouped convolution: the batch becomes N groups of I channels.
    x = x.reshape(1, n * in_channels, h, w)
    if up == 1:
        y = F.conv2d(x, w_n.reshape(n * out_channels, in_channels, kh, kw).to(x.dtype), padding=kh // 2, groups=n)
    else:
        assert resample_filter is not None  # checked above
        # conv_transpose2d wants (in, out/groups, k, k) per group: (N·I, O, k, k), kernel unflipped.
        w_t = w_n.transpose(1, 2).reshape(n * in_channels, out_channels, kh, kw).to(x.dtype)
        y = F.conv_transpose2d(x, w_t, stride=2, groups=n)  # (1, N·O, 2H+k-2, 2W+k-2)
        # Pad so that the fh-tap filter brings 2H+k-2 back to 2H: (fh-k+1)//2 per side (1 for k=3,
        # 2 for k=1, which is then exactly upsample2d's alignment); gain 4 = up².
        p = (resample_filter.shape[0] - kh + 1) // 2
        y = upfirdn2d(y, resample_filter, pad=(p, p, p, p), gain=4)
    y = y.reshape(n, out_channels, *y.shape[2:])
    if noise is not None:
        y = y + noise.to(y.dtype)
    return y


def _up_conv2d(x: torch.Tensor, weight: torch.Tensor, resample_filter: torch.Tensor) -> torch.Tensor:
    """The true convolution after 2× zero insertion, then the FIR filter (see :func:`modulated_conv2d`)."""
    kh = weight.shape[2]
    y = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)  # weight as (in, out, k, k), unflipped
    p = (resample_filter.shape[0] - kh + 1) // 2
    return upfirdn2d(y, resample_filter, pad=(p, p, p, p), gain=4)


def _modulated_conv2d_unfused(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    demodulate: bool,
    up: int,
    resample_filter: torch.Tensor | None,
    noise: torch.Tensor | None,
) -> torch.Tensor:
    """``conv(x·s, W)·d``: equal to the per-sample weights' form, because
    ``Σ_{i,k} (W[o,i,k]·s[n,i])² = Σ_i s[n,i]² · Σ_k W[o,i,k]²`` gives the same ``d[n,o]``."""
    kh = weight.shape[2]
    x = x * styles[:, :, None, None].to(x.dtype)
    w = weight.to(x.dtype)
    y = F.conv2d(x, w, padding=kh // 2) if up == 1 else _up_conv2d(x, w, resample_filter)  # type: ignore[arg-type]
    if demodulate:
        d = (styles.float().square() @ weight.float().square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # (N, O)
        y = y * d[:, :, None, None].to(y.dtype)
    if noise is not None:
        y = y + noise.to(y.dtype)
    return y
