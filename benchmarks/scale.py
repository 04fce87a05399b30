#!/usr/bin/env python
"""The GPU path, measured in one run: fit time to 95 % success, generation against its forward-pass limit, PGD-20.

    python benchmarks/scale.py --device cuda                          # shipped generator and Model A
    python benchmarks/scale.py --device cuda --compile --batch-size 4096 --json scale.json
    OMP_NUM_THREADS=1 python benchmarks/scale.py --device cpu --parts generate   # CPU generation ratio
    OMP_NUM_THREADS=1 python benchmarks/scale.py --device cpu --tiny             # seconds: checks the script

Parts (``--parts``, default all):

- ``fit``: seconds until the fit's G_attack fools the model on 95 % of a fixed held-out batch (checked
  every 10 steps, the checks' time left out), for one untargeted fit in float32 and in bf16, and for
  the joint fit of ``--targets`` (all targets at 95 %); ``--max-steps`` caps each.
- ``generate``: images/s of ``ATGANAttack.generate`` (``search_steps`` 8 and 0) and of mass generation
  (``atgan_plugin.attack.generation``, shards on disk) against the limit, the bare forward passes the method
  needs on the same batch: G_attack + G_orig + (search_steps + 1) model passes (G_attack alone for 0),
  in float32 and bf16 (and with ``--compile``). ``generate`` and its limit are each the best of ``--repeats``
  calls; mass generation (``--repeats`` shards back to back) against the same passes timed back to back.
- ``pgd``: images/s of Foolbox's ``LinfPGD`` and AdverTorch's ``LinfPGDAttack`` (20 steps of 0.01,
  ε = 0.1) on the same batch, against AT-GAN's ``generate``.

Results and the machines they come from: ``docs/benchmarks.md``, "Scale".
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

# isort: off
from atgan_plugin import ATGANAttack, AttackOptions, load_generator  # before advertorch: installs its torch>=1.9 shim
from advertorch.attacks import LinfPGDAttack

# isort: on
import foolbox as fb
from common import best_time, checkpoint, machine, machine_lines, mean_time

from atgan_plugin.attack.config import TransferConfig
from atgan_plugin.attack.fit import FitProgress, fit_attack_generator, fit_attack_generators, sample_sources
from atgan_plugin.attack.generation import GenerationPlan, check_plan, generate_shards
from atgan_plugin.models import load_classifier
from atgan_plugin.utils import resolve_device, seed_everything

PARTS = ("fit", "generate", "pgd")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def held_out(
    generator: nn.Module, target: int | None, n: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    rng = torch.Generator().manual_seed(1234)
    sources = sample_sources(n, int(generator.num_classes), target, rng).to(device)  # type: ignore[arg-type]
    return sources, generator.sample_z(n, generator=rng, device=device)  # type: ignore[operator, no-any-return]


def success(g_attack: nn.Module, model: nn.Module, sources: torch.Tensor, z: torch.Tensor, target: int | None) -> float:
    with torch.no_grad():
        predicted = model(g_attack(z, sources)).argmax(1)
    return float((predicted == target if target is not None else predicted != sources).float().mean())


class Reached(Exception):
    """Raised by a fit's callback to stop the fit once the goal is met."""


class StopWatch:
    """Wall time of a fit up to the goal, without the time its success checks take."""

    def __init__(self, device: torch.device, goal: float):
        self.device, self.goal, self.paused, self.reached = device, goal, 0.0, None
        synchronize(device)
        self.start = time.perf_counter()

    def check(self, step: int, measure: Callable[[], float]) -> None:
        synchronize(self.device)
        before = time.perf_counter()
        fooled = measure()
        synchronize(self.device)
        self.paused += time.perf_counter() - before
        if fooled >= self.goal:
            self.reached = (step, before - self.start - self.paused + (time.perf_counter() - before))
            raise Reached


def time_to_goal(run: Callable[[StopWatch], None], device: torch.device, goal: float) -> tuple[int, float] | None:
    watch = StopWatch(device, goal)
    try:
        run(watch)
    except Reached:
        pass
    return watch.reached


def fit_part(args: argparse.Namespace, generator: nn.Module, model: nn.Module, guards: Any) -> dict[str, Any]:
    device = args.device_
    config = TransferConfig(steps=args.max_steps, batch_size=args.fit_batch_size)
    sources, z = held_out(generator, None, args.check_size, device)
    rows: dict[str, Any] = {}
    for precision in ("fp32", "bf16"):

        def run(watch: StopWatch, precision: str = precision) -> None:
            def callback(progress: FitProgress) -> None:
                watch.check(progress.step, lambda: success(progress.generator(None), model, sources, z, None))

            fit_attack_generator(
                generator,
                model,
                config=config,
                device=device,
                progress=args.progress,
                guard=guards,
                precision=precision,
                callback=callback,
            )

        rows[f"untargeted fit, {precision}"] = time_to_goal(run, device, args.goal)
    targets = [int(t) for t in args.targets.split(",")]

    def run_joint(watch: StopWatch) -> None:
        def callback(progress: FitProgress) -> None:
            batch_success = [record["success"] for record in progress.records.values()]
            watch.check(progress.step, lambda: min(batch_success))  # the training batches' success: no extra passes

        fit_attack_generators(
            generator,
            model,
            targets,
            config=config,
            batch_per_target=args.joint_batch_size,
            device=device,
            progress=args.progress,
            guard=guards,
            callback=callback,
        )

    rows[f"joint fit of {len(targets)} targets (batch success), fp32"] = time_to_goal(run_joint, device, args.goal)
    return {name: None if r is None else {"steps": r[0], "seconds": r[1]} for name, r in rows.items()}


def limit_and_actual(
    args: argparse.Namespace, attack: ATGANAttack, model: nn.Module, sources: torch.Tensor, z: torch.Tensor
) -> tuple[float, float, Callable[[], None]]:
    """Images/s of the bare forward passes ``attack.generate`` needs (compiled alike), of ``generate`` (both best of
    ``--repeats``), and the bare passes themselves (to time them like a run of many batches)."""
    device, steps = args.device_, attack.search_steps
    g_attack = attack._compiled_or(attack.fit(model).generator)
    g_orig = attack._compiled_or(attack._reference_generator(device))
    classify = attack._compiled_or(model)

    def limit() -> None:
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=attack.precision == "bf16"):
            images = g_attack(z, sources).float()
            if steps:
                g_orig(z, sources)
                for _ in range(steps + 1):
                    classify(images)

    ideal = len(z) / best_time(limit, args.repeats, device)
    return ideal, len(z) / best_time(lambda: attack.generate(sources, z=z), args.repeats, device), limit


def generate_part(args: argparse.Namespace, generator: nn.Module, model: nn.Module, fit_file: Path) -> dict[str, Any]:
    device, batch = args.device_, args.batch_size
    sources, z = held_out(generator, None, batch, device)
    rows: dict[str, Any] = {}
    variants = [("fp32", False), ("bf16", False)] + ([("fp32", True), ("bf16", True)] if args.compile else [])
    for precision, compiled in variants:
        for steps in (TransferConfig.realistic().search_steps, 0):
            attack = ATGANAttack(
                model,
                generator=generator,
                config=TransferConfig.realistic(search_steps=steps),
                guard=None,
                options=AttackOptions(precision=precision, compile=compiled),
                device=device,
                progress=False,
            )
            attack.load_fit(fit_file)
            ideal, actual, limit = limit_and_actual(args, attack, model, sources, z)
            name = f"generate, search_steps={steps}, {precision}{', compiled' if compiled else ''}"
            rows[name] = {"images_per_second": actual, "limit": ideal, "ratio": actual / ideal}
            if steps == 8 and not compiled:
                with tempfile.TemporaryDirectory() as out:
                    plan = GenerationPlan(
                        total=batch * args.repeats,
                        shard_size=batch,
                        seed=0,
                        target=None,
                        search_steps=steps,
                        precision=precision,
                        fit_sha256="-",
                        generator_sha256="-",
                        model_sha256="-",
                    )
                    check_plan(Path(out), plan)
                    _, made, seconds = generate_shards(attack, model, plan, out, batch_size=batch, progress=False)
                # Mass generation is a run of --repeats batches back to back (each its own shard, written and
                # hashed): its limit is the same passes timed the same way, the mean of back-to-back calls.
                run_limit = batch / mean_time(limit, args.repeats, device)
                rows[f"mass generation (shards on disk), search_steps={steps}, {precision}"] = {
                    "images_per_second": made / seconds,
                    "limit": run_limit,
                    "ratio": made / seconds / run_limit,
                }
    return rows


def pgd_part(args: argparse.Namespace, generator: nn.Module, model: nn.Module, fit_file: Path) -> dict[str, Any]:
    device, batch = args.device_, args.batch_size
    sources, z = held_out(generator, None, batch, device)
    with torch.no_grad():
        x = generator(z, sources).clamp(0, 1)  # PGD's inputs: G_orig's images of the same classes
    attack = ATGANAttack(model, generator=generator, config="realistic", guard=None, device=device, progress=False)
    attack.load_fit(fit_file)
    fmodel = fb.PyTorchModel(model, bounds=(0, 1), device=device)  # type: ignore[attr-defined]
    advertorch = LinfPGDAttack(
        model,
        loss_fn=nn.CrossEntropyLoss(reduction="sum"),
        eps=0.1,
        nb_iter=20,
        eps_iter=0.01,
        rand_init=True,
        clip_min=0.0,
        clip_max=1.0,
    )
    foolbox = fb.attacks.LinfPGD(abs_stepsize=0.01, steps=20, random_start=True)
    runs = {
        "AT-GAN generate (the shrink)": lambda: attack.generate(sources, z=z),
        "AdverTorch LinfPGDAttack (20 it.)": lambda: advertorch.perturb(x, sources),
        "Foolbox LinfPGD (20 steps)": lambda: foolbox(fmodel, x, sources, epsilons=0.1),
    }
    speed = {name: batch / best_time(run, args.repeats, device) for name, run in runs.items()}
    return {
        name: {"images_per_second": value, "at_gan_over_this": speed["AT-GAN generate (the shrink)"] / value}
        for name, value in speed.items()
    }


def tiny_networks(device: torch.device) -> tuple[nn.Module, nn.Module]:
    from atgan_plugin.adapters import ACWGANGPGenerator
    from atgan_plugin.adapters.acwgan_gp import Generator
    from atgan_plugin.models import build_classifier

    torch.manual_seed(0)
    return ACWGANGPGenerator(Generator(z_dim=8)).to(device).eval(), build_classifier("D").to(device).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--model", type=Path, default=None, help="target classifier (default: shipped Model A)")
    parser.add_argument("--generator", type=Path, default=None, help="G_orig (default: shipped generator)")
    parser.add_argument(
        "--fit", type=Path, default=None, help="a saved G_attack for generate/pgd (default: fit 200 steps now)"
    )
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--device", default="auto", help="cuda, cuda:N, cpu or auto")
    parser.add_argument("--batch-size", type=int, default=1024, help="images per generation and PGD call")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per row (best one counts)")
    parser.add_argument("--goal", type=float, default=0.95, help="success the fit must reach")
    parser.add_argument("--max-steps", type=int, default=1000, help="fit steps at most")
    parser.add_argument("--fit-batch-size", type=int, default=64, help="batch of a fit step")
    parser.add_argument("--joint-batch-size", type=int, default=64, help="per target and step in the joint fit")
    parser.add_argument("--check-size", type=int, default=1024, help="held-out examples of the success checks")
    parser.add_argument("--targets", default="0,1,2,3,4,5,6,7,8,9", help="targets of the joint fit")
    parser.add_argument("--guard", choices=["auto", "none"], default="auto", help="the fits' guards")
    parser.add_argument("--compile", action="store_true", help="also measure generation through torch.compile")
    parser.add_argument("--tiny", action="store_true", help="tiny untrained networks and sizes: checks the script")
    parser.add_argument("--progress", action="store_true", help="show the fits' progress bars")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args()
    device = args.device_ = resolve_device(args.device)
    parts = [p for p in args.parts.split(",") if p]
    if unknown := set(parts) - set(PARTS):
        parser.error(f"unknown parts {sorted(unknown)}; choose from {PARTS}")
    seed_everything(0)
    if args.tiny:
        generator, model = tiny_networks(device)
        args.guard, args.batch_size, args.repeats, args.max_steps, args.check_size = "none", 64, 1, 20, 64
        args.targets, args.goal = "0,1", min(args.goal, 0.5)
    else:
        generator = load_generator(checkpoint(args.generator, "generator"), device=device)
        model = load_classifier(checkpoint(args.model, "model_a"), device=device).eval()
    model.requires_grad_(False)
    guards = (
        ATGANAttack(model, generator=generator, progress=args.progress).prepare_guard(device)
        if args.guard == "auto"
        else None
    )
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        fit_file = args.fit
        if {"generate", "pgd"} & set(parts) and fit_file is None:
            maker = ATGANAttack(
                model,
                generator=generator,
                guard=guards,
                config=TransferConfig.realistic(steps=200 if not args.tiny else 2),
                device=device,
                progress=args.progress,
            )
            fit_file = Path(tmp) / "g_attack.safetensors"
            maker.save_fit(fit_file)
        if "fit" in parts:
            results["fit"] = fit_part(args, generator, model, guards)
        if "generate" in parts:
            results["generate"] = generate_part(args, generator, model, fit_file)
        if "pgd" in parts:
            results["pgd"] = pgd_part(args, generator, model, fit_file)

    print("\n".join(machine_lines(device)))
    print(
        f"TF32 matmul/cudnn: {torch.backends.cuda.matmul.allow_tf32}/{torch.backends.cudnn.allow_tf32}"
        if device.type == "cuda"
        else ""
    )
    if args.tiny:
        print("TINY untrained networks: the numbers check the script, they measure nothing")
    for name, row in results.get("fit", {}).items():
        print(
            f"fit to {args.goal:.0%}: {name}: "
            + ("not reached" if row is None else f"{row['seconds']:.1f} s ({row['steps']} steps)")
        )
    for name, row in results.get("generate", {}).items():
        print(
            f"RATIO {name}: {row['images_per_second']:,.0f} images/s = {row['ratio']:.2f} of the forward-pass limit "
            f"({row['limit']:,.0f} images/s)"
        )
    for name, row in results.get("pgd", {}).items():
        print(f"{name}: {row['images_per_second']:,.0f} images/s (AT-GAN is {row['at_gan_over_this']:.1f}x this)")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {"machine": machine(device), "args": {k: str(v) for k, v in vars(args).items()}, **results}, indent=2
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
