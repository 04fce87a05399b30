#!/usr/bin/env python
"""Accuracy of a Fashion-MNIST classifier on LinfPGD and AT-GAN examples, written the AdverTorch way.

    python examples/advertorch_robustness.py            # the shipped Model A, all 10,000 test images
    python examples/advertorch_robustness.py --n 500    # a quick slice

Both adversaries go through ``advertorch.attacks.utils.attack_whole_dataset``, which calls
``adversary.perturb(x, y)`` with the true labels. For LinfPGD that perturbs ``x`` within
ε = 0.1 (ℓ∞); for AT-GAN ``y`` are the source classes and each output is a new image of class
``y`` from the fitted generator (non-constrained: ``x`` gives only count, shape and device).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from torch import nn
from torch.utils.data import DataLoader, TensorDataset

# isort: off
# atgan_plugin first: it makes advertorch 0.2.3 importable on torch >= 1.9 (a shim for the
# removed torch.autograd.gradcheck.zero_gradients), so it must be imported before advertorch.
from atgan_plugin import ATGANAttack, TransferConfig, load_generator
from advertorch.attacks import LinfPGDAttack
from advertorch.attacks.utils import attack_whole_dataset

# isort: on
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
    parser.add_argument(
        "--fit", type=Path, default=None, help="a saved G_attack (atgan attack/demo) instead of fitting"
    )
    parser.add_argument("--n", type=int, default=10_000, help="test images to use (default: all 10,000)")
    parser.add_argument("--batch-size", type=int, default=250, help="DataLoader batch size")
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
    except FileNotFoundError as error:
        parser.error(f"{error}; pass --model/--generator")
    for path in (args.model, args.generator, args.guard, args.fit):
        if path is not None and not path.is_file():
            parser.error(f"{path} does not exist")
    return args


def main() -> None:
    args = parse_args()
    device = resolve_device(args.device)
    seed_everything(args.seed)

    model = load_classifier(args.model, device=device)  # eval mode
    generator = load_generator(args.generator, device=device)
    guard = load_classifier(args.guard, device=device) if args.guard is not None else "auto"
    test = load_dataset("fashion-mnist", "test", args.data_dir).subset(args.n)
    loader = DataLoader(TensorDataset(test.images, test.labels), batch_size=args.batch_size, shuffle=False)

    # The adversaries, side by side; AT-GAN fits G_attack on its first batch (or loads --fit).
    pgd = LinfPGDAttack(
        model,
        loss_fn=nn.CrossEntropyLoss(reduction="sum"),
        eps=0.1,
        nb_iter=20,
        eps_iter=0.01,
        rand_init=True,
        clip_min=0.0,
        clip_max=1.0,
        targeted=False,
    )
    atgan = ATGANAttack(
        model,
        generator=generator,
        guard=guard,
        clip_min=0.0,
        clip_max=1.0,
        targeted=False,
        config=TransferConfig.realistic() if args.fit_steps is None else TransferConfig.realistic(steps=args.fit_steps),
        seed=args.seed,
        progress=args.progress,
    )
    if args.fit is not None:
        atgan.load_fit(args.fit)
    adversaries = {"LinfPGDAttack (eps=0.1, 20 iterations)": pgd, "ATGANAttack": atgan}

    results: dict[str, object] = {"n": len(test)}
    accuracies: dict[str, float] = {}
    seconds: dict[str, float] = {}
    clean = 0.0
    for name, adversary in adversaries.items():
        began = time.perf_counter()
        _, label, pred, advpred = attack_whole_dataset(adversary, loader, device=device)
        seconds[name] = time.perf_counter() - began  # AT-GAN's includes its one-off fit
        clean = (pred == label).float().mean().item()
        accuracies[name] = (advpred == label).float().mean().item()
    results.update(clean_accuracy=clean, adversarial_accuracy=accuracies, seconds=seconds)

    print(f"model {args.model.name}: clean accuracy {clean:.3f} on {len(test):,} test images")
    print(f"{'adversary':<40}{'accuracy on adversarial':>25}{'seconds':>10}")
    for name in adversaries:
        print(f"{name:<40}{accuracies[name]:>25.3f}{seconds[name]:>10.1f}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
