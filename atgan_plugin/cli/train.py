"""``atgan train-classifier`` and ``atgan train-gan``: the networks the attack runs on."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
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
from atgan_plugin.paper.gan_training import GANTrainingConfig
from atgan_plugin.paper.stylegan2_config import ARCH, StyleGAN2TrainingConfig
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
@click.option(
    "--defense",
    type=click.Choice(["none", "atgan"]),
    default="none",
    show_default=True,
    help="atgan: train on real images mixed with AT-GAN's examples, G_attack refitted as the model trains "
    "(atgan_plugin.defense at its defaults; with --regime normal). Resumes from OUT.state after a kill.",
)
@click.option(
    "--generator",
    "generator_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="G_orig of --defense atgan [default: the shipped Fashion-MNIST generator].",
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
    defense: str,
    generator_path: str | None,
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
    """Train a target classifier (normally, adversarially, or against AT-GAN) or the oracle; print its test accuracy."""
    from atgan_plugin.pretrained import resolve_checkpoint
    from atgan_plugin.workflows.training import AtganDefense, train_and_save_classifier

    options = dict(click.get_current_context().params)
    if defense == "atgan" and regime != "normal":
        raise click.BadParameter(
            f"--defense atgan mixes AT-GAN's examples into normal training; leave out --regime {regime}",
            param_hint="'--defense'",
        )
    if generator_path is not None and defense == "none":
        raise click.BadParameter("--generator is used only by --defense atgan", param_hint="'--generator'")
    atgan = None
    if defense == "atgan":
        generator = str(resolve_checkpoint(generator_path, "generator", dataset))
        atgan = AtganDefense(generator=generator, state=str(Path(out).with_suffix(".state")))
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
        defense=atgan,
    )
    click.echo(f"test accuracy {result['test_accuracy']:.4f}; saved {out}")


# Options of one GAN architecture only, and that architecture (each defaults to None: not given).
_ARCH_ONLY = {
    "critic_steps": "acwgan-gp",
    "kimg": ARCH,
    "r1_gamma": ARCH,
    "ema_kimg": ARCH,
    "channel_base": ARCH,
    "channel_max": ARCH,
    "augment": ARCH,
}
_CONFIGS: dict[str, Any] = {"acwgan-gp": GANTrainingConfig, ARCH: StyleGAN2TrainingConfig}


def _per_arch(name: str) -> str:
    """'[default: <acwgan-gp's> for acwgan-gp, <stylegan2-ada's> for stylegan2-ada]', from the configs."""
    return f"[default: {getattr(GANTrainingConfig, name)} for acwgan-gp, {getattr(StyleGAN2TrainingConfig, name)} for {ARCH}]"


def _stylegan(name: str) -> str:
    return f"[{ARCH} only; default: {getattr(StyleGAN2TrainingConfig, name)}]"


def _settings(arch: str, params: dict[str, Any]) -> dict[str, Any]:
    """The config fields of ``arch`` given on the command line (the rest take the config's defaults);
    refuses the options of the other architecture."""
    for name, owner in _ARCH_ONLY.items():
        if params.get(name) is not None and owner != arch:
            raise click.BadParameter(
                f"applies to --arch {owner} only, not {arch}", param_hint=f"'--{name.replace('_', '-')}'"
            )
    names = {f.name for f in dataclasses.fields(_CONFIGS[arch])}
    settings = {name: value for name, value in params.items() if name in names and value is not None}
    if arch == ARCH and "z_dim" in settings:
        settings["w_dim"] = settings["z_dim"]  # one latent size: z and w alike, as in NVIDIA's presets
    if params.get("kimg") is not None:
        if params.get("steps") is not None:
            raise click.BadParameter("give --steps or --kimg, not both", param_hint="'--kimg'")
        batch_size = settings.get("batch_size", StyleGAN2TrainingConfig.batch_size)
        settings["steps"] = max(1, math.ceil(params["kimg"] * 1000 / batch_size))
    return settings


@click.command("train-gan")
@click.option(
    "--arch",
    type=click.Choice(["acwgan-gp", ARCH]),
    default="acwgan-gp",
    show_default=True,
    help="acwgan-gp: the paper's AC-WGAN_GP (28x28, with its auxiliary classifier); stylegan2-ada: a conditional "
    "StyleGAN2-ADA (our clean-room networks), the images padded with 0 to 32x32 (fixed once training started).",
)
# How long.
@click.option("--steps", type=click.IntRange(min=1), default=None, help=f"Generator updates {_per_arch('steps')}.")
@click.option(
    "--kimg",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help=f"Thousands of real images to show instead of --steps ({ARCH} only; steps = kimg·1000 / batch size).",
)
# Optimisation.
@click.option(
    "--critic-steps",
    type=click.IntRange(min=1),
    default=None,
    help=f"Critic updates per generator update [acwgan-gp only; default: {GANTrainingConfig.critic_steps}].",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help=f"Batch size {_per_arch('batch_size')}.")
@click.option(
    "--lr",
    type=float,
    default=None,
    help=f"Adam learning rate {_per_arch('lr')} (acwgan-gp: β = 0, 0.9; {ARCH}: β = 0, 0.99, scaled by the lazy "
    "regularisation's ratio); a resumed run applies a new value from where it resumes.",
)
@click.option(
    "--r1-gamma",
    type=click.FloatRange(min=0),
    default=None,
    help=f"Weight γ of the R1 penalty on real images, applied every {StyleGAN2TrainingConfig.d_reg_interval} steps "
    f"{_stylegan('r1_gamma')}.",
)
@click.option(
    "--ema-kimg",
    type=click.FloatRange(min=0),
    default=None,
    help=f"Half-life of the generator's moving average G_ema in thousands of images, ramped up over the first "
    f"images {_stylegan('ema_kimg')}.",
)
@click.option(
    "--augment/--no-augment",
    default=None,
    help=f"Adaptive augmentation (integer translation by up to 1/8 of the size; ADA steers its probability) "
    f"[{ARCH} only; default: on].",
)
# Networks (fixed once training started).
@click.option(
    "--z-dim",
    type=click.IntRange(min=1),
    default=None,
    help=f"Latent size {_per_arch('z_dim')} ({ARCH}: z and w; fixed once training started).",
)
@click.option(
    "--channel-base",
    type=click.IntRange(min=1),
    default=None,
    help=f"Channels at resolution r: min(channel-base // r, channel-max) {_stylegan('channel_base')} "
    "(fixed once training started).",
)
@click.option(
    "--channel-max",
    type=click.IntRange(min=1),
    default=None,
    help=f"The most channels at any resolution {_stylegan('channel_max')} (fixed once training started).",
)
@click.option(
    "--train-size",
    type=click.IntRange(min=1),
    default=None,
    help="Use only the first N training images (fixed once training started).",
)
# Files.
@click.option(
    "--checkpoint-every",
    type=click.IntRange(min=1),
    default=250,
    show_default=True,
    help="Steps between writes of the resumable state and the networks: a killed run loses at most this many.",
)
@click.option(
    "--sample-every",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Steps between sample grids (OUT/samples/step_*.png: 8 images per class, one row per class).",
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
    arch: str,
    train_size: int | None,
    out: str,
    dataset: str,
    data_dir: str | None,
    device: str,
    progress: bool,
    **params: Any,
) -> None:
    """Train the original generator G_orig (AC-WGAN_GP, or a conditional StyleGAN2-ADA), with sample grids and
    resumable state.

    Rerun the same command after a kill: it resumes from the last state (at most --checkpoint-every
    steps lost) and completes what is missing. OUT/complete.json marks a finished folder.
    """
    from atgan_plugin.workflows.training import train_gan_into

    settings = _settings(arch, params)
    config = _CONFIGS[arch](**settings)  # every setting, defaults included, as the run will use it
    options: dict[str, Any] = {
        name: value for name, value in click.get_current_context().params.items() if _ARCH_ONLY.get(name, arch) == arch
    }
    options.update({name: getattr(config, name) for name in options if hasattr(config, name)})
    metrics = train_gan_into(
        out,
        arch=arch,
        settings=settings,
        train_size=train_size,
        dataset=dataset,
        data_dir=data_dir,
        device=resolve_device(device),
        progress=progress,
        options=options,
        environment=environment(),
    )
    done = (
        f"done: {json.dumps(metrics)}"
        if metrics
        else f"already trained for {config.steps} steps; completed what was missing"
    )
    click.echo(f"{done}; networks in {out}")
