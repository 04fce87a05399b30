"""Checkpoints shipped with the package, trained by our own CLI (see ``README.md`` beside this file).

Files per dataset folder: ``generator.safetensors`` (AC-WGAN_GP G_orig, carrying its three default guards: the
auxiliary classifier, a guard distilled from it and ``pgd_guard``), ``aux_classifier.safetensors``,
``pgd_guard.safetensors`` (the distilled guard's small network, PGD-trained on the real training images),
``model_a.safetensors`` (target, normal training), ``oracle.safetensors`` (realism judge,
adversarially trained, used nowhere else), ``realism_features.safetensors`` (PGD-trained; its features measure the
Fréchet distance of :mod:`atgan_plugin.metrics.realism`), ``robust_guard.safetensors`` (Model B, adversarially
trained: the guard of ``atgan reproduce``) and ``robust_guard_2.safetensors`` (Model A, PGD-trained: the
second guard of its transferable fit), each with a ``.json`` training record, and ``SHA256SUMS``;
``targets/`` holds the 16 targets of ``atgan reproduce`` (Models A–D × Nor./Adv./Ens./Iter.).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

__all__ = [
    "NAMES",
    "load_pretrained_classifier",
    "load_pretrained_generator",
    "pretrained_path",
    "pretrained_targets_dir",
    "resolve_checkpoint",
]

ROOT = Path(__file__).resolve().parent
NAMES = (
    "generator",
    "aux_classifier",
    "pgd_guard",
    "model_a",
    "oracle",
    "realism_features",
    "robust_guard",
    "robust_guard_2",
)


def pretrained_path(name: str, dataset: str = "fashion-mnist") -> Path:
    """Path of a shipped checkpoint; ``FileNotFoundError`` naming what is shipped when absent."""
    if name not in NAMES:
        raise ValueError(f"unknown pretrained checkpoint {name!r}; shipped: {NAMES}")
    path = ROOT / dataset / f"{name}.safetensors"
    if not path.is_file():
        shipped = sorted(p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith("_"))
        raise FileNotFoundError(f"no pretrained {name} for {dataset!r} (datasets shipped: {shipped})")
    return path


def pretrained_targets_dir(dataset: str = "fashion-mnist") -> Path:
    """Folder of the shipped target checkpoints of ``atgan reproduce`` (``A-nor.safetensors`` … ``D-iter``;
    see the ``README.md`` there); ``FileNotFoundError`` when the dataset has none."""
    folder = ROOT / dataset / "targets"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"no shipped target checkpoints for {dataset!r}; pass --checkpoints DIR "
            f"(docs/results/README.md says how to train them)"
        )
    return folder


def resolve_checkpoint(path: str | Path | None, name: str, dataset: str = "fashion-mnist") -> Path:
    """``path`` when one is given, else the shipped checkpoint ``name`` of ``dataset``.

    The one place where "no checkpoint given" becomes "the shipped one": the CLI, the examples and
    the benchmarks all resolve their ``--generator``/``--model``/... options here. Raises
    ``FileNotFoundError`` naming what is shipped when the fallback is absent.
    """
    return Path(path) if path is not None else pretrained_path(name, dataset)


def load_pretrained_generator(dataset: str = "fashion-mnist", device: str | torch.device = "cpu") -> nn.Module:
    """The shipped G_orig of ``dataset`` (with the guards it carries), in eval mode on ``device``."""
    from atgan_plugin.adapters import load_generator

    return load_generator(pretrained_path("generator", dataset), device=device)


def load_pretrained_classifier(
    name: str = "model_a", dataset: str = "fashion-mnist", device: str | torch.device = "cpu"
) -> nn.Module:
    """The shipped classifier ``name`` (one of :data:`NAMES` but ``generator``), in eval mode on ``device``."""
    from atgan_plugin.models import load_classifier

    return load_classifier(pretrained_path(name, dataset), device=device)
