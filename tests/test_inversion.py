"""atgan_plugin.attack.inversion: finding z with G(z, y) ≈ x."""

from __future__ import annotations

import torch
from torch import nn

from atgan_plugin.attack.inversion import invert_latents


def mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).pow(2).mean().item()


def test_inversion_recovers_images_the_generator_can_draw(tiny_generator: nn.Module) -> None:
    y = torch.arange(10)
    true_z = tiny_generator.sample_z(10, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        images = tiny_generator(true_z, y)
        start = tiny_generator(tiny_generator.sample_z(10, generator=torch.Generator().manual_seed(2)), y)
    z = invert_latents(tiny_generator, images, y, steps=200, rng=torch.Generator().manual_seed(2))
    assert z.shape == (10, tiny_generator.z_dim) and not z.requires_grad
    with torch.no_grad():
        reconstruction = tiny_generator(z, y)
    assert mse(reconstruction, images) < 0.1 * mse(start, images)


def test_inversion_is_seeded_and_leaves_the_generator_alone(tiny_generator: nn.Module, fashion_test) -> None:  # type: ignore[no-untyped-def]
    x, y = fashion_test.images[:6], fashion_test.labels[:6]
    before = {n: p.clone() for n, p in tiny_generator.named_parameters()}
    a = invert_latents(tiny_generator, x, y, steps=20, rng=torch.Generator().manual_seed(0))
    b = invert_latents(tiny_generator, x, y, steps=20, rng=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    for name, p in tiny_generator.named_parameters():
        assert torch.equal(p, before[name]) and p.grad is None
