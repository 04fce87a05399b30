"""AC-WGAN_GP, the default original generator: its networks and its adapter, in one place.

The networks are for 28×28 images (AT-GAN paper, appendix Table 5; the table reaches us garbled, so the
layers below are our reading of it): the generator ``G(z, y)``, the critic ``D(x)`` (a WGAN critic, linear
output, no batch norm because the gradient penalty is per sample) and the auxiliary classifier ``f(x)``.
:class:`ACWGANGPGenerator` puts ``G`` behind the :class:`~atgan_plugin.adapters.ConditionalGenerator` protocol
and reads and writes its checkpoints (with the guards they carry).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from atgan_plugin.adapters.protocol import SharedGuards
from atgan_plugin.adapters.registry import GeneratorFormat, register_generator_format
from atgan_plugin.checkpoints import Architecture, Checkpoint, load_module, read_checkpoint_kind, save_checkpoint
from atgan_plugin.limits import Fields, Int

__all__ = [
    "CHECKPOINT_KIND",
    "CONFIG_SCHEMA",
    "ACWGANGPConfig",
    "ACWGANGPGenerator",
    "AuxiliaryClassifier",
    "Critic",
    "Generator",
]


@dataclass(frozen=True)
class ACWGANGPConfig:
    """Constructor arguments shared by the three networks; stored in every checkpoint."""

    z_dim: int = 100
    num_classes: int = 10
    img_channels: int = 1
    img_resolution: int = 28  # the architecture is built for 28×28

    def __post_init__(self) -> None:
        if self.img_resolution != 28:
            raise ValueError(f"the AC-WGAN_GP networks are built for 28x28 images, got {self.img_resolution}")

    def asdict(self) -> dict[str, int]:
        return asdict(self)


# Bounds on a checkpoint's config (atgan_plugin.limits), checked before a network is built from it.
CONFIG_SCHEMA = Fields(
    {"z_dim": Int(1, 4096), "num_classes": Int(1, 1000), "img_channels": Int(1, 4), "img_resolution": Int(28, 28)}
)


class Generator(nn.Module):
    """``G(z, y)``: latent ``(N, z_dim)`` and labels ``(N,)`` -> images ``(N, C, 28, 28)`` in [0, 1]."""

    def __init__(self, z_dim: int = 100, num_classes: int = 10, img_channels: int = 1, img_resolution: int = 28):
        super().__init__()
        self.config = ACWGANGPConfig(z_dim, num_classes, img_channels, img_resolution)
        self.fc = nn.Sequential(
            nn.Linear(z_dim + num_classes, 1024),
            nn.BatchNorm1d(1024),
            nn.ReLU(),
            nn.Linear(1024, 128 * 7 * 7),
            nn.BatchNorm1d(128 * 7 * 7),
            nn.ReLU(),
        )
        self.deconv = nn.Sequential(
            # 7 -> 14
            nn.ConvTranspose2d(128, 64, 4, stride=2, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            # 14 -> 28
            nn.ConvTranspose2d(64, img_channels, 4, stride=2, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # Condition by concatenating the one-hot label to z.
        onehot = F.one_hot(y, self.config.num_classes).to(z.dtype)
        h = self.fc(torch.cat([z, onehot], dim=1))
        images: torch.Tensor = self.deconv(h.view(-1, 128, 7, 7))  # (N, C, 28, 28)
        return images


class Critic(nn.Module):
    """``D(x)``: images ``(N, C, 28, 28)`` -> unbounded realness scores ``(N,)``."""

    def __init__(self, z_dim: int = 100, num_classes: int = 10, img_channels: int = 1, img_resolution: int = 28):
        super().__init__()
        self.net = nn.Sequential(
            # 28 -> 14
            nn.Conv2d(img_channels, 64, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            # 14 -> 7
            nn.Conv2d(64, 128, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(128 * 7 * 7, 1024),
            nn.LeakyReLU(0.2),
            nn.Linear(1024, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores: torch.Tensor = self.net(x)  # (N, 1)
        return scores.squeeze(1)


class AuxiliaryClassifier(nn.Module):
    """``f(x)``: images ``(N, C, 28, 28)`` -> class logits ``(N, num_classes)``."""

    def __init__(self, z_dim: int = 100, num_classes: int = 10, img_channels: int = 1, img_resolution: int = 28):
        super().__init__()
        self.net = nn.Sequential(
            # 28 -> 14
            nn.Conv2d(img_channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            # 14 -> 7
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 1024),
            nn.ReLU(),
            nn.Dropout(0.4),
            nn.Linear(1024, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.net(x)
        return logits


# ---------------------------------------------------------------------------------------------
# The adapter.

CHECKPOINT_KIND = "acwgan_gp.generator"


class ACWGANGPGenerator(nn.Module):
    """AC-WGAN_GP's generator as a :class:`ConditionalGenerator`.

    The network ends in a sigmoid, so its output is already in [0, 1]. Our choice: the AT-GAN
    transfer fine-tunes every parameter, and batch-norm statistics stay frozen (the attack runs
    the generator in eval mode), so ``G(z, y)`` is a deterministic function of ``(z, y)``.

    ``default_guards``: the classifiers ``ATGANAttack(guard="auto")`` keeps the source class with,
    normally AC-WGAN_GP's own auxiliary classifier; a checkpoint carries them (``save`` writes them,
    ``from_checkpoint`` reads them back).
    """

    def __init__(self, network: Generator, default_guards: Sequence[nn.Module] = ()):
        super().__init__()
        self.network = network
        self.default_guards = SharedGuards(default_guards)
        self.z_dim = network.config.z_dim
        self.num_classes = network.config.num_classes
        self.image_shape = (network.config.img_channels, network.config.img_resolution, network.config.img_resolution)

    def sample_z(
        self, n: int, *, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> torch.Tensor:
        # Drawn on CPU so that a seed gives the same latents on every device.
        z = torch.randn(n, self.z_dim, generator=generator)
        return z.to(device if device is not None else self._device())

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        images: torch.Tensor = self.network(z, y)
        return images

    def attack_parameters(self) -> Iterator[nn.Parameter]:
        return self.network.parameters()

    def _device(self) -> torch.device:
        return next(self.network.parameters()).device

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> ACWGANGPGenerator:
        """Our safetensors checkpoint; its config and tensor shapes are checked before anything is allocated."""
        from atgan_plugin.models import CLASSIFIER_KINDS, guards_from_parts  # models imports this module

        network, checkpoint = load_module(
            path, {CHECKPOINT_KIND: Architecture(Generator, CONFIG_SCHEMA)}, CLASSIFIER_KINDS
        )
        assert isinstance(network, Generator)
        return cls(network, default_guards=guards_from_parts(checkpoint, path)).eval()

    def save(self, path: str | Path, training: dict[str, object] | None = None, *, half: bool = False) -> None:
        """Our safetensors checkpoint: weights, constructor arguments, training facts and the default guards."""
        from atgan_plugin.models import guard_parts  # models imports this module

        checkpoint = Checkpoint(
            CHECKPOINT_KIND,
            dict(self.network.state_dict()),
            self.network.config.asdict(),
            dict(training or {}),
            guard_parts(self.default_guards),
        )
        save_checkpoint(path, checkpoint, half=half)


register_generator_format(
    GeneratorFormat(
        name="acwgan_gp (safetensors)",
        accepts=lambda path: read_checkpoint_kind(path) == CHECKPOINT_KIND,
        load=ACWGANGPGenerator.from_checkpoint,
    )
)
