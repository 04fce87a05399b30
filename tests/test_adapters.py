"""atgan_plugin.adapters: the ConditionalGenerator protocol, our AC-WGAN_GP adapter, load_generator."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import atgan_plugin.adapters as adapters
from atgan_plugin.adapters import ACWGANGPGenerator, ConditionalGenerator, check_generator, load_generator
from atgan_plugin.adapters.acwgan_gp import Generator
from atgan_plugin.checkpoints import Checkpoint, CheckpointError, save_checkpoint
from atgan_plugin.models import build_classifier, save_classifier


def outputs(generator: nn.Module, n: int = 6, seed: int = 0) -> torch.Tensor:
    z = generator.sample_z(n, generator=torch.Generator().manual_seed(seed))
    y = torch.arange(n) % generator.num_classes
    with torch.no_grad():
        return generator(z.to(next(generator.parameters()).device), y.to(next(generator.parameters()).device))


def test_public_names() -> None:
    assert set(adapters.__all__) >= {"ACWGANGPGenerator", "ConditionalGenerator", "check_generator", "load_generator"}
    for name in adapters.__all__:
        assert hasattr(adapters, name)


@pytest.mark.parametrize("which", ["random_generator", "tiny_generator"])
def test_adapters_satisfy_the_protocol(request: pytest.FixtureRequest, which: str) -> None:
    generator = request.getfixturevalue(which)
    assert isinstance(generator, ConditionalGenerator)
    check_generator(generator)  # raises when something is missing
    images = outputs(generator)
    assert images.shape == (6, *generator.image_shape)
    assert 0 <= images.min().item() and images.max().item() <= 1


@pytest.mark.parametrize(
    "kwargs, z_dim, num_classes, image_shape",
    [
        ({}, 100, 10, (1, 28, 28)),
        ({"z_dim": 16, "num_classes": 5}, 16, 5, (1, 28, 28)),
        ({"img_channels": 3}, 100, 10, (3, 28, 28)),
    ],
)
def test_acwgan_gp_adapter_attributes(
    kwargs: dict[str, int], z_dim: int, num_classes: int, image_shape: tuple[int, ...]
) -> None:
    generator = ACWGANGPGenerator(Generator(**kwargs)).eval()
    assert (generator.z_dim, generator.num_classes, generator.image_shape) == (z_dim, num_classes, image_shape)
    assert outputs(generator, n=num_classes).shape == (num_classes, *image_shape)
    assert list(generator.attack_parameters()) == list(generator.network.parameters())


def test_sample_z_is_seeded_and_device_independent(random_generator: ACWGANGPGenerator, device: torch.device) -> None:
    a = random_generator.sample_z(5, generator=torch.Generator().manual_seed(3))
    b = random_generator.sample_z(5, generator=torch.Generator().manual_seed(3), device=device)
    c = random_generator.sample_z(5, generator=torch.Generator().manual_seed(4))
    assert a.shape == (5, 100)
    assert b.device.type == device.type
    assert torch.equal(a, b.cpu())
    assert not torch.equal(a, c)


@pytest.mark.parametrize("half", [False, True], ids=["float32", "half"])
def test_save_and_load_round_trip(
    tmp_path: Path, random_generator: ACWGANGPGenerator, half: bool, device: torch.device
) -> None:
    path = tmp_path / "generator.safetensors"
    random_generator.save(path, training={"steps": 7}, half=half)
    for loaded in (ACWGANGPGenerator.from_checkpoint(path), load_generator(path, device=device)):
        assert isinstance(loaded, ACWGANGPGenerator)
        assert not any(m.training for m in loaded.modules())
        expected, got = outputs(random_generator), outputs(loaded).cpu()
        if half:
            assert torch.allclose(got, expected, atol=5e-3)
        elif device.type == "cpu":
            assert torch.equal(got, expected)
        else:
            assert torch.allclose(got, expected, atol=1e-5)
    assert next(load_generator(path, device=device).parameters()).device.type == device.type


def test_round_trip_keeps_the_constructor_arguments(tmp_path: Path) -> None:
    original = ACWGANGPGenerator(Generator(z_dim=12, num_classes=4)).eval()
    original.save(tmp_path / "g.safetensors")
    loaded = load_generator(tmp_path / "g.safetensors")
    assert (loaded.z_dim, loaded.num_classes) == (12, 4)
    assert torch.equal(outputs(loaded, n=4), outputs(original, n=4))


def test_registered_formats_include_ours() -> None:
    assert "acwgan_gp (safetensors)" in adapters.registered_formats()


def _truncated(tmp_path: Path, generator: ACWGANGPGenerator) -> Path:
    path = tmp_path / "g.safetensors"
    generator.save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _foreign(tmp_path: Path, generator: ACWGANGPGenerator) -> Path:
    path = tmp_path / "g.safetensors"
    save_file({k: v.contiguous() for k, v in generator.network.state_dict().items()}, str(path))
    return path


def _classifier(tmp_path: Path, generator: ACWGANGPGenerator) -> Path:
    path = tmp_path / "model.safetensors"
    save_classifier(path, build_classifier("D"), {"architecture": "D"}, {})
    return path


def _pickle(tmp_path: Path, generator: ACWGANGPGenerator) -> Path:
    path = tmp_path / "g.pt"
    torch.save(generator.network.state_dict(), path)
    return path


def _missing(tmp_path: Path, generator: ACWGANGPGenerator) -> Path:
    return tmp_path / "nothing.safetensors"


def _wrong_shapes(tmp_path: Path, generator: ACWGANGPGenerator) -> Path:
    # Our kind, but weights of a smaller generator than the recorded configuration.
    path = tmp_path / "g.safetensors"
    small = Generator(z_dim=4)
    save_checkpoint(path, Checkpoint("acwgan_gp.generator", dict(small.state_dict()), Generator().config.asdict(), {}))
    return path


BAD_FILES: list[tuple[str, Callable[[Path, ACWGANGPGenerator], Path], str]] = [
    (
        "truncated",
        _truncated,
        r"g\.safetensors is a truncated safetensors file \(its tensors need \d+ bytes of data, only \d+ follow\)",
    ),
    ("foreign safetensors", _foreign, r"not a generator checkpoint of a known format"),
    ("classifier checkpoint", _classifier, r"not a generator checkpoint of a known format"),
    ("torch pickle", _pickle, r"not a generator checkpoint of a known format"),
    ("missing", _missing, r"generator checkpoint .*nothing\.safetensors does not exist"),
    ("weights of another shape", _wrong_shapes, r"does not match its recorded architecture"),
]


@pytest.mark.parametrize("make, match", [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_load_generator_refuses_bad_files(
    tmp_path: Path, random_generator: ACWGANGPGenerator, make: Callable[[Path, ACWGANGPGenerator], Path], match: str
) -> None:
    path = make(tmp_path, random_generator)
    with pytest.raises(CheckpointError, match=match):
        load_generator(path)


@pytest.mark.parametrize(
    "thing, match",
    [
        (object(), r"must be a torch\.nn\.Module, got object"),
        (
            nn.Linear(2, 2),
            r"Linear is not a ConditionalGenerator: it lacks z_dim, num_classes, image_shape, sample_z, attack_parameters",
        ),
        (Generator(), r"Generator is not a ConditionalGenerator: it lacks z_dim, num_classes, image_shape, sample_z"),
    ],
    ids=["object", "linear", "bare network"],
)
def test_check_generator_names_what_is_missing(thing: object, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        check_generator(thing)
