#!/usr/bin/env python
"""Held-out networks for the benchmarks: targets and a realism judge that no default was chosen on.

    python benchmarks/heldout.py train --out heldout/              # CPU: about an hour on one core
    python benchmarks/heldout.py train --out heldout/ --names judge --device cuda

Three architectures used nowhere in the package, trained on the full Fashion-MNIST training set:

| name | network | training |
|---|---|---|
| ``normal`` | all-convolutional, global average pooling | plain cross-entropy, 4 epochs |
| ``pgd`` | Madry et al.'s MNIST network | PGD (ε 0.1, 10 steps of 0.025), 4 epochs |
| ``judge`` | a small ResNet (32/64 channels) | fast adversarial training (FGSM from a random start, ε 0.1), 4 epochs: the independent realism judge |

Each is written as ``OUT/NAME.safetensors`` (plain tensors, read back by :func:`load_heldout` without
executing code) with ``OUT/NAME.json``, its training record. The benchmarks that need an unseen target or an
independent judge (``realism_check.py``, ``fit_cost.py``) take these files.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from common import machine_lines
from safetensors.torch import load_file, save_file
from torch import nn

from atgan_plugin.data import load_dataset
from atgan_plugin.models import load_classifier
from atgan_plugin.paper.classifier_training import ClassifierTrainingConfig, accuracy, train_classifier
from atgan_plugin.utils import resolve_device

__all__ = ["HELD_OUT", "load_heldout", "load_network"]


def normal_net() -> nn.Module:
    """All-convolutional, global average pooling: (N, 1, 28, 28) -> (N, 10)."""
    return nn.Sequential(
        nn.Conv2d(1, 48, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(48, 96, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(96, 96, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(96, 192, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(192, 192, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(192, 10),
    )


def madry_net() -> nn.Module:
    """Madry et al.'s MNIST network: two 5x5 convolutions with max pooling, FC(1024)."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 1024),
        nn.ReLU(),
        nn.Linear(1024, 10),
    )


class _Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.a = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm_a = nn.BatchNorm2d(channels)
        self.b = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm_b = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.norm_b(self.b(F.relu(self.norm_a(self.a(x))))))


def small_resnet() -> nn.Module:
    """A small ResNet: 32 channels at 28x28, 64 at 14x14 and 7x7, global average pooling."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        _Residual(32),
        nn.Conv2d(32, 64, 3, stride=2, padding=1),
        nn.ReLU(),
        _Residual(64),
        nn.Conv2d(64, 64, 3, stride=2, padding=1),
        nn.ReLU(),
        _Residual(64),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    )


PGD = {"regime": "pgd", "epsilon": 0.1, "batch_size": 256, "lr": 2e-3}
HELD_OUT = {
    "normal": (normal_net, ClassifierTrainingConfig(epochs=4, batch_size=128, lr=1e-3, seed=31)),
    "pgd": (madry_net, ClassifierTrainingConfig(epochs=4, pgd_steps=10, pgd_step_size=0.025, seed=32, **PGD)),  # type: ignore[arg-type]
    "judge": (
        small_resnet,
        ClassifierTrainingConfig(epochs=4, regime="fgsm-rs", epsilon=0.1, batch_size=256, lr=2e-3, seed=33),
    ),
}


def load_heldout(path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """A held-out network from ``OUT/NAME.safetensors`` (its name picks the architecture), eval mode, frozen."""
    path = Path(path)
    if path.stem not in HELD_OUT:
        raise SystemExit(f"error: {path} is not one of the held-out networks {sorted(HELD_OUT)}")
    model = HELD_OUT[path.stem][0]()
    model.load_state_dict(load_file(str(path)))
    return model.to(device).eval().requires_grad_(False)


def load_network(path: Path, device: torch.device) -> nn.Module:
    """A held-out network by its file name, else a classifier file of the package; eval mode, frozen."""
    if path.stem in HELD_OUT:
        return load_heldout(path, device)
    return load_classifier(path, device).eval().requires_grad_(False)


def train(names: list[str], out: Path, device: torch.device, data_dir: str | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    train_set = load_dataset("fashion-mnist", "train", data_dir)
    test_set = load_dataset("fashion-mnist", "test", data_dir)
    for name in names:
        build, config = HELD_OUT[name]
        torch.manual_seed(config.seed)
        model = build()
        start = time.perf_counter()
        result = train_classifier(model, train_set, test_set, config, device=device, progress=False)
        seconds = time.perf_counter() - start
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(out / f"{name}.safetensors"))
        record = {
            "name": name,
            "test_accuracy": accuracy(load_heldout(out / f"{name}.safetensors", device), test_set, device=device),
            "history": result["history"],
            "config": asdict(config),
            "seconds": round(seconds, 1),
            "machine": machine_lines(device),
        }
        (out / f"{name}.json").write_text(json.dumps(record, indent=1))
        print(f"{name}: test accuracy {record['test_accuracy']:.4f} in {seconds:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["train"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--names", default=",".join(HELD_OUT), help="comma-separated subset of " + ",".join(HELD_OUT))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    names = [n for n in args.names.split(",") if n]
    unknown = sorted(set(names) - set(HELD_OUT))
    if unknown:
        raise SystemExit(f"error: unknown names {unknown}; known: {sorted(HELD_OUT)}")
    train(names, args.out, resolve_device(args.device), args.data_dir)


if __name__ == "__main__":
    main()
