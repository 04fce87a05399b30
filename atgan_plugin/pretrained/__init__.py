"""Checkpoints shipped with the package, trained by our own CLI (see ``README.md`` beside this file).

Files per dataset folder: ``generator.safetensors`` (AC-WGAN_GP G_orig), ``aux_classifier.safetensors``,
``model_a.safetensors`` (target, normal training) and ``oracle.safetensors`` (realism judge,
adversarially trained, used nowhere else), each with a ``.json`` training record, and ``SHA256SUMS``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

__all__ = ["NAMES", "load_pretrained_classifier", "load_pretrained_generator", "pretrained_path"]

ROOT = Path(__file__).resolve().parent
NAMES = ("generator", "aux_classifier", "model_a", "oracle")


def pretrained_path(name: str, dataset: str = "fashion-mnist") -> Path:
    """Path of a shipped checkpoint; ``FileNotFoundError`` naming what is shipped when absent."""
    if name not in NAMES:
        raise ValueError(f"unknown pretrained checkpoint {name!r}; shipped: {NAMES}")
    path = ROOT / dataset / f"{name}.safetensors"
    if not path.is_file():
        shipped = sorted(p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith("_"))
        raise FileNotFoundError(f"no pretrained {name} for {dataset!r} (datasets shipped: {shipped})")
    return path


def load_pretrained_generator(dataset: str = "fashion-mnist", device: str | torch.device = "cpu") -> nn.Module:
    from atgan_plugin.adapters import load_generator

    return load_generator(pretrained_path("generator", dataset), device=device)


def load_pretrained_classifier(name: str = "model_a", dataset: str = "fashion-mnist", device: str | torch.device = "cpu") -> nn.Module:
    from atgan_plugin.models import load_classifier

    return load_classifier(pretrained_path(name, dataset), device=device)
