#!/usr/bin/env python
"""Attack success and realism of AT-GAN versus fit steps (and optionally versus β or γ), one run.

    python benchmarks/fit_curve.py                                   # untargeted, shipped checkpoints
    python benchmarks/fit_curve.py --betas 0.5,1,2 --out curve.md    # also a β sweep, saved
    python benchmarks/fit_curve.py --steps 500 --gammas 0,5,20,50    # the source-class guard's weight

Each row fits G_attack from scratch with that many Adam steps (same seed, so row k's fit sees
the same batches as the first k steps of any longer fit) and evaluates it with
``evaluate_attack`` on ``--n`` fresh examples: success against the target model, realistic
success (success and the oracle still gives the source class), the oracle's agreement with the
source class on G_attack's images relative to G_orig's on the same latents, the mean ℓ2
distance to G_orig, and the fit's wall time. Step 0 is G_orig itself. The table is Markdown.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import torch
from common import checkpoint, machine_lines

from atgan_plugin import ATGANAttack, TransferConfig, load_generator
from atgan_plugin.models import load_classifier
from atgan_plugin.paper.evaluation import EvaluationReport, SettingMetrics, evaluate_attack
from atgan_plugin.utils import resolve_device, seed_everything

COLUMNS = ("steps", "beta", "gamma", "fit s", "success", "realistic", "oracle(adv)", "ratio", "L2")


def int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def float_list(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


def measure(
    model: torch.nn.Module,
    oracle: torch.nn.Module,
    generator: torch.nn.Module,
    guard: torch.nn.Module | None,
    *,
    steps: int,
    beta: float,
    gamma: float,
    target: int | None,
    n: int,
    seed: int,
    device: torch.device,
    progress: bool,
) -> tuple[SettingMetrics, float]:
    """One row: fit with ``steps`` Adam steps (0: G_orig itself), evaluate on ``n`` examples."""
    if steps == 0:
        # With α = β = γ = 0 the loss and its gradient are zero, so one Adam step leaves G_attack
        # exactly equal to G_orig: the same evaluation code then measures G_orig.
        attack = ATGANAttack(
            model,
            generator=generator,
            config=TransferConfig.paper(steps=1, alpha=0.0, beta=0.0),
            seed=seed,
            device=device,
            progress=False,
        )
    else:
        base = TransferConfig.realistic() if guard is not None and gamma > 0 else TransferConfig.paper()
        attack = ATGANAttack(
            model,
            generator=generator,
            config=replace(base, steps=steps, beta=beta, gamma=gamma),
            guard=guard,
            seed=seed,
            device=device,
            progress=progress,
        )
    start = time.perf_counter()
    attack.fit(model, target)
    fit_seconds = time.perf_counter() - start if steps else 0.0
    report: EvaluationReport = evaluate_attack(
        attack,
        model,
        oracle,
        n=n,
        targets=None if target is None else [target],
        untargeted=target is None,
        seed=seed + 1,
    )
    metrics = report.untargeted if target is None else report.targeted[0]
    assert metrics is not None
    return metrics, fit_seconds


def row(steps: int, beta: float, gamma: float, seconds: float, m: SettingMetrics) -> str:
    cells = [
        str(steps),
        f"{beta:g}",
        f"{gamma:g}",
        f"{seconds:.1f}",
        f"{m.success_rate:.3f}",
        f"{m.realistic_success_rate:.3f}",
        f"{m.oracle_agreement_attack:.3f}",
        f"{m.agreement_ratio:.3f}",
        f"{m.mean_l2:.2f}",
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--model", type=Path, default=None, help="target classifier (default: shipped Model A)")
    parser.add_argument("--generator", type=Path, default=None, help="G_orig (default: shipped generator)")
    parser.add_argument("--oracle", type=Path, default=None, help="realism oracle (default: shipped oracle)")
    parser.add_argument("--guard", type=Path, default=None, help="guard classifier (default: shipped aux classifier)")
    parser.add_argument("--no-guard", action="store_true", help="fit without a guard (the paper's loss)")
    parser.add_argument(
        "--steps",
        type=int_list,
        default=int_list("0,50,100,200,300,500,750,1000"),
        help="comma-separated fit steps (0: G_orig itself)",
    )
    parser.add_argument("--beta", type=float, default=TransferConfig.beta, help="β for the steps sweep")
    parser.add_argument("--gamma", type=float, default=TransferConfig.gamma, help="γ for the steps and β sweeps")
    parser.add_argument("--betas", type=float_list, default=[], help="also sweep these β values (comma-separated)")
    parser.add_argument("--gammas", type=float_list, default=[], help="also sweep these γ values (comma-separated)")
    parser.add_argument("--sweep-steps", type=int, default=TransferConfig.steps, help="fit steps of the β and γ sweeps")
    parser.add_argument("--target", type=int, default=None, help="target class (default: untargeted)")
    parser.add_argument("--n", type=int, default=2000, help="evaluation examples per row")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fits (the evaluation uses seed + 1)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=False, help="fit progress bars")
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown to this file")
    args = parser.parse_args()
    if args.n < 1 or args.sweep_steps < 1 or any(v < 0 for v in [*args.steps, *args.betas, *args.gammas]):
        parser.error("--n and --sweep-steps must be positive, --steps, --betas and --gammas non-negative")
    device = resolve_device(args.device)
    seed_everything(args.seed)

    model = load_classifier(checkpoint(args.model, "model_a"), device=device)
    oracle = load_classifier(checkpoint(args.oracle, "oracle"), device=device)
    generator = load_generator(checkpoint(args.generator, "generator"), device=device)
    guard = None if args.no_guard else load_classifier(checkpoint(args.guard, "aux_classifier"), device=device)
    setting = "untargeted" if args.target is None else f"target {args.target}"

    lines = [
        "# AT-GAN fit curve",
        "",
        *[f"- {line}" for line in machine_lines(device)],
        f"- setting: {setting}; guard: {'none' if guard is None else type(guard).__name__}; n = {args.n} per row; "
        "other hyper-parameters: TransferConfig defaults",
        "",
    ]
    header = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---:" for _ in COLUMNS) + "|"]

    def emit(line: str) -> None:
        lines.append(line)
        print(line, flush=True)

    for line in lines:
        print(line)
    emit("## Versus fit steps")
    emit("")
    for line in header:
        emit(line)
    last: tuple[int, SettingMetrics] | None = None
    common = {"target": args.target, "n": args.n, "seed": args.seed, "device": device, "progress": args.progress}
    for steps in args.steps:
        metrics, seconds = measure(
            model, oracle, generator, guard, steps=steps, beta=args.beta, gamma=args.gamma, **common
        )
        emit(row(steps, args.beta, args.gamma, seconds, metrics))
        last = (steps, metrics)
    if last is not None:
        emit("")
        emit(
            f"RATIO oracle agreement, G_attack / G_orig on the same latents, at {last[0]} steps: "
            f"{last[1].agreement_ratio:.3f} (success {last[1].success_rate:.3f})"
        )
    sweeps = [
        ("β", [(beta, args.gamma) for beta in args.betas]),
        ("γ", [(args.beta, gamma) for gamma in args.gammas]),
    ]
    for name, settings in sweeps:
        if not settings:
            continue
        emit("")
        emit(f"## Versus {name} ({args.sweep_steps} steps)")
        emit("")
        for line in header:
            emit(line)
        for beta, gamma in settings:
            metrics, seconds = measure(
                model, oracle, generator, guard, steps=args.sweep_steps, beta=beta, gamma=gamma, **common
            )
            emit(row(args.sweep_steps, beta, gamma, seconds, metrics))
    if args.out is not None:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
