"""``atgan evaluate`` and ``atgan demo``: fit (or load) AT-GAN, then measure it and write a run folder."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from atgan_plugin.attack.config import TransferConfig
from atgan_plugin.cli.options import (
    Targets,
    checkpoint_options,
    count_option,
    data_dir_option,
    dataset_option,
    device_option,
    fit_options,
    guard_cache_option,
    guard_option,
    guard_spec,
    new_run,
    note,
    parse_targets,
    progress_option,
    resolve_targets,
    runs_dir_option,
    scale_options,
    seed_option,
    session,
    user_errors,
)
from atgan_plugin.report import write_report
from atgan_plugin.report_summary import summary_sentences, target_name
from atgan_plugin.utils import seed_everything

if TYPE_CHECKING:  # imported lazily below: it pulls in foolbox and advertorch
    from atgan_plugin.paper.evaluation import EvaluationReport

__all__ = ["demo_command", "evaluate_command"]


def _run_evaluation(
    *,
    generator_path: str | None,
    model_path: str | None,
    oracle_path: str | None,
    features_path: str | None,
    guard_specs: tuple[str, ...],
    guard_cache_dir: str | None,
    dataset: str,
    data_dir: str | None,
    n: int,
    targets: Targets,
    fit_paths: tuple[str, ...],
    save_fits: bool,
    runs_dir: str,
    run_name: str,
    device: str,
    seed: int,
    progress: bool,
    hyper: dict[str, Any],
) -> tuple[Path, EvaluationReport, list[str]] | None:
    """What ``evaluate`` and ``demo`` share: load, fit (or load fits), evaluate, write report and grids.

    Under torchrun every process takes part in the fit and rank 0 alone evaluates and writes; the
    others get ``None``.
    """
    from atgan_plugin.workflows.evaluation import write_evaluation
    from atgan_plugin.workflows.networks import at_dataset_size, build_attack, load_networks, realism_judge

    dev, group = session(device)
    main = group is None or group.is_main
    seed_everything(seed)
    networks, checkpoints = load_networks(dev, generator=generator_path, model=model_path, oracle=oracle_path)
    networks["generator"] = at_dataset_size(networks["generator"], dataset, note if main else lambda _: None)
    guard, guard_record = guard_spec(guard_specs, dev)
    checkpoints["guard"] = ", ".join(guard_record)
    frechet, features = (
        realism_judge(features_path, networks["generator"], dataset, data_dir, dev, note) if main else (None, None)
    )
    if features is not None:
        checkpoints["features"] = features
    target_list = resolve_targets(targets, int(networks["generator"].num_classes))  # type: ignore[arg-type]
    attack = build_attack(
        networks,
        dev,
        seed=seed,
        progress=progress,
        hyper=hyper,
        guard=guard,
        guard_cache_dir=guard_cache_dir,
        group=group,
    )
    for path in fit_paths:
        fit = attack.load_fit(path, model=networks["model"])
        if fit.target is not None and fit.target not in target_list:
            raise click.BadParameter(
                f"{path} holds a fit for target {fit.target}, which this evaluation does not "
                f"include (add it to --targets)",
                param_hint="'--fit'",
            )
    run_dir = new_run(runs_dir, run_name, checkpoints, attack.config) if main else None
    start = time.perf_counter()
    # Every setting not loaded, in one run (every process under torchrun).
    attack.fit(networks["model"], targets=[None, *target_list])
    fit_seconds = time.perf_counter() - start
    if run_dir is None:
        return None
    report, outputs = write_evaluation(
        attack,
        networks,
        run_dir,
        target_list,
        n=n,
        seed=seed,
        frechet=frechet,
        fit_seconds=fit_seconds,
        checkpoints=checkpoints,
        save_fitted=save_fits,
    )
    return run_dir, report, outputs


@click.command("evaluate")
@checkpoint_options("generator", "model", "oracle", "features")
@guard_option
@guard_cache_option
@dataset_option
@data_dir_option
@count_option(10_000, "Fresh examples per setting (generation is one forward pass, so this is cheap).")
@click.option(
    "--targets",
    default="none",
    show_default=True,
    callback=parse_targets,
    help='Targets to evaluate besides the untargeted setting: "all", "none" or e.g. "0,3,7".',
)
@click.option(
    "--fit",
    "fit_paths",
    type=click.Path(dir_okay=False),
    multiple=True,
    help="Reuse a saved G_attack instead of fitting its setting (repeatable; the file records its target).",
)
@click.option(
    "--save-fits/--no-save-fits",
    default=False,
    show_default=True,
    help="Also write every fitted G_attack into the run folder (about 27 MB each).",
)
@fit_options()
@scale_options
@runs_dir_option
@device_option
@seed_option
@progress_option
@user_errors
def evaluate_command(
    generator_path: str | None,
    model_path: str | None,
    oracle_path: str | None,
    features_path: str | None,
    guard_specs: tuple[str, ...],
    guard_cache_dir: str | None,
    dataset: str,
    data_dir: str | None,
    n: int,
    targets: Targets,
    fit_paths: tuple[str, ...],
    save_fits: bool,
    runs_dir: str,
    device: str,
    seed: int,
    progress: bool,
    **hyper: Any,
) -> None:
    """Measure AT-GAN: success, realism (oracle agreement, robust-feature Fréchet distance, added
    edges), distance to G_orig, throughput.

    Evaluation examples are drawn from --seed + 1, independently of the fit. Writes report.json,
    grid.png (G_orig / AT-GAN / difference), rejected.png (successes the oracle rejected), targets.png
    (with --targets all), options.json and report.html, which opens with the answer.
    """
    result = _run_evaluation(
        generator_path=generator_path,
        model_path=model_path,
        oracle_path=oracle_path,
        features_path=features_path,
        guard_specs=guard_specs,
        guard_cache_dir=guard_cache_dir,
        dataset=dataset,
        data_dir=data_dir,
        n=n,
        targets=targets,
        fit_paths=fit_paths,
        save_fits=save_fits,
        runs_dir=runs_dir,
        run_name="evaluate",
        device=device,
        seed=seed,
        progress=progress,
        hyper=hyper,
    )
    if result is None:  # a torchrun process other than rank 0: it took part in the fit
        return
    run_dir, report, outputs = result
    click.echo(report.table())
    if report.untargeted is not None:
        click.echo("\n".join(summary_sentences(report.untargeted, target_name(model_path))))
    click.echo(f"outputs in {run_dir}: {', '.join(outputs)}")
    click.echo(f"report: {write_report(run_dir)}")


@click.command("demo")
@checkpoint_options("generator", "model", "oracle", "features")
@guard_option
@guard_cache_option
@dataset_option
@data_dir_option
@count_option(2_000, "Examples to evaluate.")
@fit_options()
@scale_options
@runs_dir_option
@device_option
@seed_option
@progress_option
@user_errors
def demo_command(
    generator_path: str | None,
    model_path: str | None,
    oracle_path: str | None,
    features_path: str | None,
    guard_specs: tuple[str, ...],
    guard_cache_dir: str | None,
    dataset: str,
    data_dir: str | None,
    n: int,
    runs_dir: str,
    device: str,
    seed: int,
    progress: bool,
    **hyper: Any,
) -> None:
    """Fit AT-GAN against the shipped Model A (untargeted) and evaluate it: a few minutes on a CPU."""
    from atgan_plugin.attack.distributed import launched_by_torchrun

    start = time.perf_counter()
    target = target_name(model_path)
    if not launched_by_torchrun() or os.environ.get("RANK") == "0":
        guarded = tuple(guard_specs) != ("none",) and hyper.get("gamma") != 0
        preset = TransferConfig.realistic() if guarded else TransferConfig.paper()
        steps = hyper["steps"] if hyper.get("steps") is not None else preset.steps
        longest = f", {steps * (1 + preset.stretch):,} if the fit lags" if preset.stretch else ""
        click.echo(
            f"AT-GAN demo: fitting G_attack against {target} ({steps:,} steps{longest}), then judging "
            f"{n:,} fresh examples with the oracle."
        )
    result = _run_evaluation(
        generator_path=generator_path,
        model_path=model_path,
        oracle_path=oracle_path,
        features_path=features_path,
        guard_specs=guard_specs,
        guard_cache_dir=guard_cache_dir,
        dataset=dataset,
        data_dir=data_dir,
        n=n,
        targets="none",
        fit_paths=(),
        save_fits=True,
        runs_dir=runs_dir,
        run_name="demo",
        device=device,
        seed=seed,
        progress=progress,
        hyper=hyper,
    )
    if result is None:
        return
    run_dir, report, outputs = result
    click.echo(report.table())
    if report.untargeted is not None:  # the same sentences report.html opens with
        click.echo("\n".join(summary_sentences(report.untargeted, target)))
    click.echo(f"done in {time.perf_counter() - start:.0f} s; outputs in {run_dir}: {', '.join(outputs)}")
    click.echo(f"next: atgan attack --fit {run_dir / 'g_attack.safetensors'} -n 64")
    click.echo(f"report: {write_report(run_dir)}")
