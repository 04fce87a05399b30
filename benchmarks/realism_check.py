#!/usr/bin/env python
"""Realism of the one-line default, as a new user gets it, beside 20-step PGD: one run, one model.

    python benchmarks/realism_check.py --model my_classifier.safetensors --oracle my_robust_judge.safetensors
    python benchmarks/realism_check.py --model pgd_trained.safetensors --oracle judge.safetensors --n 1000 --paper

``ATGANAttack(generator=G)`` with no other argument (guard="auto", the shrink, 1,000 fit steps)
against ``--model``, on ``--n`` fresh ``(z, y_s)``, judged three ways: the ``--oracle``'s agreement
with the source class (AT-GAN's images over G_orig's on the same latents), the Fréchet distance to
the real test images in the features of ``--features`` (an adversarially trained classifier;
AT-GAN's over G_orig's), and the added edges. Beside it, in the same process, AdverTorch's
``LinfPGDAttack`` (ε 0.1, 20 steps of 0.01) on ``--n`` real test images: realistic success is
"fooled and the oracle still gives the true class". ``--paper`` adds the paper's attack
(``guard=None, search_steps=0``) as a row. What to compare: the ratios and the realistic-success
difference, in one run (docs/benchmarks.md gives the numbers and the machines).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

# isort: off
from atgan_plugin import ATGANAttack, load_generator  # before advertorch: installs its torch>=1.9 shim
from advertorch.attacks import LinfPGDAttack

# isort: on
from common import checkpoint, machine_lines

from atgan_plugin.attack.fit import sample_sources
from atgan_plugin.data import load_dataset
from atgan_plugin.metrics.realism import RobustFrechetDistance, added_edges
from atgan_plugin.models import load_classifier
from atgan_plugin.utils import eval_mode, resolve_device


def _batches(images: torch.Tensor, size: int = 500) -> list[torch.Tensor]:
    return [images[i : i + size] for i in range(0, len(images), size)]


@torch.no_grad()
def _agrees(classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return torch.cat([classifier(b).argmax(1) for b in _batches(images)]) == labels


def atgan_row(
    attack: ATGANAttack,
    model: nn.Module,
    oracle: nn.Module,
    frechet: RobustFrechetDistance | None,
    n: int,
    device: torch.device,
    seed: int = 1,
) -> dict[str, Any]:
    """The attack's images for ``n`` fresh ``(z, y_s)`` and G_orig's on the same latents, measured."""
    start = time.perf_counter()
    attack.fit(model)
    fit_seconds = time.perf_counter() - start
    rng = torch.Generator().manual_seed(seed)
    sources = sample_sources(n, int(attack.generator.num_classes), None, rng)
    z = attack.generator.sample_z(n, generator=rng, device="cpu")
    pairs = [
        attack.generate(sources[i : i + 500].to(device), z=z[i : i + 500].to(device), model=model, with_reference=True)
        for i in range(0, n, 500)
    ]
    adversarial = torch.cat([a for a, _ in pairs]).cpu()
    reference = torch.cat([r for _, r in pairs]).cpu()
    fooled = ~_agrees(model, adversarial.to(device), sources.to(device)).cpu()
    agree, agree_orig = _agrees(oracle, adversarial, sources), _agrees(oracle, reference, sources)
    edges, own = added_edges(adversarial, reference)
    row: dict[str, Any] = {
        "success": float(fooled.float().mean()),
        "realistic": float((fooled & agree).float().mean()),
        "oracle_orig": float(agree_orig.float().mean()),
        "oracle_attack": float(agree.float().mean()),
        "added_edges": edges / own,
        "fit_seconds": fit_seconds,
    }
    row["oracle_ratio"] = row["oracle_attack"] / row["oracle_orig"]
    if frechet is not None:
        row["fd_orig"], row["fd_attack"] = frechet(_batches(reference)), frechet(_batches(adversarial))
        row["fd_ratio"] = row["fd_attack"] / row["fd_orig"]
    return row


def pgd_row(
    model: nn.Module, oracle: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device
) -> dict[str, Any]:
    """AdverTorch's LinfPGDAttack (ε 0.1, 20 × 0.01, random start) on real images; realistic: the oracle
    keeps the label."""
    pgd = LinfPGDAttack(model, eps=0.1, nb_iter=20, eps_iter=0.01, rand_init=True, clip_min=0.0, clip_max=1.0)
    torch.manual_seed(0)
    adversarial = torch.cat(
        [pgd.perturb(x.to(device), y.to(device)).cpu() for x, y in zip(_batches(images), _batches(labels), strict=True)]
    )
    fooled = ~_agrees(model, adversarial.to(device), labels.to(device)).cpu()
    agree = _agrees(oracle, adversarial, labels)
    return {
        "success": float(fooled.float().mean()),
        "realistic": float((fooled & agree).float().mean()),
        "oracle_attack": float(agree.float().mean()),
    }


def check(
    generator: nn.Module,
    model: nn.Module,
    oracle: nn.Module,
    *,
    n: int,
    device: torch.device,
    frechet: RobustFrechetDistance | None = None,
    real: tuple[torch.Tensor, torch.Tensor] | None = None,
    paper: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """The rows of one run: the default AT-GAN, optionally the paper's, and PGD on ``real`` (images, labels)."""
    rows: dict[str, Any] = {}
    with eval_mode(model, oracle):
        rows["AT-GAN, defaults"] = atgan_row(
            ATGANAttack(generator=generator, device=device, progress=progress), model, oracle, frechet, n, device
        )
        if paper:
            attack = ATGANAttack(generator=generator, config="paper", device=device, progress=progress)
            rows["AT-GAN, the paper's (guard=None, search_steps=0)"] = atgan_row(
                attack, model, oracle, frechet, n, device
            )
        if real is not None:
            rows["PGD (AdverTorch, ε 0.1, 20 × 0.01)"] = pgd_row(model, oracle, real[0][:n], real[1][:n], device)
    return rows


def render(rows: dict[str, Any]) -> str:
    columns = (
        "success",
        "realistic",
        "oracle_orig",
        "oracle_attack",
        "oracle_ratio",
        "fd_orig",
        "fd_attack",
        "fd_ratio",
        "added_edges",
    )
    lines = ["| row | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[c]:.3f}" if c in row else "—" for c in columns) + " |")
    pgd = next((row for name, row in rows.items() if name.startswith("PGD")), None)
    if pgd is not None:
        gap = rows["AT-GAN, defaults"]["realistic"] - pgd["realistic"]
        lines.append(f"\nRATIO realistic success, AT-GAN defaults minus PGD: {gap:+.3f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", type=Path, default=None, help="G_orig [default: the shipped generator]")
    parser.add_argument(
        "--model", type=Path, default=None, help="the classifier under attack [default: shipped Model A]"
    )
    parser.add_argument("--oracle", type=Path, default=None, help="the realism judge [default: the shipped oracle]")
    parser.add_argument(
        "--features", type=Path, default=None, help="robust features of the FD [default: the shipped ones]"
    )
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--paper", action="store_true", help="also the paper's attack")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    device = resolve_device(args.device)
    generator = load_generator(checkpoint(args.generator, "generator"), device=device)
    model = load_classifier(checkpoint(args.model, "model_a"), device=device)
    oracle = load_classifier(checkpoint(args.oracle, "oracle"), device=device)
    test = load_dataset("fashion-mnist", "test", args.data_dir)
    frechet = RobustFrechetDistance(
        load_classifier(checkpoint(args.features, "realism_features"), device=device), _batches(test.images)
    )
    print("\n".join(machine_lines(device)))
    rows = check(
        generator,
        model,
        oracle,
        n=args.n,
        device=device,
        frechet=frechet,
        real=(test.images, test.labels),
        paper=args.paper,
        progress=True,
    )
    print(render(rows))
    if args.json is not None:
        args.json.write_text(json.dumps({"rows": rows, "n": args.n}, indent=2))


if __name__ == "__main__":
    main()
