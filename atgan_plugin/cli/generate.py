"""``atgan generate``: many adversarial examples from a saved fit, as resumable shards plus a manifest."""

from __future__ import annotations

from pathlib import Path

import click

from atgan_plugin.attack.attack_options import AttackOptions
from atgan_plugin.attack.config import SEARCH_STEPS_RANGE, TransferConfig
from atgan_plugin.attack.precision import PRECISIONS
from atgan_plugin.cli.options import (
    checkpoint_options,
    count_option,
    device_option,
    environment,
    progress_option,
    seed_option,
    session,
    user_errors,
)

__all__ = ["generate_command"]


@click.command("generate")
@click.option(
    "--fit",
    "fit_path",
    type=click.Path(dir_okay=False),
    required=True,
    help="The G_attack to generate with: a file of `atgan fit`, `atgan demo`, `atgan attack` or "
    "ATGANAttack.save_fit (it records its target).",
)
@count_option(None, "Adversarial examples to generate in all.")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    required=True,
    help="Output folder: shard-NNNNNN.safetensors files and manifest.json; a folder holding an "
    "interrupted run of the same settings is resumed.",
)
@checkpoint_options(
    "generator",
    "model",
    help_text={
        "model": "Target classifier the shrink keeps fooled (atgan train-classifier) [default: the shipped "
        "Fashion-MNIST Model A; not read with --search-steps 0]."
    },
)
@click.option(
    "--shard-size", type=click.IntRange(min=1), default=10_000, show_default=True, help="Examples per shard file."
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Examples per generation call (memory, not results).",
)
@click.option(
    "--search-steps",
    type=click.IntRange(*SEARCH_STEPS_RANGE),
    default=TransferConfig.realistic().search_steps,
    show_default=True,
    help="Search passes of the per-example shrink towards G_orig's image (search-steps + 2 passes of the "
    "model per example); 0: G_attack's image as it is, no model needed.",
)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default=AttackOptions().precision,
    show_default=True,
    help="bf16: the forward passes under bf16 autocast (GPUs with bf16 tensor cores).",
)
@click.option(
    "--compile/--no-compile",
    "compile_",
    default=False,
    show_default=True,
    help="torch.compile G_attack, G_orig and the model first (GPU throughput; compiling takes a while).",
)
@device_option
@seed_option
@progress_option
@user_errors
def generate_command(
    fit_path: str,
    n: int,
    out: str,
    generator_path: str | None,
    model_path: str | None,
    shard_size: int,
    batch_size: int,
    search_steps: int,
    precision: str,
    compile_: bool,
    device: str,
    seed: int,
    progress: bool,
) -> None:
    """Generate N adversarial examples from a saved fit, as safetensors shards plus DIR/manifest.json.

    Each shard holds images (float32 in [0, 1]), source_labels and, for a targeted fit, target_labels;
    shard i's examples come from its own seed, so a killed run resumes where it stopped (rerun the same
    command) and never writes a shard twice. Under torchrun each process writes its own shards
    (shard i by rank i mod N) and rank 0 writes the manifest; the folder must be shared by all nodes.
    """
    from atgan_plugin.attack.atgan import ATGANAttack
    from atgan_plugin.attack.generation import GenerationError, GenerationPlan, ModelNotNeeded, file_sha256
    from atgan_plugin.workflows.generation import generate_into, prepare_folder
    from atgan_plugin.workflows.networks import load_networks

    dev, group = session(device)
    if search_steps > 0:
        networks, checkpoints = load_networks(dev, generator=generator_path, model=model_path)
    else:
        networks, checkpoints = load_networks(dev, generator=generator_path)
        networks["model"] = ModelNotNeeded()
    model = networks["model"]
    attack = ATGANAttack(
        model,
        generator=networks["generator"],
        config=TransferConfig.realistic(search_steps=search_steps),  # only the shrink matters: the fit is loaded
        guard=None,
        options=AttackOptions(precision=precision, compile=compile_),
        device=dev,
        seed=seed,
        progress=False,
    )
    fit = attack.load_fit(fit_path, model=model)
    out_dir = Path(out)
    try:
        plan = GenerationPlan(
            total=n,
            shard_size=shard_size,
            seed=seed,
            target=fit.target,
            search_steps=search_steps,
            precision=precision,
            fit_sha256=file_sha256(fit_path),
            generator_sha256=file_sha256(checkpoints["generator"]),
            model_sha256=file_sha256(checkpoints["model"]) if search_steps > 0 else None,
        )
        prepare_folder(out_dir, plan, group, image_shape=tuple(attack.generator.image_shape))
        outcome = generate_into(
            attack,
            model,
            plan,
            out_dir,
            group=group,
            batch_size=batch_size,
            progress=progress,
            fit={"path": str(fit_path), "target": fit.target},
            checkpoints=checkpoints,
            environment=environment(),
        )
    except GenerationError as error:
        raise click.ClickException(str(error)) from error
    if outcome is None:  # a torchrun process other than rank 0: it wrote its shards
        return
    made, seconds = outcome.made_now, outcome.seconds
    speed = f"; {made / seconds:,.0f} images/s over {outcome.processes} process(es)" if made and seconds > 0 else ""
    shards = f"{plan.total:,} examples in {plan.num_shards} shard(s)"
    click.echo(f"{shards} ({made:,} made now{speed}); manifest: {outcome.manifest}")
