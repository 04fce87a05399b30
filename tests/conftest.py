"""Shared fixtures: real Fashion-MNIST slices, a tiny trained target, generators, shipped checkpoints.

Everything here is built in code or trained on a slice of the real data in a few seconds on one
CPU core; nothing is downloaded. The shipped checkpoints (``atgan_plugin/pretrained``) are used
when present and their tests skip themselves when they are not.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from atgan_plugin.adapters import ACWGANGPGenerator
from atgan_plugin.adapters.acwgan_gp import Generator
from atgan_plugin.attack import atgan as attack_module
from atgan_plugin.attack import guards as guards_module
from atgan_plugin.attack.guards import DistillConfig
from atgan_plugin.data import TensorDataset, load_dataset
from atgan_plugin.models import build_classifier
from atgan_plugin.paper.classifier_training import ClassifierTrainingConfig, accuracy, train_classifier

CPU = torch.device("cpu")

# Sizes of the real-data slices; the tiny target reaches about 0.78 test accuracy on them.
TRAIN_SLICE = 10_000
TEST_SLICE = 1_000


# ------------------------------------------------------------------------------------------------
# Distilled guards: guard="auto" distils one for every generator that carries none. The tests keep the
# recipe tiny and the cache in this session's temp folder (shared by the tests, never the user's ~/.cache).

TEST_DISTILL = DistillConfig(steps=20, batch_size=16, width=4)


@pytest.fixture(autouse=True, scope="session")
def _small_guard_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Session-wide, so that module- and session-scoped fixtures that fit get it too."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(guards_module, "DEFAULT_DISTILL", TEST_DISTILL)
        patch.setenv("ATGAN_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "atgan-cache"))
        yield


# ------------------------------------------------------------------------------------------------
# Markers: `gpu` tests skip themselves on machines without CUDA.


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA; no GPU on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request: pytest.FixtureRequest) -> torch.device:
    """Each test that takes it runs on CPU and, where there is one, on CUDA."""
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs CUDA; no GPU on this machine")
    return torch.device(request.param)


# ------------------------------------------------------------------------------------------------
# Real data (Debian's dataset-fashion-mnist; `.ci/setup` installs it).


@pytest.fixture(scope="session")
def fashion_full() -> dict[str, TensorDataset]:
    """Both full splits, read once per session."""
    return {split: load_dataset("fashion-mnist", split) for split in ("train", "test")}


@pytest.fixture(scope="session")
def fashion_train(fashion_full: dict[str, TensorDataset]) -> TensorDataset:
    return fashion_full["train"].subset(TRAIN_SLICE)


@pytest.fixture(scope="session")
def fashion_test(fashion_full: dict[str, TensorDataset]) -> TensorDataset:
    return fashion_full["test"].subset(TEST_SLICE)


# ------------------------------------------------------------------------------------------------
# Target models.


@pytest.fixture(scope="session")
def tiny_target(fashion_train: TensorDataset, fashion_test: TensorDataset) -> nn.Module:
    """Model D (the MLP) trained for two epochs on the train slice; eval mode. Never modify it:
    tests that change weights work on ``copy.deepcopy(tiny_target)``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_classifier("D")
        config = ClassifierTrainingConfig(epochs=2, batch_size=32, lr=1e-3, seed=0)
        train_classifier(model, fashion_train, fashion_test, config, device=CPU, progress=False)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_guard(fashion_train: TensorDataset, fashion_test: TensorDataset) -> nn.Module:
    """A second classifier (Model A, one epoch, another seed) to serve as the fit's guard; eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model = build_classifier("A")
        config = ClassifierTrainingConfig(epochs=1, batch_size=64, lr=1e-3, seed=1)
        train_classifier(model, fashion_train.subset(3000), fashion_test, config, device=CPU, progress=False)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_target_accuracy(tiny_target: nn.Module, fashion_test: TensorDataset) -> float:
    return accuracy(tiny_target, fashion_test, device=CPU)


# ------------------------------------------------------------------------------------------------
# Generators.


class ClassMeanGenerator(nn.Module):
    """A minimal :class:`~atgan_plugin.adapters.ConditionalGenerator` written for the tests.

    ``G(z, y) = sigmoid(logit(mean image of class y) + W z)``: images that look like blurred
    Fashion-MNIST items of class ``y`` (a trained classifier mostly recognises them), with a
    little variation from ``z``. Small enough that an AT-GAN fit takes a fraction of a second,
    and it proves the attack works with any adapter, not just ours.
    """

    def __init__(self, class_means: torch.Tensor, z_dim: int = 8, spread: float = 0.5):
        super().__init__()
        self.z_dim = z_dim
        self.num_classes = int(class_means.shape[0])
        self.image_shape = tuple(int(s) for s in class_means.shape[1:])
        self.class_logits = nn.Parameter(torch.logit(class_means.clamp(0.02, 0.98)).flatten(1).clone())
        self.mix = nn.Linear(z_dim, self.class_logits.shape[1], bias=False)
        nn.init.normal_(self.mix.weight, std=spread / math.sqrt(z_dim))

    def sample_z(
        self, n: int, *, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> torch.Tensor:
        z = torch.randn(n, self.z_dim, generator=generator)
        return z.to(device if device is not None else self.class_logits.device)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = self.class_logits[y] + self.mix(z)
        return torch.sigmoid(logits).view(-1, *self.image_shape)

    def attack_parameters(self) -> Iterator[nn.Parameter]:
        return self.parameters()


@pytest.fixture(scope="session")
def class_means(fashion_train: TensorDataset) -> torch.Tensor:
    return torch.stack([fashion_train.images[fashion_train.labels == k].mean(0) for k in range(10)])


@pytest.fixture(scope="session")
def make_tiny_generator(class_means: torch.Tensor) -> Callable[..., ClassMeanGenerator]:
    """Factory: ``make_tiny_generator(num_classes=10, z_dim=8, seed=0)``, a fresh generator in eval mode."""

    def make(num_classes: int = 10, z_dim: int = 8, seed: int = 0) -> ClassMeanGenerator:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return ClassMeanGenerator(class_means[:num_classes], z_dim=z_dim).eval()

    return make


@pytest.fixture
def tiny_generator(make_tiny_generator: Callable[..., ClassMeanGenerator]) -> ClassMeanGenerator:
    """A fresh :class:`ClassMeanGenerator` (10 classes, fixed seed), eval mode."""
    return make_tiny_generator()


@pytest.fixture(scope="session")
def _random_generator_master() -> ACWGANGPGenerator:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return ACWGANGPGenerator(Generator()).eval()


@pytest.fixture
def random_generator(_random_generator_master: ACWGANGPGenerator) -> ACWGANGPGenerator:
    """An untrained AC-WGAN_GP generator behind our adapter (fixed seed), eval mode; a fresh copy per test."""
    return copy.deepcopy(_random_generator_master)


# ------------------------------------------------------------------------------------------------
# Shipped checkpoints: skip when not shipped yet, assert for real once they are.


def _pretrained_or_skip(name: str) -> None:
    from atgan_plugin.pretrained import pretrained_path

    try:
        pretrained_path(name)
    except FileNotFoundError as error:
        pytest.skip(f"shipped checkpoint not present: {error}")


@pytest.fixture(scope="session")
def pretrained_generator() -> nn.Module:
    from atgan_plugin.pretrained import load_pretrained_generator

    _pretrained_or_skip("generator")
    return load_pretrained_generator()


@pytest.fixture(scope="session")
def pretrained_model_a() -> nn.Module:
    from atgan_plugin.pretrained import load_pretrained_classifier

    _pretrained_or_skip("model_a")
    return load_pretrained_classifier("model_a")


@pytest.fixture(scope="session")
def pretrained_oracle() -> nn.Module:
    from atgan_plugin.pretrained import load_pretrained_classifier

    _pretrained_or_skip("oracle")
    return load_pretrained_classifier("oracle")


@pytest.fixture
def fit_calls(monkeypatch: pytest.MonkeyPatch) -> list[int | None]:
    """Records the target of every real fit (cache misses) the attack makes, alone or together."""
    calls: list[int | None] = []
    original = attack_module.fit_attack_generators

    def counting(generator: Any, classifier: Any, targets: Any, **kwargs: Any) -> Any:
        calls.extend(targets)
        return original(generator, classifier, targets, **kwargs)

    monkeypatch.setattr(attack_module, "fit_attack_generators", counting)
    return calls


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder of ``atgan demo`` on the shipped checkpoints at tiny sizes (a 20-step fit, so two
    history records; 16 examples): options.json, report.json, the grids, g_attack.safetensors and
    the report.html whose path the demo printed. Read it, never write into it: tests that add
    files work on a copy (``shutil.copytree``)."""
    from click.testing import CliRunner

    from atgan_plugin.cli import main

    for name in ("generator", "model_a", "oracle", "aux_classifier"):
        _pretrained_or_skip(name)
    runs = tmp_path_factory.mktemp("demo-runs")
    args = [
        "demo",
        "--n",
        "16",
        "--steps",
        "20",
        "--batch-size",
        "8",
        "--device",
        "cpu",
        "--no-progress",
        "--runs-dir",
        str(runs),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    (run_dir,) = runs.iterdir()
    assert f"report: {run_dir / 'report.html'}" in result.output and (run_dir / "report.html").is_file()
    return run_dir
