"""atgan_plugin.paper.cifar: WideResNet and the small CNN, CIFAR-10 from a local root, the paper's settings."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from atgan_plugin.attack.config import TransferConfig
from atgan_plugin.checkpoints import CheckpointError
from atgan_plugin.cifar_models import blocks_per_stage
from atgan_plugin.data import DatasetNotFoundError
from atgan_plugin.models import build_classifier, save_classifier
from atgan_plugin.paper.cifar import (
    CIFAR10_ATTACK_DEFAULTS,
    CIFAR10_TRANSFER,
    SmallCifarCNN,
    WideResNet,
    build_cifar_classifier,
    load_cifar10,
    load_cifar_classifier,
    save_cifar_classifier,
)


def test_paper_settings() -> None:
    assert CIFAR10_TRANSFER == TransferConfig.paper(alpha=3.0, beta=2.0)
    d = CIFAR10_ATTACK_DEFAULTS
    assert (d.fgsm_eps, d.pgd_eps, d.pgd_step, d.pgd_steps, d.atgan_epochs) == (0.03, 0.03, 0.0075, 20, 1000)


@pytest.mark.parametrize("depth, blocks", [(32, 5), (34, 5), (28, 4), (16, 2), (20, 3)])
def test_depth_conventions(depth: int, blocks: int) -> None:
    assert blocks_per_stage(depth) == blocks


def test_bad_depth_is_named() -> None:
    with pytest.raises(ValueError, match="got 30"):
        WideResNet(depth=30)


def test_wrn_32_10_is_madrys_w32_10() -> None:
    # 5 blocks per stage of 160, 320, 640 channels: about 46.2 M parameters.
    model = WideResNet()
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(46.16e6, rel=1e-3)
    assert [len(stage) for stage in model.stages] == [5, 5, 5]
    assert model.fc.in_features == 640


@pytest.mark.parametrize(
    "model, size",
    [
        (WideResNet(depth=10, widen_factor=1), 32),
        (SmallCifarCNN(width=4), 32),
        (SmallCifarCNN(width=4, image_size=16, num_classes=4), 16),
    ],
)
def test_models_map_unit_images_to_logits(model: torch.nn.Module, size: int) -> None:
    out = model.eval()(torch.rand(3, 3, size, size))
    assert out.shape == (
        3,
        model.fc.out_features if isinstance(model, WideResNet) else model.classifier[-1].out_features,
    )
    with pytest.raises(ValueError, match=r"expected images \(N, 3, H, W\), got \(3, 1, 32, 32\)"):
        model(torch.rand(3, 1, 32, 32))


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = build_cifar_classifier("wrn", depth=10, widen_factor=1).eval()
    path = tmp_path / "wrn.safetensors"
    save_cifar_classifier(path, model, {"architecture": "wrn", "depth": 10, "widen_factor": 1})
    loaded = load_cifar_classifier(path)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    with pytest.raises(ValueError, match="unknown CIFAR architecture 'vgg'"):
        build_cifar_classifier("vgg")
    save_classifier(tmp_path / "a.safetensors", build_classifier("D"), {"architecture": "D"}, {})
    with pytest.raises(CheckpointError, match="expected 'cifar.classifier'"):
        load_cifar_classifier(tmp_path / "a.safetensors")


def test_missing_data_names_the_expected_layout(tmp_path: Path) -> None:
    with pytest.raises(
        DatasetNotFoundError, match=r"cifar-10-batches-py/ holding test_batch and batches\.meta"
    ) as info:
        load_cifar10(tmp_path, "test")
    assert "nothing is downloaded" in str(info.value)


def test_reads_a_torchvision_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A miniature CIFAR-10 in torchvision's layout (the real files' checksums are skipped).
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, size=(5, 3 * 32 * 32), dtype=np.uint8)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": data, "labels": [3, 1, 4, 1, 5]}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(
            {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]},
            f,
        )
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args, **kwargs: True)
    dataset = load_cifar10(tmp_path, "test")
    assert dataset.images.shape == (5, 3, 32, 32) and dataset.images.dtype == torch.float32
    assert torch.equal(dataset.labels, torch.tensor([3, 1, 4, 1, 5]))
    # Channel-major rows: the first 1024 bytes are the red plane.
    assert torch.equal(dataset.images[0, 0].flatten(), torch.from_numpy(data[0, :1024]).float() / 255)
    assert 0 <= dataset.images.min() and dataset.images.max() <= 1


def test_the_cli_loader_reads_cifar_classifiers(tmp_path: Path) -> None:
    from atgan_plugin.models import load_classifier

    model = SmallCifarCNN(width=8).eval()
    save_cifar_classifier(tmp_path / "cnn.safetensors", model, {"architecture": "cnn", "width": 8})
    loaded = load_classifier(tmp_path / "cnn.safetensors")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
