"""atgan_plugin.pretrained: the shipped Fashion-MNIST checkpoints load and do their job.

These tests skip themselves while a checkpoint is not shipped, and assert for real once it is.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from atgan_plugin.adapters import ACWGANGPGenerator
from atgan_plugin.data import TensorDataset
from atgan_plugin.models import build_classifier
from atgan_plugin.paper.classifier_training import accuracy
from atgan_plugin.pretrained import NAMES, pretrained_path

CPU = torch.device("cpu")


def shipped_folder() -> Path:
    from atgan_plugin import pretrained

    return Path(pretrained.ROOT) / "fashion-mnist"


def checkpoints_or_skip() -> list[Path]:
    files = sorted(shipped_folder().glob("*.safetensors"))
    if not files:
        pytest.skip("no shipped checkpoints yet")
    return files


def test_missing_dataset_names_what_is_shipped() -> None:
    with pytest.raises(
        FileNotFoundError, match=r"no pretrained generator for 'cifar10' \(datasets shipped: \[.*'fashion-mnist'.*\]\)"
    ):
        pretrained_path("generator", "cifar10")


def test_every_shipped_checkpoint_is_a_known_name() -> None:
    for path in shipped_folder().glob("*.safetensors"):
        assert path.stem in NAMES


def test_checksums_match() -> None:
    files = checkpoints_or_skip()
    sums = shipped_folder() / "SHA256SUMS"
    assert sums.is_file(), "shipped checkpoints come with SHA256SUMS"
    listed = {}
    for line in sums.read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        listed[name.lstrip("*")] = digest
    for path in files:
        assert path.name in listed, f"{path.name} is not in SHA256SUMS"
    for name, digest in listed.items():
        assert hashlib.sha256((shipped_folder() / name).read_bytes()).hexdigest() == digest, name


def test_every_checkpoint_has_a_training_record() -> None:
    for path in checkpoints_or_skip():
        record = path.with_suffix(".json")
        assert record.is_file(), f"{path.name} has no {record.name}"
        json.loads(record.read_text())


def test_shipped_guard_is_the_gans_auxiliary_classifier(fashion_test: TensorDataset) -> None:
    from atgan_plugin.adapters.acwgan_gp import AuxiliaryClassifier
    from atgan_plugin.pretrained import load_pretrained_classifier

    checkpoints_or_skip()
    guard = load_pretrained_classifier("aux_classifier")
    assert isinstance(guard, AuxiliaryClassifier) and not guard.training
    assert accuracy(guard, fashion_test, device=CPU) > 0.8


@pytest.mark.parametrize("name, architecture", [("robust_guard", "B"), ("robust_guard_2", "A")])
def test_shipped_robust_guards_are_adversarially_trained(
    name: str, architecture: str, pretrained_model_a: nn.Module, fashion_test: TensorDataset
) -> None:
    from atgan_plugin.defenses import fgsm
    from atgan_plugin.pretrained import load_pretrained_classifier

    checkpoints_or_skip()
    guard = load_pretrained_classifier(name)
    assert [type(m) for m in guard.modules()] == [type(m) for m in build_classifier(architecture).modules()]
    assert not guard.training
    assert accuracy(guard, fashion_test, device=CPU) > 0.75
    # What makes it a guard worth having: FGSM at the Table 6 ε hurts it far less than normally trained Model A.
    x, y = fashion_test.images[:500], fashion_test.labels[:500]
    robust = {
        name: (model(fgsm(model, x, y, 0.1)).argmax(1) == y).float().mean().item()
        for name, model in (("guard", guard), ("model_a", pretrained_model_a))
    }
    assert robust["guard"] > robust["model_a"] + 0.3, robust


@pytest.mark.parametrize(
    "fixture, architecture, minimum", [("pretrained_model_a", "A", 0.85), ("pretrained_oracle", "oracle", 0.8)]
)
def test_shipped_classifiers(
    request: pytest.FixtureRequest, fixture: str, architecture: str, minimum: float, fashion_test: TensorDataset
) -> None:
    model: nn.Module = request.getfixturevalue(fixture)
    assert [type(m) for m in model.modules()] == [type(m) for m in build_classifier(architecture).modules()]
    assert not model.training
    assert accuracy(model, fashion_test, device=CPU) > minimum


def test_shipped_generator_draws_what_the_oracle_recognises(
    pretrained_generator: nn.Module, pretrained_oracle: nn.Module
) -> None:
    assert isinstance(pretrained_generator, ACWGANGPGenerator)
    y = torch.arange(500) % 10
    z = pretrained_generator.sample_z(500, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        images = pretrained_generator(z, y)
        predicted = pretrained_oracle(images).argmax(1)
    assert 0 <= images.min() and images.max() <= 1
    per_class = torch.stack([(predicted[y == k] == k).float().mean() for k in range(10)])
    assert per_class.mean() > 0.7
    assert per_class.min() > 0.2  # no class collapsed
