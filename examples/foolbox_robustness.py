#!/usr/bin/env python
"""Robust accuracy of a Fashion-MNIST classifier under LinfPGD and AT-GAN, written the Foolbox 3 way.

    python examples/foolbox_robustness.py              # the shipped Model A, all 10,000 test images
    python examples/foolbox_robustness.py --n 500      # a quick slice

LinfPGD perturbs each test image inside an ℓ∞ ball of ε = 0.1. AT-GAN is non-constrained: for
each test image it draws a *new* image of the same class from the fitted generator, so it is
called with ``epsilons=None`` (Foolbox's "no clipping"); the test images give only the source
classes. A non-constrained example is worth something only while it still shows its class, so
an independent oracle (a classifier used nowhere else) reports how often it agrees with the
source class, next to its accuracy on the real test images.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import foolbox as fb
import torch

from atgan_plugin import ATGANAttack, TransferConfig, load_generator
from atgan_plugin.data import load_dataset
from atgan_plugin.models import load_classifier
from atgan_plugin.pretrained import resolve_checkpoint
from atgan_plugin.utils import resolve_device, seed_everything


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--model", type=Path, default=None, help="classifier to attack (default: shipped Model A)")
    parser.add_argument("--generator", type=Path, default=None, help="G_orig (default: shipped generator)")
    parser.add_argument(
        "--guard",
        type=Path,
        default=None,
        help='a classifier that must keep seeing the source class during the fit (default: guard="auto", '
        "the generator's own guards plus a distilled one)",
    )
    parser.add_argument("--oracle", type=Path, default=None, help="realism oracle (default: shipped oracle)")
    parser.add_argument(
        "--fit", type=Path, default=None, help="a saved G_attack (atgan attack/demo) instead of fitting"
    )
    parser.add_argument("--n", type=int, default=10_000, help="test images to use (default: all 10,000)")
    parser.add_argument("--batch-size", type=int, default=250, help="images per Foolbox call")
    parser.add_argument("--fit-steps", type=int, default=None, help="AT-GAN fit steps (default: the attack's own)")
    parser.add_argument("--data-dir", type=Path, default=None, help="Fashion-MNIST IDX folder (default: Debian's)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=0, help="seeds PGD's random start and AT-GAN")
    parser.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=True, help="AT-GAN fit progress bar"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args()
    if args.n < 1 or args.batch_size < 1 or (args.fit_steps is not None and args.fit_steps < 1):
        parser.error("--n, --batch-size and --fit-steps must be positive")
    try:  # the shipped checkpoints, unless paths were given
        args.model = resolve_checkpoint(args.model, "model_a")
        args.generator = resolve_checkpoint(args.generator, "generator")
        args.oracle = resolve_checkpoint(args.oracle, "oracle")
    except FileNotFoundError as error:
        parser.error(f"{error}; pass --model/--generator/--oracle")
    for path in (args.model, args.generator, args.guard, args.oracle, args.fit):
        if path is not None and not path.is_file():
            parser.error(f"{path} does not exist")
    return args


def main() -> None:
    args = parse_args()
    device = resolve_device(args.device)
    seed_everything(args.seed)

    # Models and data: images (N, 1, 28, 28) in [0, 1], labels (N,).
    model = load_classifier(args.model, device=device)  # eval mode
    oracle = load_classifier(args.oracle, device=device)
    generator = load_generator(args.generator, device=device)
    guard = load_classifier(args.guard, device=device) if args.guard is not None else "auto"
    test = load_dataset("fashion-mnist", "test", args.data_dir).subset(args.n)
    fmodel = fb.PyTorchModel(model, bounds=(0, 1), device=device)  # type: ignore[attr-defined]

    # The attacks, side by side. AT-GAN fits G_attack on its first call (or loads --fit).
    pgd = fb.attacks.LinfPGD(abs_stepsize=0.01, steps=20, random_start=True)
    config = TransferConfig.realistic() if args.fit_steps is None else TransferConfig.realistic(steps=args.fit_steps)
    atgan = ATGANAttack(generator=generator, config=config, guard=guard, seed=args.seed, progress=args.progress)
    if args.fit is not None:
        atgan.load_fit(args.fit, model=fmodel)
    attacks: list[tuple[str, Any, float | None]] = [
        ("LinfPGD (eps=0.1, 20 steps)", pgd, 0.1),
        ("AT-GAN (epsilons=None)", atgan, None),
    ]

    clean_correct = oracle_real = 0
    fooled = {name: 0 for name, _, _ in attacks}
    seconds = {name: 0.0 for name, _, _ in attacks}
    oracle_atgan = 0
    for start in range(0, len(test), args.batch_size):
        images = test.images[start : start + args.batch_size].to(device)
        labels = test.labels[start : start + args.batch_size].to(device)
        clean_correct += round(fb.utils.accuracy(fmodel, images, labels) * len(labels))
        with torch.no_grad():
            oracle_real += int((oracle(images).argmax(1) == labels).sum())
        for name, attack, epsilon in attacks:
            began = time.perf_counter()
            _, clipped, success = attack(fmodel, images, labels, epsilons=epsilon)
            seconds[name] += time.perf_counter() - began
            fooled[name] += int(success.sum())
            if attack is atgan:  # does the new image still show its class?
                with torch.no_grad():
                    oracle_atgan += int((oracle(clipped).argmax(1) == labels).sum())

    n = len(test)
    clean_accuracy = clean_correct / n
    robust_accuracy = {name: 1 - fooled[name] / n for name in fooled}
    agreement, oracle_accuracy = oracle_atgan / n, oracle_real / n
    print(f"model {args.model.name}: clean accuracy {clean_accuracy:.3f} on {n:,} test images")
    print(f"{'attack':<30}{'robust accuracy':>16}{'seconds':>10}")
    for name in fooled:
        print(f"{name:<30}{robust_accuracy[name]:>16.3f}{seconds[name]:>10.1f}")
    print(
        f"oracle agreement with the source class: AT-GAN images {agreement:.3f} "
        f"(oracle accuracy on the test images {oracle_accuracy:.3f})"
    )
    results = {
        "n": n,
        "clean_accuracy": clean_accuracy,
        "robust_accuracy": robust_accuracy,
        "seconds": seconds,  # AT-GAN's includes its one-off fit
        "oracle_agreement_atgan": agreement,
        "oracle_accuracy_test": oracle_accuracy,
    }
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
