"""The ``atgan`` command line: train, attack, evaluate, demo.

Each command writes the options it ran with (``options.json``) next to its outputs. Errors a
user can fix (missing data, bad checkpoint, bad option) come out through click as one line,
never as a traceback.
"""

from __future__ import annotations

import functools
import json
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import torch

from atgan_plugin import runs
from atgan_plugin.checkpoints import CheckpointError
from atgan_plugin.data import DATASETS, DatasetNotFoundError, load_dataset
from atgan_plugin.utils import resolve_device, seed_everything

F = TypeVar("F", bound=Callable[..., Any])

# Shared options.
_device_option = click.option(
    "--device", default="auto", show_default=True, help="auto (CUDA when available), cpu, cuda or cuda:N."
)
_dataset_option = click.option(
    "--dataset", type=click.Choice(sorted(DATASETS)), default="fashion-mnist", show_default=True, help="Dataset name."
)
_data_dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False), default=None,
    help="Folder with the IDX files or a torchvision root (default: the Debian package's folder).",
)  # fmt: skip
_seed_option = click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
_progress_option = click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars.")


def _user_errors(func: F) -> F:
    """Turns the errors a user can fix into click errors (one line, exit code 1 or 2)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (DatasetNotFoundError, CheckpointError, FileNotFoundError) as error:
            raise click.ClickException(str(error)) from error
        except ValueError as error:
            raise click.UsageError(str(error)) from error

    return wrapper  # type: ignore[return-value]


def _environment() -> dict[str, str]:
    return {"python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform(),
            "command": " ".join(["atgan", *sys.argv[1:]])}  # fmt: skip


@click.group()
@click.version_option(package_name="atgan-plugin")
def main() -> None:
    """AT-GAN: fine-tune a conditional GAN into an adversarial generator, and use it."""


@main.command("train-classifier")
@click.option("--arch", type=click.Choice(["A", "B", "C", "D", "oracle"]), default="A", show_default=True,
              help="Architecture: Tramèr et al.'s Models A-D, or the oracle (used only to judge realism).")
@click.option("--regime", type=click.Choice(["normal", "fgsm-rs"]), default="normal", show_default=True,
              help="normal training, or fast adversarial training (FGSM from a random start).")
@click.option("--epsilon", type=float, default=0.1, show_default=True, help="ℓ∞ budget of adversarial training.")
@click.option("--epochs", type=int, default=6, show_default=True, help="Passes over the training set.")
@click.option("--batch-size", type=int, default=64, show_default=True, help="Batch size.")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate.")
@click.option("--train-size", type=int, default=None, help="Use only the first N training images.")
@click.option("--half/--no-half", default=False, show_default=True, help="Store the weights as float16.")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Output .safetensors file.")
@_dataset_option
@_data_dir_option
@_device_option
@_seed_option
@_progress_option
@_user_errors
def train_classifier_command(
    arch: str, regime: str, epsilon: float, epochs: int, batch_size: int, lr: float, train_size: int | None,
    half: bool, out: str, dataset: str, data_dir: str | None, device: str, seed: int, progress: bool,
) -> None:  # fmt: skip
    """Train a target classifier or the oracle; print its test accuracy."""
    from atgan_plugin.classifier_training import ClassifierTrainingConfig, accuracy, train_classifier
    from atgan_plugin.models import build_classifier, load_classifier, save_classifier

    options = dict(click.get_current_context().params)
    dev = resolve_device(device)
    seed_everything(seed)
    train = load_dataset(dataset, "train", data_dir)
    test = load_dataset(dataset, "test", data_dir)
    if train_size is not None:
        train = train.subset(train_size)
    config = ClassifierTrainingConfig(epochs=epochs, batch_size=batch_size, lr=lr, regime=regime, epsilon=epsilon, seed=seed)
    model = build_classifier(arch, num_classes=10, in_channels=train.images.shape[1])
    result = train_classifier(model, train, test, config, device=dev, progress=progress)
    training = {**result, "dataset": dataset, "options": options, "environment": _environment()}
    save_classifier(out, model, {"architecture": arch, "num_classes": 10, "in_channels": train.images.shape[1]}, training, half=half)
    if half:  # report what the stored float16 weights give, not the float32 ones
        training["test_accuracy_stored"] = accuracy(load_classifier(out, dev), test, device=dev)
        save_classifier(out, model, {"architecture": arch, "num_classes": 10, "in_channels": train.images.shape[1]}, training, half=half)
    runs.write_json(Path(out).with_suffix(".json"), training)
    click.echo(f"test accuracy {result['test_accuracy']:.4f}; saved {out}")


@main.command("train-gan")
@click.option("--steps", type=int, default=6000, show_default=True, help="Generator updates.")
@click.option("--critic-steps", type=int, default=5, show_default=True, help="Critic updates per generator update.")
@click.option("--batch-size", type=int, default=64, show_default=True, help="Batch size.")
@click.option("--lr", type=float, default=2e-4, show_default=True, help="Adam learning rate (β = 0, 0.9).")
@click.option("--z-dim", type=int, default=100, show_default=True, help="Latent size.")
@click.option("--train-size", type=int, default=None, help="Use only the first N training images.")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Output folder; training resumes from OUT/state.pt when it exists.")
@_dataset_option
@_data_dir_option
@_device_option
@_seed_option
@_progress_option
@_user_errors
def train_gan_command(
    steps: int, critic_steps: int, batch_size: int, lr: float, z_dim: int, train_size: int | None, out: str,
    dataset: str, data_dir: str | None, device: str, seed: int, progress: bool,
) -> None:  # fmt: skip
    """Train the original generator G_orig (AC-WGAN_GP), with sample grids and resumable state."""
    from atgan_plugin.gan_training import GANTrainingConfig, train_acwgan_gp

    options = dict(click.get_current_context().params)
    dev = resolve_device(device)
    train = load_dataset(dataset, "train", data_dir)
    if train_size is not None:
        train = train.subset(train_size)
    config = GANTrainingConfig(steps=steps, critic_steps=critic_steps, batch_size=batch_size, lr=lr, z_dim=z_dim, seed=seed)
    Path(out).mkdir(parents=True, exist_ok=True)
    runs.write_json(Path(out) / "options.json", {"options": options, "environment": _environment()})
    metrics = train_acwgan_gp(train, out, config, device=dev, progress=progress,
                              extra_metadata={"dataset": dataset, "options": options, "environment": _environment()})
    click.echo(f"done: {json.dumps(metrics)}; networks in {out}")


if __name__ == "__main__":
    main()
