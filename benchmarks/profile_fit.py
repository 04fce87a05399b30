#!/usr/bin/env python
"""Where one fit step's time goes: torch.profiler over the default fit, and each part timed alone.

    OMP_NUM_THREADS=2 python benchmarks/profile_fit.py                 # shipped generator and guards, Model A
    python benchmarks/profile_fit.py --device cuda --steps 50
    python benchmarks/profile_fit.py --model heldout/normal.safetensors --json profile.json

Two tables, both in milliseconds per step:

1. **The fit's own regions** (``torch.profiler``, the labels ``fit: …`` of ``atgan_plugin.attack.fit``): the
   reference (G_orig and the guards' view of it: a pool draw, or a fresh render), G_attack's forward pass, the
   model's, the guards', the losses, the backward pass and the optimiser, over ``--steps`` steps of
   ``TransferConfig.realistic()`` after a warm-up, and the same for the paper's fit
   (``TransferConfig.paper()``, fresh draws, no guards). The pool's one-off render is reported apart.
2. **Each network alone** on the fit's batch: forward without gradient (what a reference costs), forward and
   backward (what the fit pays for G_attack, the model and each guard), and one Adam step over G_attack's
   parameters, plain and fused.

The backward pass is one region: autograd runs the model's, the guards' and G_attack's backward in one
call; table 2 splits it by network.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from common import checkpoint, machine_lines
from torch import nn
from torch.profiler import ProfilerActivity, profile

from atgan_plugin.adapters import load_generator
from atgan_plugin.attack.config import TransferConfig
from atgan_plugin.attack.fit import fit_attack_generator
from atgan_plugin.models import load_classifier
from atgan_plugin.utils import resolve_device

REGIONS = (
    "fit: reference (G_orig, guards)",
    "fit: G_attack forward",
    "fit: model forward",
    "fit: guards forward",
    "fit: losses (ρ, terms)",
    "fit: backward",
    "fit: optimizer",
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def profile_fit(
    generator: nn.Module,
    model: nn.Module,
    config: TransferConfig,
    guards: tuple[nn.Module, ...],
    *,
    steps: int,
    warmup: int,
    device: torch.device,
) -> dict[str, float]:
    """Milliseconds per step in each region over ``steps`` profiled steps (after ``warmup`` unprofiled ones),
    plus the pool's one-off render and the wall time per step (the render left out)."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    config = replace(config, steps=warmup + steps, settle=0, warmup=0.0)
    fit_attack_generator(
        generator, model, config=replace(config, steps=warmup), guard=guards, device=device, progress=False
    )  # warm-up: allocator, kernels
    _sync(device)
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        fit_attack_generator(generator, model, config=config, guard=guards, device=device, progress=False)
        _sync(device)
    wall = time.perf_counter() - start
    totals: dict[str, float] = {}
    for event in prof.key_averages():
        if event.key.startswith("fit: "):
            time_us = event.device_time_total if device.type == "cuda" else event.cpu_time_total
            totals[event.key] = time_us / 1000
    n = warmup + steps
    row = {region: totals.get(region, 0.0) / n for region in REGIONS}
    row["pool render (once, ms)"] = totals.get("fit: pool render", 0.0)
    row["wall per step"] = (wall * 1000 - row["pool render (once, ms)"]) / n  # the pool's render apart
    return row


def best_ms(function: Callable[[], Any], device: torch.device, repeats: int = 10) -> float:
    """The best of ``repeats`` timed calls after two warm-up calls, in milliseconds."""
    for _ in range(2):
        function()
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        function()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best * 1000


def parts(
    generator: nn.Module, model: nn.Module, guards: tuple[nn.Module, ...], batch: int, device: torch.device
) -> dict[str, float]:
    """Each network alone on ``batch`` images: forward without gradient, forward and backward; Adam's step."""
    z = generator.sample_z(batch, generator=torch.Generator().manual_seed(0), device=device)
    y = torch.arange(batch, device=device) % int(generator.num_classes)
    images = generator(z, y).detach()
    params = [p.detach().clone().requires_grad_(True) for p in generator.attack_parameters()]
    rows: dict[str, float] = {}

    def no_grad(network: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> Callable[[], Any]:
        return lambda: torch.no_grad()(network)(*inputs)

    def with_grad_to_input(network: nn.Module) -> Callable[[], Any]:
        x = images.clone().requires_grad_(True)
        return lambda: torch.autograd.grad(network(x).float().sum(), x)

    rows["G forward (no grad)"] = best_ms(no_grad(generator, z, y), device)
    attack_generator = generator.requires_grad_(False)
    for p in attack_generator.attack_parameters():
        p.requires_grad_(True)
    trainable = list(attack_generator.attack_parameters())
    rows["G forward + backward"] = best_ms(lambda: torch.autograd.grad(attack_generator(z, y).sum(), trainable), device)
    attack_generator.requires_grad_(False)
    rows["model forward (no grad)"] = best_ms(no_grad(model, images), device)
    rows["model forward + backward"] = best_ms(with_grad_to_input(model), device)
    for i, guard in enumerate(guards):
        name = f"guard {i} ({type(guard).__name__})"
        rows[f"{name} forward (no grad)"] = best_ms(no_grad(guard, images), device)
        rows[f"{name} forward + backward"] = best_ms(with_grad_to_input(guard), device)
    for fused in (False, True):
        optimizer = torch.optim.Adam(params, lr=1e-4, fused=fused)
        for p in params:
            p.grad = torch.randn_like(p)
        rows[f"Adam step ({'fused' if fused else 'for-each'})"] = best_ms(optimizer.step, device)
    return rows


def table(title: str, rows: dict[str, dict[str, float]]) -> str:
    names = list(rows)
    keys = list(next(iter(rows.values())))
    lines = [f"### {title}", "", "| ms per step | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    lines += [f"| {key} | " + " | ".join(f"{rows[n].get(key, 0.0):.1f}" for n in names) + " |" for key in keys]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", type=Path, default=None)
    parser.add_argument("--model", type=Path, default=None, help="the target [default: shipped Model A]")
    parser.add_argument("--steps", type=int, default=20, help="profiled steps")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    device = resolve_device(args.device)
    generator = load_generator(checkpoint(args.generator, "generator"), device=device)
    model = load_classifier(checkpoint(args.model, "model_a"), device=device).eval().requires_grad_(False)
    guards = tuple(getattr(generator, "default_guards", ()) or ())
    realistic, paper = TransferConfig.realistic(), TransferConfig.paper()
    print("\n".join(machine_lines(device)))
    fits = {
        f"realistic (batch {realistic.batch_size}, pool {realistic.pool}, {len(guards)} guards)": profile_fit(
            generator, model, realistic, guards, steps=args.steps, warmup=args.warmup, device=device
        ),
        f"paper (batch {paper.batch_size}, fresh draws, no guard)": profile_fit(
            generator, model, paper, (), steps=args.steps, warmup=args.warmup, device=device
        ),
    }
    alone = {f"batch {b}": parts(generator, model, guards, b, device) for b in (realistic.batch_size, paper.batch_size)}
    print(table("The fit's regions (torch.profiler)", fits))
    print()
    print(table("Each network alone", alone))
    ratio = next(iter(fits.values()))["wall per step"] / list(fits.values())[1]["wall per step"]
    print(f"\nRATIO realistic step / paper step (wall): {ratio:.2f}")
    if args.json is not None:
        args.json.write_text(json.dumps({"fits": fits, "alone": alone, "machine": machine_lines(device)}, indent=2))


if __name__ == "__main__":
    main()
