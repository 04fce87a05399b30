"""Adapter for our AC-WGAN_GP generator (``atgan_plugin.adapters.acwgan_gp.network.Generator``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from atgan_plugin.adapters.acwgan_gp.network import CONFIG_SCHEMA, Generator
from atgan_plugin.adapters.protocol import SharedGuards
from atgan_plugin.adapters.registry import GeneratorFormat, register_generator_format
from atgan_plugin.checkpoints import Architecture, Checkpoint, load_module, read_checkpoint_kind, save_checkpoint
from atgan_plugin.models import CLASSIFIER_KINDS, guard_parts, guards_from_parts

__all__ = ["ACWGANGPGenerator"]

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
        network, checkpoint = load_module(
            path, {CHECKPOINT_KIND: Architecture(Generator, CONFIG_SCHEMA)}, CLASSIFIER_KINDS
        )
        assert isinstance(network, Generator)
        return cls(network, default_guards=guards_from_parts(checkpoint, path)).eval()

    def save(self, path: str | Path, training: dict[str, object] | None = None, *, half: bool = False) -> None:
        """Our safetensors checkpoint: weights, constructor arguments, training facts and the default guards."""
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
