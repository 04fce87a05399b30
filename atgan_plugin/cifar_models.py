"""CIFAR classifiers: WideResNet and a small CNN, and their checkpoints (``cifar.classifier``).

paper (appendix D.5, Table 11): the CIFAR-10 target is "wide ResNet w32-10" (normal and PGD-adversarial
training). Every model takes images ``(N, 3, 32, 32)`` in [0, 1] (it normalises them itself with the CIFAR-10
channel statistics) and returns logits ``(N, 10)``. The paper's CIFAR-10 settings and the data reader are in
:mod:`atgan_plugin.paper.cifar`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from atgan_plugin.checkpoints import Architecture, Checkpoint, load_module, save_checkpoint
from atgan_plugin.limits import Fields, Int, OneOf, Real

__all__ = [
    "ARCHITECTURE",
    "CHECKPOINT_KIND",
    "CIFAR_ARCHITECTURES",
    "SmallCifarCNN",
    "WideResNet",
    "build_cifar_classifier",
    "load_cifar_classifier",
    "save_cifar_classifier",
]

_MEAN = (0.4914, 0.4822, 0.4465)
_STD = (0.2470, 0.2435, 0.2616)


class _Normalize(nn.Module):
    """[0, 1] images -> per-channel standardised, so callers and attacks work in [0, 1]."""

    mean: torch.Tensor  # (1, 3, 1, 1) buffers, registered in __init__
    std: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _check_input(x: torch.Tensor, channels: int) -> None:
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"expected images (N, {channels}, H, W), got {tuple(x.shape)}")


class _WideBlock(nn.Module):
    """Pre-activation residual block: BN-ReLU-conv3×3-BN-ReLU-conv3×3, 1×1 shortcut when the shape changes."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, padding=1, bias=False)
        self.dropout = dropout
        self.shortcut = (
            nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)
            if stride != 1 or in_planes != out_planes
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = F.relu(self.bn2(out))
        if self.dropout:
            out = F.dropout(out, p=self.dropout, training=self.training)
        residual: torch.Tensor = self.conv2(out)
        return residual + shortcut


def blocks_per_stage(depth: int) -> int:
    """Residual blocks per stage for a WideResNet ``depth``.

    Two counting conventions are in use and never collide: Zagoruyko & Komodakis count the
    three 1×1 shortcut convolutions (depth = 6n + 4: WRN-28-10, WRN-34-10), Madry et al.'s
    "w32-10" does not (depth = 6n + 2). our choice: accept both, so WRN-32-10 (the paper's)
    and WRN-34-10 are the same network with n = 5.
    """
    if depth >= 10 and (depth - 4) % 6 == 0:
        return (depth - 4) // 6
    if depth >= 8 and (depth - 2) % 6 == 0:
        return (depth - 2) // 6
    raise ValueError(f"WideResNet depth must be 6n+4 (e.g. 16, 28, 34) or 6n+2 (e.g. 20, 32), got {depth}")


class WideResNet(nn.Module):
    """WideResNet for 32×32 images (Zagoruyko & Komodakis 2016); default WRN-32-10 as in the paper.

    Stages of ``16k, 32k, 64k`` channels (``k = widen_factor``) at 32, 16 and 8 pixels, each of
    :func:`blocks_per_stage` pre-activation blocks; BN-ReLU, global average pool, linear.

    Shape: ``(N, 3, 32, 32)`` in [0, 1] -> logits ``(N, num_classes)``.
    """

    def __init__(
        self, depth: int = 32, widen_factor: int = 10, num_classes: int = 10, dropout: float = 0.0, in_channels: int = 3
    ):
        super().__init__()
        if widen_factor < 1:
            raise ValueError(f"widen_factor must be >= 1, got {widen_factor}")
        n = blocks_per_stage(depth)
        self.in_channels = in_channels
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.normalize = _Normalize() if in_channels == 3 else nn.Identity()
        self.conv = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        stages: list[nn.Module] = []
        in_planes = widths[0]
        for width, stride in zip(widths[1:], (1, 2, 2), strict=True):  # 32, 16, 8 pixels
            blocks = [
                _WideBlock(in_planes if i == 0 else width, width, stride if i == 0 else 1, dropout) for i in range(n)
            ]
            stages.append(nn.Sequential(*blocks))
            in_planes = width
        self.stages = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(in_planes)
        self.fc = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.in_channels)
        out = self.stages(self.conv(self.normalize(x)))
        out = F.relu(self.bn(out))
        logits: torch.Tensor = self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))
        return logits


class SmallCifarCNN(nn.Module):
    """A small CIFAR CNN: 2×[conv3×3-ReLU, conv3×3-ReLU, maxpool] then FC(256)-ReLU-FC.

    Any input size divisible by 4 (32×32 for CIFAR-10; tests use 16×16).

    Shape: ``(N, 3, H, W)`` in [0, 1] -> logits ``(N, num_classes)``.
    """

    def __init__(self, num_classes: int = 10, width: int = 32, in_channels: int = 3, image_size: int = 32):
        super().__init__()
        if image_size % 4:
            raise ValueError(f"image_size must be divisible by 4, got {image_size}")
        self.in_channels = in_channels
        self.normalize = _Normalize() if in_channels == 3 else nn.Identity()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * width * (image_size // 4) ** 2, 256), nn.ReLU(), nn.Linear(256, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.in_channels)
        logits: torch.Tensor = self.classifier(self.features(self.normalize(x)))
        return logits


CIFAR_ARCHITECTURES: dict[str, type[nn.Module]] = {"wrn": WideResNet, "cnn": SmallCifarCNN}


def build_cifar_classifier(architecture: str = "wrn", **kwargs: Any) -> nn.Module:
    """A freshly initialised CIFAR classifier: ``"wrn"`` (:class:`WideResNet`) or ``"cnn"`` (:class:`SmallCifarCNN`)."""
    if architecture not in CIFAR_ARCHITECTURES:
        raise ValueError(f"unknown CIFAR architecture {architecture!r}; known: {sorted(CIFAR_ARCHITECTURES)}")
    return CIFAR_ARCHITECTURES[architecture](**kwargs)


CHECKPOINT_KIND = "cifar.classifier"
# Bounds on a checkpoint's config (the union of both architectures' arguments), checked before building.
ARCHITECTURE = Architecture(
    build_cifar_classifier,
    Fields(
        {
            "architecture": OneOf(tuple(CIFAR_ARCHITECTURES)),
            "depth": Int(8, 200),
            "widen_factor": Int(1, 32),
            "num_classes": Int(1, 1000),
            "dropout": Real(0, 1),
            "in_channels": Int(1, 16),
            "width": Int(1, 1024),
            "image_size": Int(4, 1024),
        }
    ),
)


def save_cifar_classifier(
    path: str | Path, model: nn.Module, config: dict[str, Any], training: dict[str, Any] | None = None
) -> None:
    """Saves ``model`` under :data:`CHECKPOINT_KIND`.

    ``config`` holds ``architecture`` and the constructor arguments, e.g. ``{"architecture": "wrn", "depth": 32}``.
    """
    save_checkpoint(path, Checkpoint(CHECKPOINT_KIND, dict(model.state_dict()), dict(config), dict(training or {})))


def load_cifar_classifier(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuilds a CIFAR classifier from its checkpoint (config and shapes checked first).

    Returned in eval mode, on ``device``.
    """
    module, _ = load_module(path, {CHECKPOINT_KIND: ARCHITECTURE})
    return module.to(device).eval()
