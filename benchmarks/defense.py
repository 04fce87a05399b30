#!/usr/bin/env python
"""Defending against AT-GAN, measured honestly: three models of one architecture, three attacks, one run.

    OMP_NUM_THREADS=2 python benchmarks/defense.py --arch A --epochs 5 --json defense.json
    python benchmarks/defense.py --arch heldout:normal --epochs 5 --device cuda     # an architecture we did not write

Trains the same architecture from the same initialisation on the same data order (Adam, batch 64):

- **normal**: cross-entropy on the real images;
- **PGD-7**: Madry et al.'s adversarial training, PGD with ε 0.1, 7 steps of 0.03 (the usual defence);
- **AT-GAN**: :func:`atgan_plugin.defense.train` at its defaults (AT-GAN examples refitted as the model trains);

timing each (``RATIO`` lines: PGD-7 and AT-GAN training over normal training), then attacks each final model with
a **fresh** default AT-GAN fit (``ATGANAttack(generator=G)``, never the generator used in training), AdverTorch's
PGD-20 (ε 0.1, 20 steps of 0.01) and no attack: clean accuracy, PGD robust accuracy, AT-GAN success and
realistic success (fooled, and the ``--oracle`` still gives the source class), on ``--n`` examples each.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from common import checkpoint, machine_lines
from heldout import HELD_OUT
from realism_check import pgd_row
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from atgan_plugin import ATGANAttack, defense, load_generator
from atgan_plugin.attack.fit import sample_sources
from atgan_plugin.data import load_dataset
from atgan_plugin.models import build_classifier, load_classifier
from atgan_plugin.utils import eval_mode, resolve_device

PGD_TRAINING = {"pgd_epsilon": 0.1, "pgd_steps": 7, "pgd_step_size": 0.03}


def build(arch: str, seed: int) -> nn.Module:
    """A fresh network: one of the package's architectures, or ``heldout:NAME`` (benchmarks/heldout.py)."""
    torch.manual_seed(seed)
    if arch.startswith("heldout:"):
        return HELD_OUT[arch.split(":", 1)[1]][0]()
    return build_classifier(arch, num_classes=10, in_channels=1)


def train_one(
    kind: str, arch: str, generator: nn.Module, data: TensorDataset, args: argparse.Namespace
) -> tuple[nn.Module, float, list[dict[str, Any]]]:
    """Trains ``kind`` (normal, pgd, atgan) from the run's seed; returns the model, seconds and history."""
    model = build(arch, args.seed).to(args.device_)
    loader = DataLoader(data, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(args.seed))
    configs = {
        "normal": defense.DefenseConfig(atgan_weight=0.0, pgd_weight=0.0, start_step=10**9),
        "pgd": defense.DefenseConfig(atgan_weight=0.0, start_step=10**9, pgd_weight=1.0, **PGD_TRAINING),
        "atgan": defense.DefenseConfig(),
    }
    start = time.perf_counter()
    history = defense.train(
        model,
        generator,
        loader,
        epochs=args.epochs,
        config=configs[kind],
        device=args.device_,
        progress=args.progress,
        guard="auto" if kind == "atgan" else None,
    )
    return model.eval(), time.perf_counter() - start, history


@torch.no_grad()
def clean_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> float:
    predicted = torch.cat([model(images[i : i + 500].to(device)).argmax(1).cpu() for i in range(0, len(images), 500)])
    return float((predicted == labels).float().mean())


def atgan_row(
    model: nn.Module, generator: nn.Module, oracle: nn.Module, n: int, device: torch.device, seed: int
) -> dict[str, Any]:
    """A fresh default fit against ``model`` and ``n`` new examples: success, realistic success, fit seconds."""
    attack = ATGANAttack(model, generator=generator, device=device, seed=seed + 100, progress=False)
    start = time.perf_counter()
    attack.fit()
    seconds = time.perf_counter() - start
    rng = torch.Generator().manual_seed(seed + 101)
    sources = sample_sources(n, int(generator.num_classes), None, rng).to(device)
    z = generator.sample_z(n, generator=rng, device=device)
    with torch.no_grad():
        images = torch.cat([attack.generate(sources[i : i + 500], z=z[i : i + 500]) for i in range(0, n, 500)])
        fooled = model(images).argmax(1) != sources
        kept = oracle(images).argmax(1) == sources
    return {
        "success": float(fooled.float().mean()),
        "realistic": float((fooled & kept).float().mean()),
        "fit_seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="A", help="A, B, C, D, or heldout:normal|pgd|judge")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--kinds", default="normal,pgd,atgan")
    parser.add_argument("--generator", type=Path, default=None)
    parser.add_argument("--oracle", type=Path, default=None, help="the realism judge [default: the shipped oracle]")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.device_ = device = resolve_device(args.device)
    generator = load_generator(checkpoint(args.generator, "generator"), device=device)
    oracle = load_classifier(checkpoint(args.oracle, "oracle"), device=device).eval()
    train, test = load_dataset("fashion-mnist", "train"), load_dataset("fashion-mnist", "test")
    if args.train_size:
        train = train.subset(args.train_size)
    data = TensorDataset(train.images, train.labels)
    print("\n".join(machine_lines(device)), flush=True)
    rows: dict[str, dict[str, Any]] = {}
    for kind in args.kinds.split(","):
        model, seconds, history = train_one(kind, args.arch, generator, data, args)
        print(f"{kind}: trained in {seconds:.0f} s", flush=True)
        with eval_mode(model, oracle):
            row = {
                "train_seconds": seconds,
                "clean_accuracy": clean_accuracy(model, test.images, test.labels, device),
                "pgd20_accuracy": 1.0
                - pgd_row(model, oracle, test.images[: args.n], test.labels[: args.n], device)["success"],
                **{f"atgan_{k}": v for k, v in atgan_row(model, generator, oracle, args.n, device, args.seed).items()},
            }
        rows[kind] = {**row, "history": history}
        print(kind, {k: round(v, 3) for k, v in row.items()}, flush=True)
    columns = ("train_seconds", "clean_accuracy", "pgd20_accuracy", "atgan_success", "atgan_realistic")
    print("| training | " + " | ".join(columns) + " |\n|---|" + "---:|" * len(columns))
    for kind, row in rows.items():
        print(f"| {kind} | " + " | ".join(f"{row[c]:.3f}" for c in columns) + " |")
    if "normal" in rows:
        for kind in rows:
            if kind != "normal":
                print(
                    f"RATIO {kind} training / normal training: {rows[kind]['train_seconds'] / rows['normal']['train_seconds']:.2f}"
                )
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {"arch": args.arch, "epochs": args.epochs, "rows": rows, "machine": machine_lines(device)},
                indent=2,
                default=str,
            )
        )


if __name__ == "__main__":
    main()
