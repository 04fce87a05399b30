"""``atgan reproduce`` and ``atgan reproduce-merge``: the paper's evaluation tables, in one run or joined parts."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from atgan_plugin.cli.options import (
    TRANSFER_GUARD_HELP,
    checkpoint_options,
    count_option,
    data_dir_option,
    dataset_option,
    device_option,
    environment,
    fit_options,
    guard_cache_option,
    guard_option,
    guard_spec,
    new_run,
    note,
    progress_option,
    runs_dir_option,
    seed_option,
    user_errors,
)
from atgan_plugin.data import load_dataset
from atgan_plugin.paper.reproduce.settings import TABLE_1_ATGAN
from atgan_plugin.report import write_report
from atgan_plugin.utils import resolve_device, seed_everything

__all__ = ["reproduce_command", "reproduce_merge_command"]

QUICK = {"n": 16, "song_steps": 3, "steps": 3, "batch_size": 8}  # --quick sizes, for options left at their default


@click.command("reproduce")
@dataset_option
@click.option(
    "--checkpoints",
    "checkpoints_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder of target checkpoints named A-nor.safetensors, A-adv, A-ens, A-iter, ... D-iter; absent ones are "
    "reported as missing [default: the 16 shipped Fashion-MNIST targets].",
)
@click.option(
    "--quick",
    is_flag=True,
    default=False,
    help="Tiny sizes for an end-to-end check in seconds: options left at their default become --n 16, "
    "--song-steps 3, --steps 3, --batch-size 8. Its numbers say nothing about the methods.",
)
@count_option(1000, "Examples per (attack, model).")
@click.option(
    "--song-steps",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="Steps of Song et al.'s search (paper: 200).",
)
@click.option(
    "--song-lr",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Learning rate of Song et al.'s search (paper: 1).",
)
@click.option(
    "--toolkit",
    type=click.Choice(["advertorch", "foolbox"]),
    default="advertorch",
    show_default=True,
    help="Toolkit that runs FGSM, PGD and R+FGSM.",
)
@click.option(
    "--ablation/--no-ablation", default=True, show_default=True, help="Measure the ρ ablation (Tables 8 and 9)."
)
@click.option(
    "--figures/--no-figures", default=True, show_default=True, help="Write the Figure 8 and Figure 10/11 grids."
)
@checkpoint_options("generator", "oracle", "features")
@guard_option
@guard_cache_option
@click.option(
    "--transfer-guard",
    "transfer_guard_paths",
    type=click.Path(dir_okay=False),
    multiple=True,
    help=TRANSFER_GUARD_HELP,
)
@fit_options(TABLE_1_ATGAN)  # the paper's fit settings, whatever the guards
@data_dir_option
@runs_dir_option
@device_option
@seed_option
@progress_option
@user_errors
def reproduce_command(
    dataset: str,
    checkpoints_dir: str | None,
    quick: bool,
    n: int,
    song_steps: int,
    song_lr: float,
    toolkit: str,
    ablation: bool,
    figures: bool,
    generator_path: str | None,
    oracle_path: str | None,
    features_path: str | None,
    guard_specs: tuple[str, ...],
    guard_cache_dir: str | None,
    transfer_guard_paths: tuple[str, ...],
    data_dir: str | None,
    runs_dir: str,
    device: str,
    seed: int,
    progress: bool,
    **hyper: Any,
) -> None:
    """Reproduce the paper's evaluation: success of FGSM, PGD, R+FGSM, Song et al. and AT-GAN against
    Models A-D x {Nor., Adv., Ens., Iter.}, transfer A -> C, the rho ablation, realism, time, figures.

    Writes results.md and results.json (with the command and the machine), the figures and
    options.json into a new numbered run folder. By default it runs on the 16 shipped Fashion-MNIST
    targets with the attack's defaults. The full size (1,000 examples, 200 search steps, 1,000 fit
    steps) is meant for a GPU; on a CPU, run one architecture per core with --checkpoints and join
    the runs with `atgan reproduce-merge` (docs/results/README.md; results in
    docs/results/fashion-mnist.md).
    """
    from atgan_plugin.attack.config import TransferConfig
    from atgan_plugin.paper.reproduce import ReproduceConfig, reproduce
    from atgan_plugin.paper.song import SETTINGS as SONG_SETTINGS
    from atgan_plugin.workflows.networks import FIT_PARAMETERS, load_networks, load_transfer_guards, realism_judge
    from atgan_plugin.workflows.reproduce import load_targets, write_results

    ctx = click.get_current_context()
    sizes = {"n": n, "song_steps": song_steps, "steps": hyper["steps"], "batch_size": hyper["batch_size"]}
    if quick:
        sizes = {
            k: (QUICK[k] if ctx.get_parameter_source(k) == ParameterSource.DEFAULT else v) for k, v in sizes.items()
        }
    hyper = {**hyper, "steps": sizes["steps"], "batch_size": sizes["batch_size"]}
    dev = resolve_device(device)
    seed_everything(seed)

    # Load everything before the run folder exists, so a bad path leaves nothing behind.
    networks, checkpoints = load_networks(dev, generator=generator_path, oracle=oracle_path)
    guard, guard_record = guard_spec(guard_specs, dev)
    checkpoints["guard"] = ", ".join(guard_record)
    transfer_guards, checkpoints["transfer_guard"] = load_transfer_guards(transfer_guard_paths, generator_path, dev)
    frechet, features = realism_judge(features_path, networks["generator"], dataset, data_dir, dev, note)
    if features is not None:
        checkpoints["features"] = features
    models, models_info, target_paths = load_targets(checkpoints_dir, dataset, dev)
    checkpoints.update(target_paths)
    test = load_dataset(dataset, "test", data_dir)
    song = SONG_SETTINGS.get(dataset, SONG_SETTINGS["fashion-mnist"])
    fit = {k: hyper[k] for k in FIT_PARAMETERS}
    config = ReproduceConfig(
        dataset=dataset,
        n=sizes["n"],
        atgan=TransferConfig(seed=seed, **fit),
        song=replace(song, steps=sizes["song_steps"], lr=song_lr, seed=seed),
        toolkit=toolkit,
        ablation=ablation,
        figures=figures,
        quick=quick,
        seed=seed,
    )
    run_dir = new_run(runs_dir, "reproduce", checkpoints)

    click.echo(
        f"reproducing on {len(models)} of 16 target checkpoints ({', '.join(models)}), {config.n} examples each"
        f"{' (quick)' if quick else ''}"
    )
    report = reproduce(
        models,
        networks["generator"],
        networks["oracle"],
        test,
        config,
        guard=guard,
        guard_cache_dir=guard_cache_dir,
        transfer_guards=transfer_guards,
        frechet=frechet,
        out_dir=run_dir,
        device=dev,
        progress=progress,
        models_info=models_info,
        environment=environment(),
        log=lambda message: click.echo(f"  {message}"),
    )
    outputs = write_results(run_dir, report)
    click.echo(f"done in {report['seconds']:.0f} s; outputs in {run_dir}: {', '.join(outputs)}")
    click.echo(f"report: {write_report(run_dir)}")


@click.command("reproduce-merge")
@click.argument("parts", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True))
@runs_dir_option
@user_errors
def reproduce_merge_command(parts: tuple[str, ...], runs_dir: str) -> None:
    """Merge `atgan reproduce` runs over disjoint checkpoints into one report.

    PARTS are run folders (each with results.json), e.g. one run per architecture made side by side
    on a CPU's cores. They must share the dataset, sizes and settings (--ablation and --figures may
    differ). Writes results.md, results.json and the parts' figures into a new numbered run folder.
    """
    from atgan_plugin.workflows.reproduce import read_parts, write_merged

    folders = [Path(part) for part in parts]
    merged, figures = read_parts(folders, environment())
    run_dir = new_run(
        runs_dir, "reproduce-merge", {f"part{i}": str(folder) for i, folder in enumerate(folders, start=1)}
    )
    write_merged(run_dir, merged, figures)
    click.echo(f"merged {len(folders)} runs ({len(merged['white_box'])} of 16 target checkpoints) into {run_dir}")
