"""Target classifiers (Tramèr et al. 2018, Models A–D), the realism oracle and the guards' small network.

Every model takes images ``(N, 1, 28, 28)`` in [0, 1] and returns logits ``(N, num_classes)``.
Models A–D are Tramèr et al.'s (their official code), the targets of the AT-GAN paper's appendix D;
the oracle's architecture (batch-normalised VGG-style)
is used nowhere else, so it shares no weights and no inductive quirks with the targets. The guard's
network (:func:`guard_net`) is distilled from a generator, or, as architecture ``"guard"``, trained on
real data like the others (the shipped generator's PGD-trained guard).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from atgan_plugin import cifar_models as cifar
from atgan_plugin.adapters import acwgan_gp
from atgan_plugin.checkpoints import Architecture, Checkpoint, load_module, module_from_checkpoint, save_checkpoint
from atgan_plugin.limits import Fields, Int, OneOf

__all__ = [
    "ARCHITECTURES",
    "AUX_CLASSIFIER_KIND",
    "CLASSIFIER_KINDS",
    "CLASSIFIER_SCHEMA",
    "GUARD_KIND",
    "build_classifier",
    "build_guard",
    "guard_parts",
    "guards_from_parts",
    "load_classifier",
    "save_classifier",
]

AUX_CLASSIFIER_KIND = "acwgan_gp.aux_classifier"  # written by atgan_plugin.paper.gan_training


def model_a(num_classes: int = 10, in_channels: int = 1) -> nn.Sequential:
    # 28 -> 24 -> 20 (valid 5x5 convolutions); 64*20*20 features.
    return nn.Sequential(
        nn.Conv2d(in_channels, 64, 5),
        nn.ReLU(),
        nn.Conv2d(64, 64, 5),
        nn.ReLU(),
        nn.Dropout(0.25),
        nn.Flatten(),
        nn.Linear(64 * 20 * 20, 128),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(128, num_classes),
    )


def model_b(num_classes: int = 10, in_channels: int = 1) -> nn.Sequential:
    # 28 -> 14 ("same", stride 2) -> 5 (6x6, stride 2) -> 1 (5x5); 128 features.
    return nn.Sequential(
        nn.Dropout(0.2),
        nn.Conv2d(in_channels, 64, 8, stride=2, padding=3),
        nn.ReLU(),
        nn.Conv2d(64, 128, 6, stride=2),
        nn.ReLU(),
        nn.Conv2d(128, 128, 5),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Flatten(),
        nn.Linear(128, num_classes),
    )


def model_c(num_classes: int = 10, in_channels: int = 1) -> nn.Sequential:
    # 28 -> 26 -> 24 (valid 3x3 convolutions); 64*24*24 features.
    return nn.Sequential(
        nn.Conv2d(in_channels, 128, 3),
        nn.ReLU(),
        nn.Conv2d(128, 64, 3),
        nn.ReLU(),
        nn.Dropout(0.25),
        nn.Flatten(),
        nn.Linear(64 * 24 * 24, 128),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(128, num_classes),
    )


def model_d(num_classes: int = 10, in_channels: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_channels * 28 * 28
    for _ in range(4):
        layers += [nn.Linear(width, 300), nn.ReLU(), nn.Dropout(0.5)]
        width = 300
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def oracle_net(num_classes: int = 10, in_channels: int = 1) -> nn.Sequential:
    """Our choice: a batch-normalised VGG-style net, unlike any target, for judging realism."""

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(
        *block(in_channels, 32),
        *block(32, 32),
        nn.MaxPool2d(2),  # 28 -> 14
        *block(32, 64),
        *block(64, 64),
        nn.MaxPool2d(2),  # 14 -> 7
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 256),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(256, num_classes),
    )


def guard_net(num_classes: int = 10, in_channels: int = 1, width: int = 32) -> nn.Sequential:
    """Our choice: the small guard distilled from a generator (:mod:`atgan_plugin.attack.guards`).

    Stored under :data:`GUARD_KIND`.

    Any image size: two stride-2 convolutions, then a 2×2 average pool, so 28×28 and 32×32 (or
    larger) images share one architecture; ``width`` channels first, 4·``width`` last.
    """
    w = width
    return nn.Sequential(
        nn.Conv2d(in_channels, w, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(w, 2 * w, 3, stride=2, padding=1),  # H -> H/2
        nn.ReLU(),
        nn.Conv2d(2 * w, 2 * w, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1),  # H/2 -> H/4
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * w, num_classes),
    )


# "guard": the guard's architecture trained on real data (the shipped generator's PGD-trained guard).
ARCHITECTURES = {"A": model_a, "B": model_b, "C": model_c, "D": model_d, "oracle": oracle_net, "guard": guard_net}

# Bounds on a "classifier" checkpoint's config, checked before the network is built from it.
CLASSIFIER_SCHEMA = Fields(
    {"architecture": OneOf(tuple(ARCHITECTURES)), "num_classes": Int(1, 1000), "in_channels": Int(1, 16)},
    required=frozenset({"architecture"}),
)

GUARD_KIND = "atgan.distilled_guard"  # guard_net, distilled from a generator
GUARD_SCHEMA = Fields({"num_classes": Int(1, 1000), "in_channels": Int(1, 16), "width": Int(1, 256)})


def _remember_checkpoint_meta(module: nn.Module, kind: str, config: Mapping[str, Any]) -> None:
    """Records on ``module`` what a checkpoint needs to rebuild it (read by :func:`guard_parts` and the guards)."""
    # nn.Module's __getattr__ is annotated Tensor | Module, so mypy takes that as the attribute's type;
    # its __setattr__ stores any other value as a plain attribute.
    module.checkpoint_meta = {"kind": kind, "config": dict(config)}  # type: ignore[assignment]


def build_classifier(architecture: str, num_classes: int = 10, in_channels: int = 1) -> nn.Sequential:
    """A freshly initialised classifier of ``architecture`` ("A", "B", "C", "D", "oracle" or "guard")."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; known: {sorted(ARCHITECTURES)}")
    model = ARCHITECTURES[architecture](num_classes=num_classes, in_channels=in_channels)
    config = {"architecture": architecture, "num_classes": num_classes, "in_channels": in_channels}
    _remember_checkpoint_meta(model, "classifier", config)  # so a generator checkpoint can carry it
    return model


def build_guard(num_classes: int = 10, in_channels: int = 1, width: int = 32) -> nn.Sequential:
    """A freshly initialised :func:`guard_net`, stored under :data:`GUARD_KIND`."""
    model = guard_net(num_classes=num_classes, in_channels=in_channels, width=width)
    _remember_checkpoint_meta(
        model, GUARD_KIND, {"num_classes": num_classes, "in_channels": in_channels, "width": width}
    )
    return model


def save_classifier(
    path: str | Path, model: nn.Module, config: dict[str, Any], training: dict[str, Any], *, half: bool = False
) -> None:
    save_checkpoint(path, Checkpoint("classifier", dict(model.state_dict()), config, training), half=half)


def load_classifier(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuilds a classifier from its checkpoint, in eval mode, on ``device``.

    Reads ``atgan train-classifier`` checkpoints, AC-WGAN_GP's auxiliary classifier
    (``aux_classifier.safetensors`` of ``atgan train-gan``, the attack's usual guard) and the
    CIFAR-10 classifiers of :mod:`atgan_plugin.cifar_models`. The file's kind picks the builder; its
    config and tensor shapes are checked before anything is allocated.
    """
    module, checkpoint = load_module(path, CLASSIFIER_KINDS)
    _remember_checkpoint_meta(module, checkpoint.kind, checkpoint.config)
    return module.to(device).eval()


CLASSIFIER_KINDS: dict[str, Architecture] = {
    "classifier": Architecture(build_classifier, CLASSIFIER_SCHEMA),
    GUARD_KIND: Architecture(guard_net, GUARD_SCHEMA),
    AUX_CLASSIFIER_KIND: Architecture(acwgan_gp.AuxiliaryClassifier, acwgan_gp.CONFIG_SCHEMA),
    cifar.CHECKPOINT_KIND: cifar.ARCHITECTURE,
}


def guard_parts(guards: Sequence[nn.Module]) -> dict[str, Checkpoint]:
    """Checkpoint parts ``guard0``, ``guard1``, … so that a generator file carries its guards.

    Each guard must be a classifier this package can rebuild (made by :func:`build_classifier` or
    loaded by :func:`load_classifier`); any other module gets a ``TypeError`` naming it.
    """
    parts = {}
    for i, guard in enumerate(guards):
        meta = getattr(guard, "checkpoint_meta", None)
        if not isinstance(meta, dict):
            raise TypeError(
                f"guard {i} ({type(guard).__name__}) cannot be stored in a checkpoint: only classifiers "
                "built by atgan_plugin.models or loaded from its checkpoints can"
            )
        parts[f"guard{i}"] = Checkpoint(meta["kind"], dict(guard.state_dict()), dict(meta["config"]))
    return parts


def guards_from_parts(checkpoint: Checkpoint, where: str | Path) -> tuple[nn.Module, ...]:
    """The guards a generator checkpoint carries (its parts ``guard0``, ``guard1``, …, in order), in eval
    mode on CPU; their architectures were checked when the file was read (:data:`CLASSIFIER_KINDS`)."""
    names = sorted((name for name in checkpoint.parts if name.startswith("guard")), key=lambda name: (len(name), name))
    guards = []
    for name in names:
        part = checkpoint.parts[name]
        module = module_from_checkpoint(part, CLASSIFIER_KINDS[part.kind], f"{where} (part {name})")
        _remember_checkpoint_meta(module, part.kind, part.config)
        guards.append(module.eval().requires_grad_(False))
    return tuple(guards)
