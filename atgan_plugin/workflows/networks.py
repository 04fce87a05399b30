"""Loading what a command runs on: the networks (shipped ones for paths not given), the transfer
table's guards, the realism judge, and the attack the options describe."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from atgan_plugin.data import DATASETS, DatasetNotFoundError, load_dataset
from atgan_plugin.pretrained import resolve_checkpoint

if TYPE_CHECKING:  # imported lazily below: they pull in foolbox and advertorch
    from atgan_plugin.attack.atgan import ATGANAttack
    from atgan_plugin.attack.distributed import Distributed
    from atgan_plugin.metrics.realism import RobustFrechetDistance

__all__ = [
    "FIT_PARAMETERS",
    "SCALE_PARAMETERS",
    "SHIPPED_NAME",
    "TRANSFER_GUARDS",
    "build_attack",
    "checkpoint_path",
    "load_networks",
    "load_transfer_guards",
    "realism_judge",
]

# The shipped checkpoint standing in for each network a command reads (atgan_plugin/pretrained).
SHIPPED_NAME = {"generator": "generator", "model": "model_a", "oracle": "oracle", "features": "realism_features"}
# Table 7's transferable fit (κ 40) erases the class where the attack's own guards do not look; it keeps
# the two shipped robust guards it was measured with (docs/results/fashion-mnist.md).
TRANSFER_GUARDS = ("robust_guard", "robust_guard_2")
# ATGANAttack's keyword arguments set by the fit's options, and by the options of how it runs.
FIT_PARAMETERS = (
    "steps",
    "lr",
    "alpha",
    "beta",
    "kappa",
    "gamma",
    "feature",
    "rho_l0",
    "rho_linf",
    "batch_size",
    "tv",
    "search_steps",
)
SCALE_PARAMETERS = ("joint_batch_size", "precision")


def checkpoint_path(role: str, path: str | Path | None) -> Path:
    """``path``, or the shipped checkpoint for ``role`` (a key of :data:`SHIPPED_NAME`)."""
    return resolve_checkpoint(path, SHIPPED_NAME[role])


def load_networks(device: torch.device, **paths: str | None) -> tuple[dict[str, nn.Module], dict[str, str]]:
    """Loads the networks named by ``paths`` (generator/model/oracle/features; ``None`` for the shipped one).

    Commands call this before any run folder exists, so a bad checkpoint leaves nothing behind.
    Returns the networks and their resolved paths (what a run records).
    """
    from atgan_plugin.adapters import load_generator
    from atgan_plugin.models import load_classifier

    resolved = {role: checkpoint_path(role, path) for role, path in paths.items()}
    networks = {
        role: load_generator(path, device=device) if role == "generator" else load_classifier(path, device=device)
        for role, path in resolved.items()
    }
    return networks, {role: str(path) for role, path in resolved.items()}


def load_transfer_guards(
    paths: tuple[str, ...], generator_path: str | None, device: torch.device
) -> tuple[list[nn.Module], str]:
    """The transferable fit's guards (:data:`TRANSFER_GUARDS` with the shipped generator when none are
    given) and what to record of them."""
    from atgan_plugin.models import load_classifier
    from atgan_plugin.pretrained import pretrained_path

    if not paths and generator_path is None:
        paths = tuple(str(pretrained_path(name)) for name in TRANSFER_GUARDS)
    return [load_classifier(path, device=device) for path in paths], ", ".join(paths)


def at_dataset_size(generator: nn.Module, dataset: str, note: Callable[[str], None]) -> nn.Module:
    """``generator``, its images brought to ``dataset``'s size (centred crop or padding) when they differ: the
    model, the oracle and the Fréchet distance then all see what the model sees."""
    from atgan_plugin.adapters.protocol import as_generator_module
    from atgan_plugin.adapters.resized import ResizedGenerator
    from atgan_plugin.attack.attack_options import AttackOptions

    size = DATASETS[dataset].image_shape[1:]
    native = tuple(as_generator_module(generator).image_shape[1:])
    if native == size:
        return generator
    mode = AttackOptions().resize  # the attack's default: "crop" (centred crop or padding)
    note(f"the generator's {native[0]}x{native[1]} images meet {dataset}'s {size[0]}x{size[1]} by {mode!r}")
    return as_generator_module(ResizedGenerator(generator, size, mode))


def realism_judge(
    features_path: str | None,
    generator: nn.Module,
    dataset: str,
    data_dir: str | None,
    device: torch.device,
    note: Callable[[str], None],
) -> tuple[RobustFrechetDistance | None, str | None]:
    """The robust-feature Fréchet distance to ``dataset``'s test images, and the features' path.

    ``(None, None)``, with a ``note`` saying why, when no features fit the generator (the shipped ones
    are for 1x28x28 images) or the test images are not on this machine.
    """
    from atgan_plugin.metrics.realism import RobustFrechetDistance
    from atgan_plugin.models import load_classifier

    if features_path is None and tuple(generator.image_shape) != (1, 28, 28):  # type: ignore[arg-type]
        note("no Fréchet distance (the shipped features are for 1x28x28 images; pass --features)")
        return None, None
    path = checkpoint_path("features", features_path)
    classifier = load_classifier(path, device=device)
    try:
        test = load_dataset(dataset, "test", data_dir)
    except DatasetNotFoundError as error:
        note(f"no Fréchet distance ({error})")
        return None, None
    real = (test.images[start : start + 500] for start in range(0, len(test), 500))  # batches of (500, C, H, W)
    return RobustFrechetDistance(classifier, real), str(path)


def build_attack(
    networks: dict[str, nn.Module],
    device: torch.device,
    *,
    seed: int,
    progress: bool,
    hyper: dict[str, Any],
    guard: Any,
    guard_cache_dir: str | None,
    group: Distributed | None = None,
) -> ATGANAttack:
    """The attack on ``networks["model"]`` with ``networks["generator"]`` that ``hyper`` (the fit's and
    the scale options) describes; under torchrun (``group``), its data-parallel form."""
    from atgan_plugin.attack.atgan import ATGANAttack, AttackOptions
    from atgan_plugin.attack.attack_options import resolve_config
    from atgan_plugin.attack.config import TransferConfig
    from atgan_plugin.attack.distributed import DataParallelATGANAttack

    preset = hyper.get("config")
    if preset is None and guard is None:  # --guard none alone: the paper's fit, the shrink kept (as before presets)
        base = TransferConfig.paper(search_steps=TransferConfig.realistic().search_steps)
    else:
        base = resolve_config(preset or "realistic")
    config = replace(base, **{k: hyper[k] for k in FIT_PARAMETERS if hyper.get(k) is not None})
    options = AttackOptions(guard_cache_dir=guard_cache_dir, **{k: hyper[k] for k in SCALE_PARAMETERS if k in hyper})
    common: dict[str, Any] = dict(
        generator=networks["generator"], config=config, guard=guard, device=device, seed=seed, progress=progress
    )
    if group is not None:
        return DataParallelATGANAttack(networks["model"], distributed=group, options=options, **common)
    return ATGANAttack(networks["model"], options=options, **common)
