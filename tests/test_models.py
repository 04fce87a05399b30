"""atgan_plugin.models and atgan_plugin.paper.classifier_training: target models A–D and the oracle."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from atgan_plugin.checkpoints import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from atgan_plugin.data import TensorDataset
from atgan_plugin.models import ARCHITECTURES, build_classifier, load_classifier, save_classifier
from atgan_plugin.paper.classifier_training import ClassifierTrainingConfig, accuracy, train_classifier

CPU = torch.device("cpu")


def images(n: int, seed: int = 0, device: torch.device = CPU) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)).to(device)


@pytest.mark.parametrize("num_classes", [10, 3])
@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_output_shape(architecture: str, num_classes: int, device: torch.device) -> None:
    model = build_classifier(architecture, num_classes=num_classes).to(device).eval()
    with torch.no_grad():
        logits = model(images(5, device=device))
    assert logits.shape == (5, num_classes)
    assert logits.device.type == device.type
    assert torch.isfinite(logits).all()


def test_architectures_are_the_six_documented_ones() -> None:
    assert set(ARCHITECTURES) == {"A", "B", "C", "D", "oracle", "guard"}


def test_only_the_oracle_uses_batch_norm() -> None:
    # The oracle is the only batch-normalised network: an architecture used nowhere else.
    def uses_batch_norm(architecture: str) -> bool:
        return any(isinstance(m, nn.BatchNorm2d) for m in build_classifier(architecture).modules())

    assert uses_batch_norm("oracle")
    assert not any(uses_batch_norm(a) for a in ("A", "B", "C", "D", "guard"))


@pytest.mark.parametrize("half", [False, True], ids=["float32", "half"])
@pytest.mark.parametrize("architecture", ["B", "D", "oracle", "guard"])
def test_save_load_round_trip(tmp_path: Path, architecture: str, half: bool) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model = build_classifier(architecture).eval()
    path = tmp_path / "model.safetensors"
    save_classifier(path, model, {"architecture": architecture}, {"epochs": 0}, half=half)
    loaded = load_classifier(path)
    assert not loaded.training
    x = images(4)
    with torch.no_grad():
        expected, got = model(x), loaded(x)
    if half:
        assert torch.allclose(got, expected, atol=1e-2, rtol=1e-2)
    else:
        assert torch.equal(got, expected)
    assert load_checkpoint(path).training == {"epochs": 0}


def test_load_classifier_refuses_other_kinds(tmp_path: Path) -> None:
    path = tmp_path / "generator.safetensors"
    save_checkpoint(path, Checkpoint("acwgan_gp.generator", {"w": torch.zeros(1)}, {}, {}))
    with pytest.raises(CheckpointError, match=r"holds a 'acwgan_gp\.generator' checkpoint, expected 'classifier'"):
        load_classifier(path)


def test_load_classifier_refuses_weights_of_another_architecture(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_classifier(path, build_classifier("D"), {"architecture": "B"}, {})
    with pytest.raises(CheckpointError, match=r"does not match its recorded architecture"):
        load_classifier(path)


# ------------------------------------------------------------------------------------------------
# Training.


def test_tiny_target_beats_chance_by_a_wide_margin(tiny_target_accuracy: float) -> None:
    # Ten balanced classes: chance is 0.1.
    assert tiny_target_accuracy > 0.7


def test_training_reports_test_accuracy_and_leaves_eval_mode(
    fashion_train: TensorDataset, fashion_test: TensorDataset
) -> None:
    model = build_classifier("D")
    result = train_classifier(
        model,
        fashion_train.subset(500),
        fashion_test.subset(200),
        ClassifierTrainingConfig(epochs=2, batch_size=50),
        device=CPU,
        progress=False,
    )
    assert len(result["history"]) == 2
    assert result["test_accuracy"] == result["history"][-1] == accuracy(model, fashion_test.subset(200), device=CPU)
    assert result["config"]["epochs"] == 2
    assert not any(m.training for m in model.modules())


@pytest.mark.parametrize("regime", ["normal", "fgsm-rs"])
def test_training_is_reproducible_and_learns(
    regime: str, fashion_train: TensorDataset, fashion_test: TensorDataset
) -> None:
    data, test = fashion_train.subset(2000), fashion_test.subset(500)
    config = ClassifierTrainingConfig(epochs=1, batch_size=32, regime=regime, seed=4)
    models = []
    for _ in range(2):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # the same initialisation, and the same dropout masks
            model = build_classifier("D")
            result = train_classifier(model, data, test, config, device=CPU, progress=False)
        models.append(model)
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        assert torch.equal(a, b)
    assert result["test_accuracy"] > 0.3  # chance: 0.1


def test_accuracy_restores_the_callers_modes(fashion_test: TensorDataset) -> None:
    model = build_classifier("oracle").train()
    model[1].eval()  # a frozen batch norm inside a training model
    modes = [m.training for m in model.modules()]
    buffers = copy.deepcopy(dict(model.named_buffers()))
    accuracy(model, fashion_test.subset(64), device=CPU)
    assert [m.training for m in model.modules()] == modes
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, buffers[name])  # evaluated in eval mode: no running-stat update
