"""CIFAR-10: the paper's settings, the data from a local torchvision root, and the targets (WideResNet and a small
CNN, defined in :mod:`atgan_plugin.cifar_models`).

paper (appendix D.5, Table 11): the CIFAR-10 target is "wide ResNet w32-10" (normal and
PGD-adversarial training); AT-GAN uses α = 3, β = 2 ("epochs" = 1000), the baselines FGSM
ε = 0.03 and PGD ε = 0.03, step 0.0075, 20 steps (appendix D.1).

Every model takes images ``(N, 3, 32, 32)`` in [0, 1] (it normalises them itself with the
CIFAR-10 channel statistics) and returns logits ``(N, 10)``. Nothing is ever downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision

from atgan_plugin.attack.config import TransferConfig
from atgan_plugin.cifar_models import (
    CHECKPOINT_KIND,
    CIFAR_ARCHITECTURES,
    SmallCifarCNN,
    WideResNet,
    build_cifar_classifier,
    load_cifar_classifier,
    save_cifar_classifier,
)
from atgan_plugin.data import DatasetNotFoundError, TensorDataset

__all__ = [
    "CHECKPOINT_KIND",
    "CIFAR10_ATTACK_DEFAULTS",
    "CIFAR10_CLASSES",
    "CIFAR10_TRANSFER",
    "CIFAR_ARCHITECTURES",
    "CifarAttackDefaults",
    "SmallCifarCNN",
    "WideResNet",
    "build_cifar_classifier",
    "load_cifar10",
    "load_cifar_classifier",
    "save_cifar_classifier",
]

# Native CIFAR-10 label order (also the order of NVIDIA's conditional cifar10.pkl).
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class CifarAttackDefaults:
    """The paper's CIFAR-10 settings (appendix D.1). ``steps`` for AT-GAN is the paper's "epochs"."""

    atgan_alpha: float = 3.0
    atgan_beta: float = 2.0
    atgan_epochs: int = 1000
    fgsm_eps: float = 0.03
    pgd_eps: float = 0.03
    pgd_step: float = 0.0075
    pgd_steps: int = 20


CIFAR10_ATTACK_DEFAULTS = CifarAttackDefaults()
# The paper's CIFAR-10 attack, ``ATGANAttack(..., config=CIFAR10_TRANSFER)``: α = 3, β = 2. our choice: the number
# of fit steps is left at the paper preset's (an "epoch" is undefined).
CIFAR10_TRANSFER = TransferConfig.paper(
    alpha=CIFAR10_ATTACK_DEFAULTS.atgan_alpha, beta=CIFAR10_ATTACK_DEFAULTS.atgan_beta
)


def load_cifar10(root: str | Path, split: str = "train") -> TensorDataset:
    """CIFAR-10 ``split`` ("train" or "test") from a torchvision root; never downloads.

    Expects torchvision's layout: ``<root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``
    (the extracted ``cifar-10-python.tar.gz``).

    Shape: images ``(N, 3, 32, 32)`` float32 in [0, 1], labels ``(N,)`` int64 in [0, 10).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    folder = root / "cifar-10-batches-py"
    needed = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    missing = [name for name in [*needed, "batches.meta"] if not (folder / name).is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"CIFAR-10 ({split}) not found: expected {folder}/ holding {', '.join(needed)} and batches.meta "
            f"(missing: {', '.join(missing)}); extract cifar-10-python.tar.gz into {root} (nothing is downloaded)"
        )
    try:
        dataset = torchvision.datasets.CIFAR10(str(root), train=(split == "train"), download=False)
    except RuntimeError as error:  # torchvision: corrupt or incomplete files
        raise DatasetNotFoundError(f"CIFAR-10 under {folder} is unreadable: {error}") from error
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
    return TensorDataset(images, torch.as_tensor(dataset.targets, dtype=torch.int64))
