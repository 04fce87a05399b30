"""``atgan train-classifier`` and ``atgan train-gan``: train, save, and record how (options, environment)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from atgan_plugin import runs
from atgan_plugin.attack.generation import file_sha256
from atgan_plugin.data import TensorDataset, load_dataset
from atgan_plugin.utils import seed_everything

if TYPE_CHECKING:
    from atgan_plugin.paper.classifier_training import ClassifierTrainingConfig

__all__ = ["GAN_DATA_OPTIONS", "AtganDefense", "train_and_save_classifier", "train_gan_into"]

# The architecture and data a GAN run trains on: fixed once it started (the networks' sizes and the seed
# are checked by each trainer's check_resume).
GAN_DATA_OPTIONS = ("arch", "dataset", "train_size")


def train_and_save_classifier(
    *,
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
    device: torch.device,
    seed: int,
    progress: bool,
    record: dict[str, Any],
    defense: AtganDefense | None = None,
) -> dict[str, Any]:
    """Trains classifier ``arch`` under ``regime`` (or, with ``defense``, with AT-GAN's examples:
    :func:`atgan_plugin.defense.train`) and saves it to ``out`` with its training record (also ``out`` with
    suffix .json); returns ``{"test_accuracy": ..., "history": ..., "config": ...}``.

    Adversarial budgets left ``None`` take the dataset's (appendix Table 6). ``record`` (the options and
    the environment) joins the record; with ``half`` it also holds the accuracy of the stored float16 weights.
    """
    from atgan_plugin.models import build_classifier, load_classifier, save_classifier
    from atgan_plugin.paper.baselines import settings_for
    from atgan_plugin.paper.classifier_training import ClassifierTrainingConfig, accuracy, train_classifier

    table = settings_for(dataset)
    if epsilon is None:
        epsilon = table.pgd_epsilon if regime == "pgd" else table.fgsm_epsilon
    statics = [load_classifier(path, device=device) for path in static_models]  # before any training: fail fast
    seed_everything(seed)
    train = load_dataset(dataset, "train", data_dir)
    test = load_dataset(dataset, "test", data_dir)
    if train_size is not None:
        train = train.subset(train_size)
    config = ClassifierTrainingConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        regime=regime,
        epsilon=epsilon,
        pgd_steps=pgd_steps if pgd_steps is not None else table.pgd_steps,
        pgd_step_size=pgd_step_size if pgd_step_size is not None else table.pgd_step_size,
        seed=seed,
    )
    channels = train.images.shape[1]
    model = build_classifier(arch, num_classes=10, in_channels=channels)
    if defense is not None:
        result = _train_with_atgan(model, train, test, config, defense, device=device, progress=progress)
    else:
        result = train_classifier(model, train, test, config, device=device, progress=progress, static_models=statics)
    training = {**result, "dataset": dataset, **record}
    if static_models:
        training["static_models"] = {path: file_sha256(path) for path in static_models}
    architecture = {"architecture": arch, "num_classes": 10, "in_channels": channels}
    save_classifier(out, model, architecture, training, half=half)
    if half:  # report what the stored float16 weights give, not the float32 ones
        training["test_accuracy_stored"] = accuracy(load_classifier(out, device), test, device=device)
        save_classifier(out, model, architecture, training, half=half)
    runs.write_json(Path(out).with_suffix(".json"), training)
    return result


@dataclass(frozen=True)
class AtganDefense:
    """``atgan train-classifier --defense atgan``: G_orig's file and the resumable state's file."""

    generator: str
    state: str


def _train_with_atgan(
    model: torch.nn.Module,
    train: TensorDataset,
    test: TensorDataset,
    config: ClassifierTrainingConfig,
    defense: AtganDefense,
    *,
    device: torch.device,
    progress: bool,
) -> dict[str, Any]:
    """``model`` trained by :func:`atgan_plugin.defense.train` at its defaults on ``train`` (Adam, ``config``'s
    epochs, batch, rate and seed), resuming from ``defense.state`` when it exists."""
    from torch.utils.data import DataLoader
    from torch.utils.data import TensorDataset as TorchDataset

    from atgan_plugin import defense as atgan_defense
    from atgan_plugin.adapters import load_generator
    from atgan_plugin.paper.classifier_training import accuracy

    generator = load_generator(defense.generator, device=device)
    model.to(device)
    order = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(
        TorchDataset(train.images, train.labels), batch_size=config.batch_size, shuffle=True, generator=order
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    settings = atgan_defense.DefenseConfig(seed=config.seed)
    history = atgan_defense.train(
        model,
        generator,
        loader,
        epochs=config.epochs,
        optimizer=optimizer,
        config=settings,
        device=device,
        checkpoint=defense.state,
        progress=progress,
    )
    return {
        "test_accuracy": accuracy(model, test, device=device),
        "history": history,
        "config": {**asdict(config), "defense": "atgan", "defense_config": atgan_defense.settings_record(settings)},
    }


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; {} when it is missing or unreadable (a record, not an input)."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def train_gan_into(
    out: str,
    *,
    arch: str = "acwgan-gp",
    settings: dict[str, Any],
    train_size: int | None,
    dataset: str,
    data_dir: str | None,
    device: torch.device,
    progress: bool,
    options: dict[str, Any],
    environment: dict[str, str],
) -> dict[str, Any]:
    """Trains the GAN ``arch`` (``"acwgan-gp"`` or ``"stylegan2-ada"``) into the folder ``out``, resuming from
    ``out/state.pt`` when it exists; returns the final metrics (empty when the folder was already trained for
    its steps). ``settings`` are the fields of the arch's config (``GANTrainingConfig`` or
    ``StyleGAN2TrainingConfig``); those left out take the config's defaults.

    A resumed run refuses (ValueError) another arch or data than its first start's before anything is written;
    ``out/options.json`` keeps the ``options`` of every earlier start, oldest first.
    """
    from atgan_plugin.paper import gan_training, stylegan2_training

    record: dict[str, Any] = {"options": options, "environment": environment}
    earlier = _read_json(Path(out) / "options.json") if (Path(out) / "state.pt").exists() else {}
    first_options = earlier.get("options")
    before: dict[str, Any] = first_options if isinstance(first_options, dict) else {}
    changed = [
        f"--{name.replace('_', '-')} {before[name]} (now {options[name]})"
        for name in GAN_DATA_OPTIONS
        if name in before and name in options and before[name] != options[name]
    ]
    if changed:
        raise ValueError(
            f"{out} holds a run trained with {', '.join(changed)}; resume it with the same data, or use another --out"
        )
    train = load_dataset(dataset, "train", data_dir)
    if train_size is not None:
        train = train.subset(train_size)
    metadata = {"dataset": dataset, "options": options, "environment": environment}
    if arch == "acwgan-gp":
        config = gan_training.GANTrainingConfig(**settings)
        resumed = gan_training.check_resume(out, config, gan_training.network_args(train, config.z_dim))
    elif arch == stylegan2_training.ARCH:
        sg_config = stylegan2_training.StyleGAN2TrainingConfig(**settings)
        resumed = stylegan2_training.check_resume(out, sg_config, stylegan2_training.network_args(train, sg_config))
    else:
        raise ValueError(f"unknown GAN architecture {arch!r}; known: 'acwgan-gp', {stylegan2_training.ARCH!r}")
    if resumed is not None:
        history = earlier.pop("earlier", [])  # the options of every earlier start, oldest first
        record.update(resumed_from_step=resumed, earlier=[*history, earlier] if earlier else history)
    Path(out).mkdir(parents=True, exist_ok=True)
    runs.write_json(Path(out) / "options.json", record)
    if arch == "acwgan-gp":
        return gan_training.train_acwgan_gp(
            train, out, config, device=device, progress=progress, extra_metadata=metadata
        )
    return stylegan2_training.train_stylegan2_ada(
        train, out, sg_config, device=device, progress=progress, extra_metadata=metadata
    )
