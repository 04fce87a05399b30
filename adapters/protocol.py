"""The one interface the attack needs from a conditional generator.

Shaped after StyleGAN2-ADA's generator interface (``z_dim``, ``c_dim``, ``G(z, c)``), with the
class given as integer labels rather than one-hot ``c``, and images always in [0, 1].
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol, cast, runtime_checkable

import torch
from torch import nn

__all__ = ["ConditionalGenerator", "SharedGuards", "as_generator_module", "check_generator"]


class SharedGuards(tuple[nn.Module, ...]):
    """A generator's ``default_guards``: a tuple of classifiers that ``copy.deepcopy`` shares.

    The fit deep-copies the generator (G_orig and G_attack); the guards ride along as a plain
    attribute (not submodules: no state_dict entries, no device moves) and are only ever read, so
    every copy may point at the same classifiers.
    """

    def __deepcopy__(self, memo: dict[int, object]) -> SharedGuards:
        return self


@runtime_checkable
class ConditionalGenerator(Protocol):
    """A class-conditional generator ``G(z, y)``; adapters are ``nn.Module`` s with these members.

    Shape:
        - z: ``(N, z_dim)``, drawn by :meth:`sample_z`.
        - y: ``(N,)`` int64 in ``[0, num_classes)``.
        - output: ``(N, *image_shape)`` float in [0, 1].
    """

    z_dim: int
    num_classes: int
    image_shape: tuple[int, int, int]  # (C, H, W)

    def sample_z(
        self, n: int, *, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """Draws ``n`` latents from the prior (on CPU with ``generator``, then moved to ``device``)."""
        ...

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Images for latents ``z`` and source classes ``y``, in [0, 1]."""
        ...

    def attack_parameters(self) -> Iterator[nn.Parameter]:
        """The parameters the AT-GAN transfer fine-tunes (all of them, for most adapters)."""
        ...


# Optional member: ``default_guards``, a tuple (best a :class:`SharedGuards`) of classifiers of the
# generator's classes on images in [0, 1] that ``ATGANAttack(guard="auto")`` uses; AC-WGAN_GP
# checkpoints carry their auxiliary classifier there. Absent or empty: a guard is distilled.


if TYPE_CHECKING:

    class GeneratorModule(nn.Module, ConditionalGenerator):
        """For type checkers only: an adapter as the attack holds it, an ``nn.Module`` with the protocol's
        members (``nn.Module`` alone types every unknown attribute as ``Tensor | Module``)."""

        def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...

        def __call__(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...


def as_generator_module(generator: nn.Module) -> GeneratorModule:
    """``generator`` typed as an adapter, once :func:`check_generator` has accepted it; a no-op at run time."""
    return cast("GeneratorModule", generator)


def check_generator(generator: object) -> None:
    """Raises ``TypeError`` naming what is missing when ``generator`` does not fit the protocol."""
    if not isinstance(generator, nn.Module):
        raise TypeError(f"a generator adapter must be a torch.nn.Module, got {type(generator).__name__}")
    missing = [
        name
        for name in ("z_dim", "num_classes", "image_shape", "sample_z", "attack_parameters")
        if not hasattr(generator, name)
    ]
    if missing:
        raise TypeError(
            f"{type(generator).__name__} is not a ConditionalGenerator: it lacks {', '.join(missing)} "
            "(wrap your network in an adapter, see atgan_plugin.adapters)"
        )
