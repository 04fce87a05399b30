"""A generator and a model of different sizes: atgan_plugin.adapters.resized and the attack's use of it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from atgan_plugin import ATGANAttack
from atgan_plugin.adapters.resized import ResizedGenerator, map_images
from atgan_plugin.attack.attack_options import AttackOptions
from atgan_plugin.attack.config import TransferConfig
from atgan_plugin.data import TensorDataset
from tests.conftest import ClassMeanGenerator

FAST = TransferConfig.realistic(steps=40, batch_size=32, lr=0.05)


@pytest.fixture
def padded_generator(class_means: torch.Tensor) -> ClassMeanGenerator:
    """The class-mean generator on Fashion-MNIST padded with 2 px of black to 32x32 (StyleGAN2-ADA's size)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return ClassMeanGenerator(F.pad(class_means, (2, 2, 2, 2))).eval()


class SizeRecorder(nn.Module):
    """A guard at 32x32 that records the sizes it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(32 * 32, 10)
        self.sizes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(tuple(x.shape[2:]))
        return self.head(x.flatten(1))


@pytest.mark.parametrize(
    ("size", "mode", "check"),
    [
        ((28, 28), "crop", lambda images, out: torch.equal(out, images[..., 2:30, 2:30])),
        (
            (36, 36),
            "crop",
            lambda images, out: torch.equal(out[..., 2:34, 2:34], images) and out[..., :2, :].eq(0).all(),
        ),
        ((28, 30), "crop", lambda images, out: torch.equal(out, images[..., 2:30, 1:31])),
        ((16, 16), "resize", lambda images, out: torch.allclose(out.mean((2, 3)), images.mean((2, 3)), atol=0.01)),
        ((32, 32), "resize", lambda images, out: out is images),
    ],
)
def test_map_images(size: tuple[int, int], mode: str, check: Any) -> None:
    images = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    out = map_images(images, size, mode)
    assert out.shape == (3, 1, *size)
    assert check(images, out)


def test_a_crop_undoes_the_padding_the_generator_was_trained_with(
    padded_generator: ClassMeanGenerator, make_tiny_generator: Any
) -> None:
    wrapped = ResizedGenerator(padded_generator, (28, 28))
    z = wrapped.sample_z(5, generator=torch.Generator().manual_seed(1))
    y = torch.arange(5)
    assert wrapped.image_shape == (1, 28, 28) and wrapped.z_dim == padded_generator.z_dim
    assert torch.equal(wrapped(z, y), padded_generator(z, y)[..., 2:30, 2:30])
    assert [id(p) for p in wrapped.attack_parameters()] == [id(p) for p in padded_generator.parameters()]
    assert "size=(28, 28), mode='crop'" in repr(wrapped)


def test_the_generators_own_guards_see_its_own_size(padded_generator: ClassMeanGenerator) -> None:
    guard = SizeRecorder()
    padded_generator.default_guards = (guard,)  # type: ignore[assignment]
    (mapped,) = ResizedGenerator(padded_generator, (28, 28)).default_guards
    logits = mapped(torch.rand(4, 1, 28, 28))
    assert logits.shape == (4, 10) and guard.sizes == [(32, 32)]


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (
            lambda g: ResizedGenerator(g, (28, 28), mode="nearest"),
            ValueError,
            r"resize mode must be one of \('crop', 'resize'\)",
        ),
        (lambda g: ResizedGenerator(g, (0, 28)), ValueError, r"must be positive, got \(0, 28\)"),
        (lambda g: ResizedGenerator(nn.Linear(2, 2), (28, 28)), TypeError, r"Linear is not a ConditionalGenerator"),
        (lambda g: AttackOptions(resize="nearest"), ValueError, r"resize must be one of \('crop', 'resize'\)"),
        (lambda g: AttackOptions(image_size=(28,)), ValueError, r"image_size must be two integers \(H, W\) >= 1"),  # type: ignore[arg-type]
    ],
)
def test_bad_sizes_and_modes_are_named(
    padded_generator: ClassMeanGenerator, build: Any, error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        build(padded_generator)


def test_the_attack_meets_a_smaller_model_without_glue(
    padded_generator: ClassMeanGenerator, tiny_target: nn.Module, fashion_test: TensorDataset
) -> None:
    # A 32x32 generator, a 28x28 model: the attack crops on the first call, fits and answers at 28x28.
    x, y = fashion_test.images[:64], fashion_test.labels[:64]
    attack = ATGANAttack(tiny_target, generator=padded_generator, config=FAST, guard=None, progress=False)
    adversarial = attack.perturb(x, y)
    assert adversarial.shape == x.shape
    assert attack.generator.image_shape == (1, 28, 28)
    with torch.no_grad():
        fooled = (tiny_target(adversarial).argmax(1) != y).float().mean().item()
    assert fooled > 0.5  # the fit ran on what the model sees
    sources = torch.arange(10)
    adversarial, reference = attack.generate(sources, with_reference=True)  # type: ignore[misc]
    assert adversarial.shape == reference.shape == (10, 1, 28, 28)
    with pytest.raises(ValueError, match=r"works at the model's input size \(28, 28\); inputs of size \(24, 24\)"):
        attack.perturb(torch.rand(2, 1, 24, 24), y[:2])


def test_image_size_fits_before_any_input(padded_generator: ClassMeanGenerator, tiny_target: nn.Module) -> None:
    options = AttackOptions(image_size=(28, 28), resize="resize")
    attack = ATGANAttack(
        tiny_target,
        generator=padded_generator,
        config=replace(FAST, steps=3),
        guard=None,
        options=options,
        progress=False,
    )
    fit = attack.fit()
    z = padded_generator.sample_z(2)
    assert fit.generator(z, torch.tensor([0, 1])).shape == (2, 1, 28, 28)
    assert attack.native_generator is padded_generator  # the user's generator itself is left as it was
    assert padded_generator.image_shape == (1, 32, 32)
