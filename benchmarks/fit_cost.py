#!/usr/bin/env python
"""The one-line default's fit against the paper's, in time and in realism, on targets no default was chosen on.

    python benchmarks/heldout.py train --out heldout/                    # once: the unseen targets and the judge
    OMP_NUM_THREADS=2 python benchmarks/fit_cost.py --normal heldout/normal.safetensors \\
        --pgd heldout/pgd.safetensors --json fit_cost.json   # --judge: the shipped oracle unless given

In one process, on the same machine:

1. the fit of ``ATGANAttack(generator=G)`` with no other argument against ``--normal``, timed, beside the paper's
   fit (``guard=None, search_steps=0, steps=1000``) against the same model: ``RATIO`` default / paper;
2. the default's success, realistic success, the judge's agreement ratio (AT-GAN's images over G_orig's on the
   same latents) and the robust-feature Fréchet distance ratio on ``--n`` fresh examples, against ``--normal``
   and against ``--pgd``, with AdverTorch's PGD-20 (ε 0.1) on real test images beside the PGD-trained one;
3. the acceptance of issue 22 line by line (fit time ≤ 1.0× the paper's; normal: success ≥ 0.98, ratio ≥ 0.95,
   FD ≤ 2×; PGD-trained: realistic success ≥ PGD's + 0.30, ratio ≥ 0.90).

``--normal``, ``--pgd`` and ``--judge`` take a network of ``benchmarks/heldout.py`` or any classifier file of
this package. The features of the Fréchet distance are the shipped ``realism_features`` unless ``--features``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from common import checkpoint, machine_lines
from heldout import load_network
from realism_check import _batches, atgan_row, pgd_row
from torch import nn

from atgan_plugin import ATGANAttack, load_generator
from atgan_plugin.data import load_dataset
from atgan_plugin.metrics.realism import RobustFrechetDistance
from atgan_plugin.models import load_classifier
from atgan_plugin.utils import eval_mode, resolve_device


def timed_fit(attack: ATGANAttack, model: nn.Module) -> tuple[float, int]:
    """Seconds of ``attack.fit(model)`` (distilled guards already made) and the steps it took."""
    attack.prepare_guard()
    start = time.perf_counter()
    fit = attack.fit(model)
    return time.perf_counter() - start, fit.steps_run


def acceptance(result: dict[str, Any]) -> list[str]:
    normal, robust, pgd = result["normal"], result["pgd"], result["pgd_baseline"]
    gap = robust["realistic"] - pgd["realistic"]
    checks = [
        ("default fit time ≤ 1.0× the paper's fit", result["fit_ratio"] <= 1.0, f"{result['fit_ratio']:.2f}×"),
        ("normal: success ≥ 0.98", normal["success"] >= 0.98, f"{normal['success']:.3f}"),
        ("normal: oracle ratio ≥ 0.95", normal["oracle_ratio"] >= 0.95, f"{normal['oracle_ratio']:.3f}"),
        ("normal: FD ≤ 2× G_orig's", normal["fd_ratio"] <= 2.0, f"{normal['fd_ratio']:.2f}×"),
        ("PGD-trained: realistic ≥ PGD + 0.30", gap >= 0.30, f"{robust['realistic']:.3f} vs {pgd['realistic']:.3f}"),
        ("PGD-trained: oracle ratio ≥ 0.90", robust["oracle_ratio"] >= 0.90, f"{robust['oracle_ratio']:.3f}"),
    ]
    return [f"{'met' if ok else 'NOT MET'}: {name} ({value})" for name, ok, value in checks]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", type=Path, default=None, help="G_orig [default: the shipped generator]")
    parser.add_argument("--normal", type=Path, required=True, help="an unseen, normally trained target")
    parser.add_argument("--pgd", type=Path, required=True, help="an unseen, PGD-trained target")
    parser.add_argument(
        "--judge", type=Path, default=None, help="an independent, adversarially trained judge [default: the oracle]"
    )
    parser.add_argument("--features", type=Path, default=None, help="robust features of the FD [default: shipped]")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    device = resolve_device(args.device)
    generator = load_generator(checkpoint(args.generator, "generator"), device=device)
    normal, robust = load_network(args.normal, device), load_network(args.pgd, device)
    judge = load_network(checkpoint(args.judge, "oracle"), device)
    test = load_dataset("fashion-mnist", "test", args.data_dir)
    features = load_classifier(checkpoint(args.features, "realism_features"), device=device)
    frechet = RobustFrechetDistance(features, _batches(test.images))
    print("\n".join(machine_lines(device)), flush=True)

    result: dict[str, Any] = {"n": args.n}
    with eval_mode(normal, robust, judge):
        paper = ATGANAttack(generator=generator, config="paper", device=device, progress=False)
        default = ATGANAttack(generator=generator, device=device, progress=False)
        result["paper_fit_seconds"], result["paper_steps"] = timed_fit(paper, normal)
        result["default_fit_seconds"], result["default_steps"] = timed_fit(default, normal)
        result["fit_ratio"] = result["default_fit_seconds"] / result["paper_fit_seconds"]
        print(
            f"fit against --normal: default {result['default_fit_seconds']:.1f} s ({result['default_steps']} steps), "
            f"paper {result['paper_fit_seconds']:.1f} s ({result['paper_steps']} steps)",
            flush=True,
        )
        print(f"RATIO default fit / paper fit: {result['fit_ratio']:.2f}", flush=True)
        result["normal"] = atgan_row(default, normal, judge, frechet, args.n, device)
        on_robust = ATGANAttack(generator=generator, device=device, progress=False)
        result["pgd"] = atgan_row(on_robust, robust, judge, frechet, args.n, device)
        result["pgd"]["steps"] = on_robust.fit(robust).steps_run
        result["pgd_baseline"] = pgd_row(robust, judge, test.images[: args.n], test.labels[: args.n], device)
    keys = ("success", "realistic", "oracle_ratio", "fd_ratio", "added_edges", "fit_seconds")
    for name in ("normal", "pgd"):
        print(f"default against --{name}: " + ", ".join(f"{k} {result[name][k]:.3f}" for k in keys))
    print(f"PGD-20 against --pgd: realistic {result['pgd_baseline']['realistic']:.3f}")
    result["acceptance"] = acceptance(result)
    print("\n".join(result["acceptance"]))
    if args.json is not None:
        args.json.write_text(json.dumps({**result, "machine": machine_lines(device)}, indent=2))


if __name__ == "__main__":
    main()
