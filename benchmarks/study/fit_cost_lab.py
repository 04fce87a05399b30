#!/usr/bin/env python
"""The study behind the realistic preset's cost (issue 22): one fit per configuration and target, measured.

    OMP_NUM_THREADS=1 python benchmarks/study/fit_cost_lab.py --target A-nor --config cos_b32_s1000 --out lab.jsonl
    python benchmarks/study/fit_cost_lab.py --list

Each configuration is :meth:`TransferConfig.realistic` with the changes named in :data:`CONFIGS`; each row is a
fit of ``ATGANAttack(generator=G)`` (the shipped generator and its guards) with that configuration against
``--target`` (a shipped target name, or ``heldout:PATH`` for a network of ``benchmarks/heldout.py``), then
``--n`` fresh examples through the attack's own generation (the shrink included), judged by ``--judge`` (the
shipped oracle, or ``heldout:PATH``) and by the robust-feature Fréchet distance (the shipped
``realism_features``). A row also records the fit's steps, its history and its wall time; wall times are
comparable only between rows run alone on the same machine (the cost of a step is measured apart,
``benchmarks/fit_cost.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from heldout import load_heldout  # noqa: E402
from realism_check import _batches, atgan_row  # noqa: E402

from atgan_plugin import ATGANAttack  # noqa: E402
from atgan_plugin.attack.config import TransferConfig  # noqa: E402
from atgan_plugin.data import load_dataset  # noqa: E402
from atgan_plugin.metrics.realism import RobustFrechetDistance  # noqa: E402
from atgan_plugin.models import load_classifier  # noqa: E402
from atgan_plugin.pretrained import load_pretrained_generator, pretrained_path, pretrained_targets_dir  # noqa: E402

# The configurations tried, as changes to TransferConfig.realistic(); "before" is the 3,000-step default it
# replaced (constant rate 1e-4, batch 64, fresh draws, no stopping rule).
BEFORE = {"steps": 3000, "lr": 1e-4, "batch_size": 64, "schedule": "constant", "warmup": 0.0, "pool": 0, "settle": 0}
CONFIGS: dict[str, dict[str, Any]] = {
    "before": BEFORE,
    "before_s1000": {**BEFORE, "steps": 1000},
    "const_b32_s1000": {"schedule": "constant", "lr": 1e-4, "warmup": 0.0, "settle": 0, "steps": 1000},
    "cos_b32_s1000": {"settle": 0, "steps": 1000},
    "cos_b32_s1000_lr3": {"settle": 0, "steps": 1000, "lr": 3e-4},
    "cos_b32_s1000_lr1": {"settle": 0, "steps": 1000, "lr": 1e-4},
    "cos_b32_s1000_nopool": {"settle": 0, "steps": 1000, "pool": 0},
    "cos_b64_s600": {"settle": 0, "steps": 600, "batch_size": 64},
    "cos_b16_s2000": {"settle": 0, "steps": 2000, "batch_size": 16},
    "cos_b32_s700": {"settle": 0, "steps": 700},
    "cos_b32_s1000_settle": {"steps": 1000},
    "cos_b32_s1000_lr6": {"settle": 0, "steps": 1000, "lr": 6e-4},
    "cos_b32_s1000_lr10": {"settle": 0, "steps": 1000, "lr": 1e-3},
    "cos_b16_s2000_lr3": {"settle": 0, "steps": 2000, "batch_size": 16, "lr": 3e-4},
    "cos_b16_s2000_lr2": {"settle": 0, "steps": 2000, "batch_size": 16, "lr": 2e-4},
    "cos_b32_s1000_lr3_nopool": {"settle": 0, "steps": 1000, "lr": 3e-4, "pool": 0},
    "cos_b32_s1000_lr3_rho0": {"settle": 0, "steps": 1000, "lr": 3e-4, "rho_l0": 0},
    "cos_b32_s1000_lr3_rho100": {"settle": 0, "steps": 1000, "lr": 3e-4, "rho_l0": 100},
    "cos_b32_s1000_lr3_ema99": {"settle": 0, "steps": 1000, "lr": 3e-4, "ema": 0.99},
    "cos_b32_s1000_lr3_ema995": {"settle": 0, "steps": 1000, "lr": 3e-4, "ema": 0.995},
    "cos_b32_s1000_lr6_ema995": {"settle": 0, "steps": 1000, "lr": 6e-4, "ema": 0.995},
    "cos_b32_s1000_lr3_linf01": {"settle": 0, "steps": 1000, "lr": 3e-4, "rho_linf": 0.1},
    "cos_b32_s1000_lr3_linf02": {"settle": 0, "steps": 1000, "lr": 3e-4, "rho_linf": 0.2},
    "cos_b32_s2000_lr3": {"settle": 0, "steps": 2000, "lr": 3e-4},
    "cos_b32_s1000_lr3_b2": {"settle": 0, "steps": 1000, "lr": 3e-4, "beta": 2.0},
    "cos_b32_s1000_lr3_b3": {"settle": 0, "steps": 1000, "lr": 3e-4, "beta": 3.0},
    "cos_b32_s1000_lr3_a6b3": {"settle": 0, "steps": 1000, "lr": 3e-4, "alpha": 6.0, "beta": 3.0},
    "cos_b32_s1200_lr3_b2": {"settle": 0, "steps": 1200, "lr": 3e-4, "beta": 2.0},
    "cos_b32_s1200_lr3_b2_settle": {"steps": 1200, "lr": 3e-4, "beta": 2.0, "settle": 100},
    "cos_b32_s1200_lr3_settle": {"steps": 1200, "lr": 3e-4, "settle": 100},
    "cos_b32_s1000_lr3_k1": {"settle": 0, "steps": 1000, "lr": 3e-4, "kappa": 1.0},
    "cos_b32_s1000_lr3_f16": {"settle": 0, "steps": 1000, "lr": 3e-4, "feature": 16.0, "alpha": 6.0},
}


def load_target(name: str, device: torch.device) -> torch.nn.Module:
    if name.startswith("heldout:"):
        return load_heldout(name.split(":", 1)[1], device)
    path = pretrained_targets_dir() / f"{name}.safetensors"
    return load_classifier(path if path.exists() else pretrained_path(name), device).eval().requires_grad_(False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="A-nor")
    parser.add_argument("--judge", default="oracle")
    parser.add_argument("--config", default="cos_b32_s1000", help="comma-separated names of CONFIGS")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="the fit's seed")
    parser.add_argument("--out", type=Path, default=Path("fit_cost_lab.jsonl"))
    parser.add_argument(
        "--save-fits", type=Path, default=None, help="a folder: each fit saved as CONFIG-TARGET.safetensors"
    )
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args()
    if args.list:
        print("\n".join(f"{k}: {v}" for k, v in CONFIGS.items()))
        return
    device = torch.device("cpu")
    generator = load_pretrained_generator(device=device)
    model = load_target(args.target, device)
    judge = load_target(args.judge, device)
    test = load_dataset("fashion-mnist", "test")
    frechet = RobustFrechetDistance(load_classifier(pretrained_path("realism_features"), device), _batches(test.images))
    for name in args.config.split(","):
        attack = ATGANAttack(generator=generator, device=device, seed=args.seed, progress=False)
        attack.config = TransferConfig.realistic(**{**CONFIGS[name], "seed": args.seed})
        start = time.perf_counter()
        row = atgan_row(attack, model, judge, frechet, args.n, device)
        fit = attack.fit(model)
        row.update(
            config=name,
            target=args.target,
            judge=args.judge,
            seed=args.seed,
            n=args.n,
            steps_run=fit.steps_run,
            total_seconds=time.perf_counter() - start,
            threads=torch.get_num_threads(),
            history=fit.history,
        )
        if args.save_fits is not None:
            args.save_fits.mkdir(parents=True, exist_ok=True)
            attack.save_fit(args.save_fits / f"{name}-{args.target.replace('/', '_')}.safetensors", model=model)
        with args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        keys = ("success", "realistic", "oracle_ratio", "fd_ratio", "added_edges", "steps_run", "fit_seconds")
        print(name, args.target, {k: round(row[k], 3) for k in keys}, flush=True)


if __name__ == "__main__":
    main()
