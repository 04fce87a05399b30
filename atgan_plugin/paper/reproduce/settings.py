"""What ``atgan reproduce`` measures and with which settings: the checkpoint slots, the attacks, the
paper's Table 7 numbers, the run's configuration, and how a target checkpoint is found and loaded."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from atgan_plugin.attack.config import TransferConfig
from atgan_plugin.checkpoints import load_module
from atgan_plugin.models import CLASSIFIER_KINDS
from atgan_plugin.paper.baselines import BASELINES
from atgan_plugin.paper.song import SongConfig

__all__ = [
    "ARCHITECTURES",
    "ATTACKS",
    "ATTACK_NAMES",
    "PAPER_TABLE_7",
    "RHO_L0",
    "RHO_LINF",
    "SLOTS",
    "TABLE_1_ATGAN",
    "TRAININGS",
    "TRANSFERABLE_OVERRIDES",
    "TRANSFERABLE_STEPS_FACTOR",
    "TRANSFER_ARCH",
    "TRANSFER_ROWS",
    "TRANSFER_SOURCE",
    "ReproduceConfig",
    "find_checkpoints",
    "load_target",
    "training_command",
]

ARCHITECTURES = ("A", "B", "C", "D")
TRAININGS = {"nor": "Nor.", "adv": "Adv.", "ens": "Ens.", "iter": "Iter."}
REGIME_OF_TRAINING = {"nor": "normal", "adv": "adv", "ens": "ens", "iter": "pgd"}  # atgan train-classifier --regime
SLOTS = tuple(f"{arch}-{training}" for arch in ARCHITECTURES for training in TRAININGS)
ATTACKS = (*BASELINES, "song", "atgan")
ATTACK_NAMES = {"fgsm": "FGSM", "pgd": "PGD", "rfgsm": "R+FGSM", "song": "Song et al.", "atgan": "AT-GAN"}
TRANSFER_ROWS = (*ATTACKS, "atgan_transferable")  # Table 7 adds AT-GAN's high-confidence fit
TRANSFER_SOURCE, TRANSFER_ARCH = "A-nor", "C"

# Table 7 only: the fit whose examples are carried to Model C. A higher confidence κ makes examples
# transfer (Carlini & Wagner 2017, section VIII); the paper gives no κ. Pushed that hard, the fit erases
# the source class where one guard does not look, so it runs with a second guard (`reproduce`'s
# transfer_guards) and for 0.75× Table 1's steps, where its realism was highest. our choice; the
# measurements behind it: docs/notes/metrics.md and docs/results/fashion-mnist.md (Table 7 section).
TRANSFERABLE_OVERRIDES: dict[str, float] = {"kappa": 40.0, "gamma": 200.0, "beta": 0.25}
TRANSFERABLE_STEPS_FACTOR = 0.75  # the transferable fit's steps over Table 1's fit's: 750 at the default 1,000
# Table 1's AT-GAN: the paper's fit settings, weighing the run's guards (γ), with the realistic preset's shrink.
TABLE_1_ATGAN = TransferConfig(search_steps=TransferConfig.realistic().search_steps)
RHO_L0 = (0, 100, 200, 300, 400)  # paper: appendix Table 8, at ‖ρ‖∞ = 0.5
RHO_LINF = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)  # paper: appendix Table 9, at ‖ρ‖₀ = 200

# paper: appendix Table 7, ASR % from Model A to Model C, per training of Model C.
PAPER_TABLE_7 = {
    "mnist": {
        "atgan": {"nor": 65.3, "adv": 24.6, "ens": 27.9, "iter": 17.2},
        "pgd": {"nor": 97.5, "adv": 6.5, "ens": 4.1, "iter": 4.1},
    },
    "fashion-mnist": {
        "atgan": {"nor": 58.0, "adv": 22.7, "ens": 32.0, "iter": 15.2},
        "pgd": {"nor": 84.7, "adv": 27.6, "ens": 39.6, "iter": 14.6},
    },
}


@dataclass
class ReproduceConfig:
    """Sizes and hyper-parameters of one reproduction (the CLI's options)."""

    dataset: str = "fashion-mnist"
    n: int = 1000  # examples per (attack, model)
    atgan: TransferConfig = TABLE_1_ATGAN  # frozen: sharing the instance is safe
    # Table 7's fit; None: atgan with TRANSFERABLE_OVERRIDES and TRANSFERABLE_STEPS_FACTOR × its steps, no shrink.
    atgan_transferable: TransferConfig | None = None
    song: SongConfig = field(default_factory=SongConfig)
    toolkit: str = "advertorch"
    batch_size: int = 500
    ablation: bool = True
    figures: bool = True
    quick: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.atgan_transferable is None:
            steps = int(TRANSFERABLE_STEPS_FACTOR * self.atgan.steps)
            kappa, gamma, beta = (TRANSFERABLE_OVERRIDES[k] for k in ("kappa", "gamma", "beta"))
            self.atgan_transferable = replace(
                self.atgan, kappa=kappa, gamma=gamma, beta=beta, steps=steps, search_steps=0
            )

    def transferable(self) -> TransferConfig:
        """Table 7's fit (always set after construction)."""
        if self.atgan_transferable is None:
            raise ValueError("atgan_transferable is unset; ReproduceConfig.__post_init__ sets it")
        return self.atgan_transferable


def find_checkpoints(folder: str | Path | None) -> dict[str, Path | None]:
    """Every slot of :data:`SLOTS` mapped to ``folder/<slot>.safetensors``, or None when absent."""
    if folder is None:
        return dict.fromkeys(SLOTS)
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder {folder} does not exist")
    paths = {slot: folder / f"{slot}.safetensors" for slot in SLOTS}
    return {slot: path if path.is_file() else None for slot, path in paths.items()}


def load_target(path: str | Path, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """A classifier checkpoint (eval mode, on ``device``) and what its record says about it."""
    module, checkpoint = load_module(path, {"classifier": CLASSIFIER_KINDS["classifier"]})
    model = module.to(device).eval()
    record = checkpoint.training
    info = {
        "path": str(path),
        "architecture": checkpoint.config.get("architecture"),
        "regime": record.get("config", {}).get("regime"),
        "test_accuracy": record.get("test_accuracy"),
        "command": record.get("environment", {}).get("command"),
    }
    return model, info


def training_command(slot: str, dataset: str) -> str:
    """The ``atgan train-classifier`` command that makes checkpoint ``slot`` (see docs/results/README.md)."""
    arch, training = slot.split("-")
    command = (
        f"atgan train-classifier --dataset {dataset} --arch {arch} --regime {REGIME_OF_TRAINING[training]} --seed 0"
    )
    if training == "ens":  # Tramèr et al.: the fixed sources are pre-trained models of other architectures
        command += "".join(f" --static-model {other}-nor.safetensors" for other in ARCHITECTURES if other != arch)
    return command + f" --out {slot}.safetensors"
