#!/usr/bin/env python
"""Generation throughput of a fitted AT-GAN versus 20-step LinfPGD, side by side in one run.

    python benchmarks/throughput.py                       # shipped Model A and generator
    python benchmarks/throughput.py --batch-size 500 --repeats 10 --device cuda

Same model, same batch of Fashion-MNIST test images, same device, measured in the same
process: AT-GAN through both of its faces (AdverTorch ``perturb``, Foolbox ``__call__`` with
``epsilons=None``) and G_attack's bare forward pass, against AdverTorch's ``LinfPGDAttack``
(ε = 0.1, 20 iterations of 0.01) and Foolbox's ``LinfPGD`` (same settings). The one-off fit of
G_attack is timed separately and not included (it is paid once per model and target). What
matters is the ratio; the acceptance target is AT-GAN >= 10x PGD.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import foolbox as fb
import torch
from torch import nn

# isort: off
from atgan_plugin import ATGANAttack, TransferConfig, load_generator  # before advertorch: installs its torch>=1.9 shim
from advertorch.attacks import LinfPGDAttack

# isort: on
from common import best_time, checkpoint, machine, machine_lines

from atgan_plugin.data import load_dataset
from atgan_plugin.models import load_classifier
from atgan_plugin.utils import resolve_device, seed_everything

TARGET_RATIO = 10.0


def images_per_second(run: Callable[[], object], batch: int, repeats: int, device: torch.device) -> float:
    """Images per second of the best of ``repeats`` timed calls after one warm-up call."""
    return batch / best_time(run, repeats, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--model", type=Path, default=None, help="target classifier (default: shipped Model A)")
    parser.add_argument("--generator", type=Path, default=None, help="G_orig (default: shipped generator)")
    parser.add_argument("--fit", type=Path, default=None, help="a saved G_attack; default: fit --fit-steps now")
    parser.add_argument(
        "--fit-steps",
        type=int,
        default=50,
        help="fit steps when no --fit is given (throughput does not depend on them)",
    )
    parser.add_argument("--batch-size", type=int, default=256, help="images per call, the same for every attack")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per attack (best one counts)")
    parser.add_argument("--data-dir", type=Path, default=None, help="Fashion-MNIST IDX folder (default: Debian's)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args()
    if args.batch_size < 1 or args.repeats < 1 or args.fit_steps < 1:
        parser.error("--batch-size, --repeats and --fit-steps must be positive")
    device = resolve_device(args.device)
    seed_everything(args.seed)

    model = load_classifier(checkpoint(args.model, "model_a"), device=device)
    generator = load_generator(checkpoint(args.generator, "generator"), device=device)
    test = load_dataset("fashion-mnist", "test", args.data_dir).subset(args.batch_size)
    x, y = test.images.to(device), test.labels.to(device)
    batch = len(y)

    # Fit once, outside the timings; the Foolbox face gets the same G_attack through a file.
    atgan = ATGANAttack(
        model,
        generator=generator,
        config=TransferConfig.realistic(steps=args.fit_steps),
        seed=args.seed,
        progress=False,
    )
    fmodel = fb.PyTorchModel(model, bounds=(0, 1), device=device)  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        fit = atgan.load_fit(args.fit) if args.fit is not None else atgan.fit()
        fit_seconds = time.perf_counter() - start
        fit_file = args.fit or Path(tmp) / "g_attack.safetensors"
        if args.fit is None:
            atgan.save_fit(fit_file)
        atgan.load_fit(fit_file, model=fmodel)

    pgd_advertorch = LinfPGDAttack(
        model,
        loss_fn=nn.CrossEntropyLoss(reduction="sum"),
        eps=0.1,
        nb_iter=20,
        eps_iter=0.01,
        rand_init=True,
        clip_min=0.0,
        clip_max=1.0,
    )
    pgd_foolbox = fb.attacks.LinfPGD(abs_stepsize=0.01, steps=20, random_start=True)
    z = generator.sample_z(batch, generator=torch.Generator().manual_seed(args.seed), device=device)

    def g_attack_forward() -> object:
        with torch.no_grad():
            return fit.generator(z, y)

    runs: dict[str, Callable[[], object]] = {
        "AT-GAN, G_attack forward only": g_attack_forward,
        "AT-GAN, AdverTorch perturb(x, y)": lambda: atgan.perturb(x, y),
        "AdverTorch LinfPGDAttack (20 it.)": lambda: pgd_advertorch.perturb(x, y),
        "AT-GAN, Foolbox (epsilons=None)": lambda: atgan(fmodel, x, y, epsilons=None),
        "Foolbox LinfPGD (20 steps)": lambda: pgd_foolbox(fmodel, x, y, epsilons=0.1),
    }
    speed = {name: images_per_second(run, batch, args.repeats, device) for name, run in runs.items()}
    ratios = {
        "AT-GAN / AdverTorch LinfPGDAttack": speed["AT-GAN, AdverTorch perturb(x, y)"]
        / speed["AdverTorch LinfPGDAttack (20 it.)"],
        "AT-GAN / Foolbox LinfPGD": speed["AT-GAN, Foolbox (epsilons=None)"] / speed["Foolbox LinfPGD (20 steps)"],
    }

    print("\n".join(machine_lines(device)))
    fit_how = "loaded" if args.fit else f"{args.fit_steps} steps"
    print(
        f"batch {batch}, best of {args.repeats} timed calls; "
        f"G_attack fit ({fit_how}): {fit_seconds:.1f} s, not included"
    )
    print(f"{'attack':<36}{'images/s':>12}")
    for name, value in speed.items():
        print(f"{name:<36}{value:>12,.0f}")
    for name, ratio in ratios.items():
        verdict = "meets" if ratio >= TARGET_RATIO else "BELOW"
        print(f"RATIO {name}: {ratio:.1f}x ({verdict} the {TARGET_RATIO:.0f}x target)")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine(device),
                    "batch": batch,
                    "repeats": args.repeats,
                    "fit_seconds": fit_seconds,
                    "images_per_second": speed,
                    "ratios": ratios,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
