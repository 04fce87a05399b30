"""``atgan attack`` and ``atgan fit``: fit G_attack against a model, and make examples with it."""

from __future__ import annotations

import time
from typing import Any

import click

from atgan_plugin.cli.options import (
    Targets,
    checkpoint_options,
    count_option,
    device_option,
    fit_options,
    guard_cache_option,
    guard_option,
    guard_spec,
    new_run,
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
from atgan_plugin.utils import seed_everything

__all__ = ["attack_command", "fit_command"]


@click.command("attack")
@checkpoint_options("generator", "model")
@guard_option
@guard_cache_option
@click.option(
    "--target",
    type=click.IntRange(min=0),
    default=None,
    help="Target class; untargeted when left out (with --fit: the fit's own target).",
)
@click.option(
    "--targets",
    "several",
    default="none",
    show_default=True,
    callback=parse_targets,
    help='Several targets instead of --target, fitted together in one run: "all" or e.g. "0,3,7"; example i '
    "gets target i mod K.",
)
@count_option(100, "Adversarial examples to generate.")
@click.option(
    "--fit",
    "fit_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Reuse a G_attack saved by an earlier run (g_attack.safetensors) instead of fitting.",
)
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["safetensors", "pt"]),
    default="safetensors",
    show_default=True,
    help="File format of the adversarial examples.",
)
@fit_options()
@scale_options
@runs_dir_option
@device_option
@seed_option
@progress_option
@user_errors
def attack_command(
    generator_path: str | None,
    model_path: str | None,
    guard_specs: tuple[str, ...],
    guard_cache_dir: str | None,
    target: int | None,
    several: Targets,
    n: int,
    fit_path: str | None,
    file_format: str,
    runs_dir: str,
    device: str,
    seed: int,
    progress: bool,
    **hyper: Any,
) -> None:
    """Fit AT-GAN against a model (or load a fit) and generate adversarial examples.

    Writes adversarial.safetensors (images in [0, 1], source_labels, predicted_labels and, when
    targeted, target_labels), the fitted G_attack (one file per target), a G_orig / AT-GAN /
    difference grid and options.json into a new numbered run folder. Under torchrun every process
    takes part in the fit; rank 0 generates and writes.
    """
    from atgan_plugin.workflows.adversarial import write_attack_run
    from atgan_plugin.workflows.networks import build_attack, load_networks

    dev, group = session(device)
    seed_everything(seed)
    networks, checkpoints = load_networks(dev, generator=generator_path, model=model_path)
    generator, model = networks["generator"], networks["model"]
    guard, guard_record = guard_spec(guard_specs, dev)
    checkpoints["guard"] = ", ".join(guard_record)
    num_classes = int(generator.num_classes)  # type: ignore[arg-type]
    if target is not None and target >= num_classes:
        raise click.BadParameter(
            f"{target} is outside [0, {num_classes}) (the generator's classes)", param_hint="'--target'"
        )
    several_list = resolve_targets(several, num_classes)
    if several_list and (target is not None or fit_path is not None):
        raise click.BadParameter(
            "--targets fits several targets; leave out --target and --fit", param_hint="'--targets'"
        )
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
    if fit_path is not None:
        fit = attack.load_fit(fit_path, model=model)
        if target is not None and fit.target != target:
            fitted = "untargeted" if fit.target is None else f"for target {fit.target}"
            raise click.BadParameter(
                f"{fit_path} was fitted {fitted}, not for target {target}", param_hint="'--target'"
            )
        target = fit.target
        checkpoints["fit"] = str(fit_path)
    settings: list[int | None] = list(several_list) if several_list else [target]
    run_dir = new_run(runs_dir, "attack", checkpoints, attack.config) if group is None or group.is_main else None
    attack.fit(model, targets=settings)  # fit now, all settings in one run (a no-op after --fit)
    if run_dir is None:  # a torchrun process other than rank 0: it took part in the fit
        return
    run = write_attack_run(
        attack,
        model,
        generator,
        run_dir,
        settings,
        n=n,
        seed=seed,
        device=dev,
        file_format=file_format,
        save_fitted=fit_path is None,
    )
    if not run.targeted:
        click.echo(f"{n} adversarial examples (untargeted): the model misclassifies {run.fooled_rate:.1%}")
    elif len(settings) == 1:
        click.echo(
            f"{n} adversarial examples (target {target}): the model outputs class {target} for {run.fooled_rate:.1%}"
        )
    else:
        click.echo(
            f"{n} adversarial examples over targets {settings}: the model outputs the example's target for "
            f"{run.fooled_rate:.1%}"
        )
    click.echo(f"outputs in {run_dir}: {', '.join(run.outputs)}")
    click.echo(f"report: {write_report(run_dir)}")


@click.command("fit")
@checkpoint_options("generator", "model")
@guard_option
@guard_cache_option
@click.option(
    "--targets",
    default="none",
    show_default=True,
    callback=parse_targets,
    help='Targets to fit besides the untargeted setting, all in one run: "all", "none" or e.g. "0,3,7".',
)
@click.option("--untargeted/--no-untargeted", default=True, show_default=True, help="Also fit the untargeted setting.")
@fit_options()
@scale_options
@runs_dir_option
@device_option
@seed_option
@progress_option
@user_errors
def fit_command(
    generator_path: str | None,
    model_path: str | None,
    guard_specs: tuple[str, ...],
    guard_cache_dir: str | None,
    targets: Targets,
    untargeted: bool,
    runs_dir: str,
    device: str,
    seed: int,
    progress: bool,
    **hyper: Any,
) -> None:
    """Fit G_attack against a model for each setting (together, in one run) and save the fits.

    Writes g_attack.safetensors (untargeted) and g_attack-target<K>.safetensors, summary.json (each
    fit's configuration and history) and options.json into a new numbered run folder; give a file to
    `atgan generate --fit` or `atgan attack --fit`. Under torchrun the fit runs data-parallel.
    """
    from atgan_plugin import runs
    from atgan_plugin.workflows.fits import fit_summary, save_fits
    from atgan_plugin.workflows.networks import build_attack, load_networks

    dev, group = session(device)
    seed_everything(seed)
    networks, checkpoints = load_networks(dev, generator=generator_path, model=model_path)
    guard, guard_record = guard_spec(guard_specs, dev)
    checkpoints["guard"] = ", ".join(guard_record)
    settings: list[int | None] = [None] if untargeted else []
    settings += resolve_targets(targets, int(networks["generator"].num_classes))  # type: ignore[arg-type]
    if not settings:
        raise click.BadParameter("nothing to fit: give --targets or leave --untargeted on", param_hint="'--targets'")
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
    run_dir = new_run(runs_dir, "fit", checkpoints, attack.config) if group is None or group.is_main else None
    start = time.perf_counter()
    fits = attack.fit(networks["model"], targets=settings)
    seconds = time.perf_counter() - start
    if run_dir is None:
        return
    outputs = ["options.json", *save_fits(attack, networks["model"], run_dir, fits)]
    processes = 1 if group is None else group.world_size
    summary = {"fit_seconds": seconds, "processes": processes, "fits": [fit_summary(fit) for fit in fits.values()]}
    runs.write_json(run_dir / "summary.json", summary)
    outputs.append("summary.json")
    for target, fit in fits.items():
        final = fit.history[-1] if fit.history else {}
        setting = "untargeted" if target is None else f"target {target}"
        click.echo(f"{setting}: batch success {final.get('success', 0):.3f} at step {final.get('step', 0)}")
    click.echo(
        f"{len(fits)} fit(s) in {seconds:.0f} s on {processes} process(es); outputs in {run_dir}: {', '.join(outputs)}"
    )
