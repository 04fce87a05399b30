"""``atgan train-classifier`` and ``atgan train-gan``: the networks the attack runs on."""

from __future__ import annotations

import json
from typing import Any

import click

from atgan_plugin.cli.options import (
    data_dir_option,
    dataset_option,
    device_option,
    environment,
    progress_option,
    seed_option,
    user_errors,
)
from atgan_plugin.utils import resolve_device

__all__ = ["train_classifier_command", "train_gan_command"]


@click.command("train-classifier")
@click.option(
    "--arch",
    type=click.Choice(["A", "B", "C", "D", "oracle", "guard"]),
    default="A",
    show_default=True,
    help="Architecture: Tramèr et al.'s Models A-D, the oracle (used only to judge realism), or the guard's "
    "(the distilled guard's small network, here trained on real data).",
)
@click.option(
    "--regime",
    type=click.Choice(["normal", "adv", "ens", "pgd", "fgsm-rs"]),
    default="normal",
    show_default=True,
    help="normal training; adv: ½ clean + ½ FGSM loss (Adv.); ens: the FGSM examples from a model drawn per batch "
    "among this one and the --static-model ones (Ens.); pgd: PGD adversarial training (Iter.); fgsm-rs: fast "
    "adversarial training (FGSM from a random start, the oracle's).",
)
@click.option(
    "--epsilon",
    type=click.FloatRange(min=0),
    default=None,
    help="ℓ∞ budget of adversarial training [default: the dataset's FGSM ε, PGD ε for --regime pgd "
    "(appendix Table 6)].",
)
@click.option(
    "--pgd-steps",
    type=click.IntRange(min=1),
    default=None,
    help="PGD iterations of --regime pgd [default: the dataset's, 20 (appendix Table 6)]; fewer cost less.",
)
@click.option(
    "--pgd-step-size",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="PGD step of --regime pgd [default: the dataset's, 0.01 for Fashion-MNIST (appendix Table 6)].",
)
@click.option(
    "--static-model",
    "static_models",
    type=click.Path(dir_okay=False),
    multiple=True,
    help="A fixed pre-trained classifier checkpoint for --regime ens (repeatable; Tramèr et al. used three).",
)
@click.option("--epochs", type=int, default=6, show_default=True, help="Passes over the training set.")
@click.option("--batch-size", type=int, default=64, show_default=True, help="Batch size.")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate.")
@click.option("--train-size", type=int, default=None, help="Use only the first N training images.")
@click.option("--half/--no-half", default=False, show_default=True, help="Store the weights as float16.")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Output .safetensors file.")
@dataset_option
@data_dir_option
@device_option
@seed_option
@progress_option
@user_errors
def train_classifier_command(
    arch: str,
    regime: str,
    epsilon: float | None,
    pgd_steps: int | None,
    pgd_step_size: float | None,
    static_models: tuple[str, ...],
    epochs: int,
    batch_size: int,
    lr: float,
    train_size: int | None,
    half: bool,
    out: str,
    dataset: str,
    data_dir: str | None,
    device: str,
    seed: int,
    progress: bool,
) -> None:
    """Train a target classifier (normally or adversarially) or the oracle; print its test accuracy."""
    from atgan_plugin.workflows.training import train_and_save_classifier

    options = dict(click.get_current_context().params)
    if static_models and regime != "ens":
        raise click.BadParameter(
            f"static models are used only by --regime ens, not {regime}", param_hint="'--static-model'"
        )
    if regime == "ens" and not static_models:
        raise click.BadParameter(
            "--regime ens needs at least one --static-model (a fixed pre-trained classifier)",
            param_hint="'--static-model'",
        )
    result = train_and_save_classifier(
        arch=arch,
        regime=regime,
        epsilon=epsilon,
        pgd_steps=pgd_steps,
        pgd_step_size=pgd_step_size,
        static_models=static_models,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        train_size=train_size,
        half=half,
        out=out,
        dataset=dataset,
        data_dir=data_dir,
        device=resolve_device(device),
        seed=seed,
        progress=progress,
        record={"options": options, "environment": environment()},
    )
    click.echo(f"test accuracy {result['test_accuracy']:.4f}; saved {out}")


@click.command("train-gan")
@click.option("--steps", type=click.IntRange(min=1), default=6000, show_default=True, help="Generator updates.")
@click.option(
    "--critic-steps",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Critic updates per generator update.",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Batch size.")
@click.option(
    "--lr",
    type=float,
    default=2e-4,
    show_default=True,
    help="Adam learning rate (β = 0, 0.9); a resumed run applies a new value from where it resumes.",
)
@click.option(
    "--z-dim",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Latent size (fixed once training started).",
)
@click.option(
    "--train-size",
    type=click.IntRange(min=1),
    default=None,
    help="Use only the first N training images (fixed once training started).",
)
@click.option(
    "--checkpoint-every",
    type=click.IntRange(min=1),
    default=250,
    show_default=True,
    help="Steps between writes of the resumable state and the networks: a killed run loses at most this many.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    required=True,
    help="Output folder; training resumes from OUT/state.pt when it exists, and a finished folder is left as it is.",
)
@dataset_option
@data_dir_option
@device_option
@seed_option
@progress_option
@user_errors
def train_gan_command(
    steps: int,
    critic_steps: int,
    batch_size: int,
    lr: float,
    z_dim: int,
    train_size: int | None,
    checkpoint_every: int,
    out: str,
    dataset: str,
    data_dir: str | None,
    device: str,
    seed: int,
    progress: bool,
) -> None:
    """Train the original generator G_orig (AC-WGAN_GP), with sample grids and resumable state.

    Rerun the same command after a kill: it resumes from the last state (at most --checkpoint-every
    steps lost) and completes what is missing. OUT/complete.json marks a finished folder.
    """
    from atgan_plugin.workflows.training import train_gan_into

    options: dict[str, Any] = dict(click.get_current_context().params)
    metrics = train_gan_into(
        out,
        steps=steps,
        critic_steps=critic_steps,
        batch_size=batch_size,
        lr=lr,
        z_dim=z_dim,
        checkpoint_every=checkpoint_every,
        train_size=train_size,
        dataset=dataset,
        data_dir=data_dir,
        device=resolve_device(device),
        seed=seed,
        progress=progress,
        options=options,
        environment=environment(),
    )
    done = (
        f"done: {json.dumps(metrics)}" if metrics else f"already trained for {steps} steps; completed what was missing"
    )
    click.echo(f"{done}; networks in {out}")
