"""atgan_plugin.paper.gan_training: a few AC-WGAN_GP steps on a real slice; files, resuming, divergence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from atgan_plugin.adapters import ACWGANGPGenerator, load_generator
from atgan_plugin.adapters.acwgan_gp import AuxiliaryClassifier
from atgan_plugin.checkpoints import load_checkpoint, load_training_state
from atgan_plugin.data import TensorDataset
from atgan_plugin.models import load_classifier
from atgan_plugin.paper import gan_training
from atgan_plugin.paper.gan_training import GANTrainingConfig, TrainingDivergedError, train_acwgan_gp

CPU = torch.device("cpu")
# Small and fast: the networks are full size, so the cost is per step and per state.pt write
# (optimiser moments included, about 200 MB); state is saved only at the end unless a test asks.
FAST = dict(batch_size=8, critic_steps=1, sample_every=2, checkpoint_every=1000)


def train(data: TensorDataset, out: Path, steps: int, **overrides: Any) -> dict[str, float]:
    config = GANTrainingConfig(steps=steps, **{**FAST, **overrides})  # type: ignore[arg-type]
    return train_acwgan_gp(data, out, config, device=CPU, progress=False, extra_metadata={"dataset": "test-slice"})


def generator_tensors(out: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(out / "generator.safetensors").tensors


@pytest.fixture(scope="module")
def slice256(fashion_train: TensorDataset) -> TensorDataset:
    return fashion_train.subset(256)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, slice256: TensorDataset) -> dict[str, Any]:
    """Three steps straight through, and two steps then a resume to three (counting the steps run)."""
    root = tmp_path_factory.mktemp("gan")
    metrics = train(slice256, root / "straight", steps=3)
    train(slice256, root / "resumed", steps=2)
    calls: list[int] = []
    original = gan_training.gradient_penalty
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gan_training, "gradient_penalty", lambda *a: calls.append(1) or original(*a))
        train(slice256, root / "resumed", steps=3)
        steps_after_resume = len(calls)
        train(slice256, root / "resumed", steps=3)  # already done: nothing to do
        steps_when_done = len(calls) - steps_after_resume
    return {
        "straight": root / "straight",
        "resumed": root / "resumed",
        "metrics": metrics,
        "steps_after_resume": steps_after_resume,
        "steps_when_done": steps_when_done,
    }


def test_writes_every_file(runs: dict[str, Any]) -> None:
    out = runs["straight"]
    assert set(runs["metrics"]) == {"loss_D", "loss_G", "loss_f", "wasserstein", "gp"}
    assert {p.name for p in out.iterdir()} == {
        "state.pt",
        "generator.safetensors",
        "aux_classifier.safetensors",
        "samples",
        "log.jsonl",
        "complete.json",
    }
    # Samples every 2 steps and at the end: 8 per class in rows of 8, 28x28 tiles with 2-pixel padding.
    samples = sorted(p.name for p in (out / "samples").iterdir())
    assert samples == ["step_000002.png", "step_000003.png"]
    with Image.open(out / "samples" / "step_000003.png") as image:
        assert image.size == (8 * 28 + 9 * 2, 10 * 28 + 11 * 2)
    assert load_training_state(out / "state.pt")["step"] == 3

    generator = load_generator(out / "generator.safetensors")
    assert isinstance(generator, ACWGANGPGenerator) and not generator.training
    z = generator.sample_z(4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        images = generator(z, torch.arange(4))
    assert images.shape == (4, 1, 28, 28) and 0 <= images.min() and images.max() <= 1
    training = load_checkpoint(out / "generator.safetensors").training
    assert training["step"] == 3 and training["dataset"] == "test-slice" and training["config"]["steps"] == 3

    assert load_checkpoint(out / "aux_classifier.safetensors").kind == "acwgan_gp.aux_classifier"
    classifier = load_classifier(out / "aux_classifier.safetensors")
    assert isinstance(classifier, AuxiliaryClassifier) and classifier(images).shape == (4, 10)


def test_resume_continues_the_step_count(runs: dict[str, Any]) -> None:
    assert runs["steps_after_resume"] == 1  # one more generator step (one critic step each), not three
    assert runs["steps_when_done"] == 0
    assert load_training_state(runs["resumed"] / "state.pt")["step"] == 3
    assert load_checkpoint(runs["resumed"] / "generator.safetensors").training["step"] == 3
    assert sorted(p.name for p in (runs["resumed"] / "samples").iterdir()) == ["step_000002.png", "step_000003.png"]


def test_resumed_training_equals_uninterrupted_training(runs: dict[str, Any]) -> None:
    straight, resumed = generator_tensors(runs["straight"]), generator_tensors(runs["resumed"])
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name


def test_number_of_classes_comes_from_the_data(tmp_path: Path, slice256: TensorDataset) -> None:
    keep = slice256.labels < 4
    train(TensorDataset(slice256.images[keep], slice256.labels[keep]), tmp_path, steps=1)
    assert load_generator(tmp_path / "generator.safetensors").num_classes == 4


def test_seed_makes_training_reproducible(tmp_path: Path, slice256: TensorDataset) -> None:
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        train(slice256, tmp_path / name, steps=1, seed=seed)
    a, b, c = (generator_tensors(tmp_path / n) for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_divergence_stops_training_and_keeps_the_last_good_state(
    tmp_path: Path, slice256: TensorDataset, monkeypatch: pytest.MonkeyPatch, bad: float
) -> None:
    calls = []
    original = gan_training.gradient_penalty

    def poisoned(*args: Any) -> torch.Tensor:
        calls.append(1)
        value = original(*args)
        return value * bad if len(calls) == 2 else value  # the critic step of generator step 2

    monkeypatch.setattr(gan_training, "gradient_penalty", poisoned)
    with pytest.raises(TrainingDivergedError, match=r"diverged at generator step 2: \{'loss_D'"):
        train(slice256, tmp_path, steps=4, checkpoint_every=1)
    assert load_training_state(tmp_path / "state.pt")["step"] == 1
    assert load_checkpoint(tmp_path / "generator.safetensors").training["step"] == 1


def test_nan_in_the_data_is_caught(tmp_path: Path, slice256: TensorDataset) -> None:
    poisoned = TensorDataset(torch.full_like(slice256.images, float("nan")), slice256.labels)
    with pytest.raises(TrainingDivergedError, match=r"diverged at generator step 1"):
        train(poisoned, tmp_path, steps=2, checkpoint_every=1)
    assert not (tmp_path / "state.pt").exists()


def test_diverged_error_is_a_runtime_error() -> None:
    assert issubclass(TrainingDivergedError, RuntimeError)


@pytest.mark.slow
def test_log_every_50_steps(tmp_path: Path, slice256: TensorDataset) -> None:
    train(slice256, tmp_path, steps=50, sample_every=1000, checkpoint_every=1000)
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [50]
    assert set(lines[0]) == {"step", "loss_D", "loss_G", "loss_f", "wasserstein", "gp"}
