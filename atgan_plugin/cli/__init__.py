"""The ``atgan`` command line: train, attack, evaluate, demo, reproduce.

Each command writes the options it ran with (``options.json``) next to its outputs. Errors a
user can fix (missing data, bad checkpoint, bad option) come out through click as one line,
never as a traceback.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click
import torch

from atgan_plugin import runs
from atgan_plugin.attack.transfer import FitDivergedError, TransferConfig, sample_sources
from atgan_plugin.checkpoints import CheckpointError
from atgan_plugin.data import DATASETS, DatasetNotFoundError, load_dataset
from atgan_plugin.paper.gan_training import TrainingDivergedError
from atgan_plugin.report import write_report
from atgan_plugin.utils import resolve_device, seed_everything

if TYPE_CHECKING:  # imported lazily below: they pull in foolbox and advertorch
    from atgan_plugin.attack.atgan import ATGANAttack
    from atgan_plugin.attack.distributed import Distributed
    from atgan_plugin.paper.evaluation import EvaluationReport

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
_runs_dir_option = click.option(
    "--runs-dir", type=click.Path(file_okay=False), default="runs", show_default=True,
    help="Parent folder of the numbered run folders (runs/00001-<command>/).",
)  # fmt: skip


def _count_option(default: int | None, help_text: str) -> Callable[[F], F]:
    """A count, spelled ``-n``, ``--count`` or ``--n``: torchrun's own parser rejects ``--n`` anywhere on its
    command line (a prefix of its ``--nnodes``, ``--nproc-per-node``), so under torchrun write ``-n`` or ``--count``."""
    return click.option("-n", "--n", "--count", "n", type=click.IntRange(min=1), default=default, required=default is None,
                        show_default=default is not None, help=f"{help_text} (-n, --count or --n; --n not under torchrun)")  # fmt: skip


def _apply(options: list[Callable[[F], F]]) -> Callable[[F], F]:
    """One decorator applying ``options`` in order (the first one listed comes first in --help)."""

    def decorate(func: F) -> F:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


# The AT-GAN fit's hyper-parameters; defaults from a TransferConfig. The parameter names are
# ATGANAttack's keyword arguments, so a command passes them through as ``**hyper``.
_FIT_DEFAULTS = TransferConfig()


def _fit_options(defaults: TransferConfig = _FIT_DEFAULTS) -> Callable[[F], F]:
    """``--steps``, ``--lr``, ``--alpha`` … ``--batch-size``, defaulting to ``defaults``."""
    return _apply([
        click.option("--steps", type=click.IntRange(min=1), default=defaults.steps, show_default=True,
                     help="Adam steps of the fit, each on a fresh batch of (z, y_s)."),
        click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=defaults.lr, show_default=True,
                     help="Adam learning rate of the fit."),
        click.option("--alpha", type=click.FloatRange(min=0), default=defaults.alpha, show_default=True,
                     help="Weight α of L_adv (fool the model)."),
        click.option("--beta", type=click.FloatRange(min=0), default=defaults.beta, show_default=True,
                     help="Weight β of L_dist (stay close to G_orig)."),
        click.option("--kappa", type=click.FloatRange(min=0), default=defaults.kappa, show_default=True,
                     help="Confidence margin κ of L_adv, in log-probability."),
        click.option("--gamma", type=click.FloatRange(min=0), default=defaults.gamma, show_default=True,
                     help="Weight γ of the source-class guard (our addition; 0 turns it off)."),
        click.option("--rho-l0", type=click.IntRange(min=0), default=defaults.rho_l0, show_default=True,
                     help="ℓ0 bound of the noise ρ in L_dist (pixels per image)."),
        click.option("--rho-linf", type=click.FloatRange(min=0), default=defaults.rho_linf, show_default=True,
                     help="ℓ∞ bound of the noise ρ in L_dist."),
        click.option("--batch-size", type=click.IntRange(min=1), default=defaults.batch_size, show_default=True,
                     help="Batch of (z, y_s) per fit step."),
        click.option("--tv", type=click.FloatRange(min=0), default=defaults.tv, show_default=True,
                     help="Weight of the total variation of G_attack - G_orig (our addition; smoother changes, "
                          "less success against robust models; 0 turns it off)."),
        click.option("--search-steps", type=click.IntRange(0, 30), default=8, show_default=True,
                     help="Bisection steps of the per-example shrink towards G_orig's image while the model stays "
                          "fooled (our addition; 0: G_attack's image as it is, the paper)."),
    ])  # fmt: skip


_FIT_PARAMETERS = ("steps", "lr", "alpha", "beta", "kappa", "gamma", "rho_l0", "rho_linf", "batch_size", "tv", "search_steps")
# How the attack runs, not what it fits (attack, fit, evaluate, demo; ATGANAttack's keyword arguments too).
_SCALE_PARAMETERS = ("joint_batch_size", "precision")
_scale_options = _apply([
    click.option("--joint-batch-size", type=click.IntRange(min=1), default=16, show_default=True,
                 help="Examples per target and step when several targets (or the untargeted setting and targets) are "
                      "fitted together in one run; at most --batch-size, which gives the separate fits' results."),
    click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
                 help="bf16: the fit's and the generation's forward passes under bf16 autocast (GPUs with bf16 tensor "
                      "cores); parameters and losses stay float32."),
])  # fmt: skip

_CHECKPOINT_HELP = {
    "generator": "G_orig checkpoint, any format load_generator reads [default: the shipped Fashion-MNIST generator].",
    "model": "Target classifier checkpoint (atgan train-classifier) [default: the shipped Fashion-MNIST Model A].",
    "oracle": "Realism oracle checkpoint, a classifier used nowhere else [default: the shipped Fashion-MNIST oracle].",
    "features": "Adversarially trained classifier whose penultimate features measure the Fréchet distance to the real "
                "test images [default: the shipped Fashion-MNIST one, for 1x28x28 generators].",
}
_PRETRAINED_NAME = {"generator": "generator", "model": "model_a", "oracle": "oracle", "features": "realism_features"}
# Table 7's transferable fit (κ 40) erases the class where the attack's own guards do not look; it keeps
# the two shipped robust guards it was measured with (docs/results/fashion-mnist.md).
_TRANSFER_GUARDS = ("robust_guard", "robust_guard_2")
_TRANSFER_GUARD_HELP = ("Guards of the transfer table's transferable fit, instead of --guard's (repeatable) [default: the "
                        "shipped robust guards (Model B, fast adversarial training; Model A, PGD) with the shipped "
                        "generator, --guard's otherwise].")
_GUARD_HELP = ('Guards that keep the source class during the fit: "auto" (the generator\'s own, e.g. its auxiliary '
               'classifier, plus one distilled from G_orig, trained once and cached), "none" (the paper\'s loss), or '
               "classifier checkpoints (repeat the option for several).")
_guard_option = click.option("--guard", "guard_specs", multiple=True, default=("auto",), show_default=True, help=_GUARD_HELP)
_guard_cache_option = click.option("--guard-cache-dir", type=click.Path(file_okay=False), default=None,
                                   help="Where distilled guards are cached [default: $ATGAN_CACHE_DIR or ~/.cache/atgan-plugin].")


def _checkpoint_options(*names: str, help_text: dict[str, str] | None = None) -> Callable[[F], F]:
    """``--generator``, ``--model``, ``--oracle``, ``--guard``, ``--transfer-guard`` (those named), each
    defaulting to a shipped file."""
    texts = {**_CHECKPOINT_HELP, **(help_text or {})}
    return _apply([click.option(f"--{name.replace('_', '-')}", f"{name}_path", type=click.Path(dir_okay=False), default=None,
                                help=texts[name]) for name in names])  # fmt: skip


def _user_errors(func: F) -> F:
    """Turns the errors a user can fix into click errors (one line, exit code 1 or 2)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (DatasetNotFoundError, CheckpointError, FileNotFoundError, FitDivergedError, TrainingDivergedError) as error:
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
@click.option("--regime", type=click.Choice(["normal", "adv", "ens", "pgd", "fgsm-rs"]), default="normal", show_default=True,
              help="normal training; adv: ½ clean + ½ FGSM loss (Adv.); ens: the FGSM examples from a model drawn per batch "
                   "among this one and the --static-model ones (Ens.); pgd: PGD adversarial training (Iter.); fgsm-rs: fast "
                   "adversarial training (FGSM from a random start, the oracle's).")
@click.option("--epsilon", type=click.FloatRange(min=0), default=None,
              help="ℓ∞ budget of adversarial training [default: the dataset's FGSM ε, PGD ε for --regime pgd (appendix Table 6)].")
@click.option("--pgd-steps", type=click.IntRange(min=1), default=None,
              help="PGD iterations of --regime pgd [default: the dataset's, 20 (appendix Table 6)]; fewer cost less.")
@click.option("--pgd-step-size", type=click.FloatRange(min=0, min_open=True), default=None,
              help="PGD step of --regime pgd [default: the dataset's, 0.01 for Fashion-MNIST (appendix Table 6)].")
@click.option("--static-model", "static_models", type=click.Path(dir_okay=False), multiple=True,
              help="A fixed pre-trained classifier checkpoint for --regime ens (repeatable; Tramèr et al. used three).")
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
    arch: str, regime: str, epsilon: float | None, pgd_steps: int | None, pgd_step_size: float | None,
    static_models: tuple[str, ...], epochs: int, batch_size: int, lr: float, train_size: int | None,
    half: bool, out: str, dataset: str, data_dir: str | None, device: str, seed: int, progress: bool,
) -> None:  # fmt: skip
    """Train a target classifier (normally or adversarially) or the oracle; print its test accuracy."""
    from atgan_plugin.models import build_classifier, load_classifier, save_classifier
    from atgan_plugin.paper.baselines import settings_for
    from atgan_plugin.paper.classifier_training import ClassifierTrainingConfig, accuracy, train_classifier

    options = dict(click.get_current_context().params)
    if static_models and regime != "ens":
        raise click.BadParameter(f"static models are used only by --regime ens, not {regime}", param_hint="'--static-model'")
    if regime == "ens" and not static_models:
        raise click.BadParameter("--regime ens needs at least one --static-model (a fixed pre-trained classifier)",
                                 param_hint="'--static-model'")  # fmt: skip
    table = settings_for(dataset)
    if epsilon is None:
        epsilon = table.pgd_epsilon if regime == "pgd" else table.fgsm_epsilon
    dev = resolve_device(device)
    statics = [load_classifier(path, device=dev) for path in static_models]  # before any training: fail fast
    seed_everything(seed)
    train = load_dataset(dataset, "train", data_dir)
    test = load_dataset(dataset, "test", data_dir)
    if train_size is not None:
        train = train.subset(train_size)
    config = ClassifierTrainingConfig(epochs=epochs, batch_size=batch_size, lr=lr, regime=regime, epsilon=epsilon,
                                      pgd_steps=pgd_steps if pgd_steps is not None else table.pgd_steps,
                                      pgd_step_size=pgd_step_size if pgd_step_size is not None else table.pgd_step_size,
                                      seed=seed)  # fmt: skip
    model = build_classifier(arch, num_classes=10, in_channels=train.images.shape[1])
    result = train_classifier(model, train, test, config, device=dev, progress=progress, static_models=statics)
    training = {**result, "dataset": dataset, "options": options, "environment": _environment()}
    if static_models:
        training["static_models"] = {path: _sha256(path) for path in static_models}
    save_classifier(out, model, {"architecture": arch, "num_classes": 10, "in_channels": train.images.shape[1]}, training, half=half)
    if half:  # report what the stored float16 weights give, not the float32 ones
        training["test_accuracy_stored"] = accuracy(load_classifier(out, dev), test, device=dev)
        save_classifier(out, model, {"architecture": arch, "num_classes": 10, "in_channels": train.images.shape[1]}, training, half=half)
    runs.write_json(Path(out).with_suffix(".json"), training)
    click.echo(f"test accuracy {result['test_accuracy']:.4f}; saved {out}")


def _sha256(path: str | Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@main.command("train-gan")
@click.option("--steps", type=click.IntRange(min=1), default=6000, show_default=True, help="Generator updates.")
@click.option("--critic-steps", type=click.IntRange(min=1), default=5, show_default=True, help="Critic updates per generator update.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Batch size.")
@click.option("--lr", type=float, default=2e-4, show_default=True,
              help="Adam learning rate (β = 0, 0.9); a resumed run applies a new value from where it resumes.")
@click.option("--z-dim", type=click.IntRange(min=1), default=100, show_default=True, help="Latent size (fixed once training started).")
@click.option("--train-size", type=click.IntRange(min=1), default=None, help="Use only the first N training images (fixed once training started).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=250, show_default=True,
              help="Steps between writes of the resumable state and the networks: a killed run loses at most this many.")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Output folder; training resumes from OUT/state.pt when it exists, and a finished folder is left as it is.")
@_dataset_option
@_data_dir_option
@_device_option
@_seed_option
@_progress_option
@_user_errors
def train_gan_command(
    steps: int, critic_steps: int, batch_size: int, lr: float, z_dim: int, train_size: int | None, checkpoint_every: int,
    out: str, dataset: str, data_dir: str | None, device: str, seed: int, progress: bool,
) -> None:  # fmt: skip
    """Train the original generator G_orig (AC-WGAN_GP), with sample grids and resumable state.

    Rerun the same command after a kill: it resumes from the last state (at most --checkpoint-every
    steps lost) and completes what is missing. OUT/complete.json marks a finished folder.
    """
    from atgan_plugin.paper.gan_training import GANTrainingConfig, check_resume, network_args, train_acwgan_gp

    options = dict(click.get_current_context().params)
    dev = resolve_device(device)
    config = GANTrainingConfig(steps=steps, critic_steps=critic_steps, batch_size=batch_size, lr=lr, z_dim=z_dim, seed=seed,
                               checkpoint_every=checkpoint_every)  # fmt: skip
    # A resumed run: refuse what it cannot change before anything is written (options.json included).
    record: dict[str, Any] = {"options": options, "environment": _environment()}
    earlier = _read_json(Path(out) / "options.json") if (Path(out) / "state.pt").exists() else {}
    before = earlier.get("options") if isinstance(earlier.get("options"), dict) else {}
    changed = [f"--{name.replace('_', '-')} {before[name]} (now {options[name]})" for name in _GAN_DATA_OPTIONS
               if name in before and before[name] != options[name]]  # fmt: skip
    if changed:
        raise click.UsageError(f"{out} holds a run trained with {', '.join(changed)}; resume it with the same data, "
                               "or use another --out")  # fmt: skip
    train = load_dataset(dataset, "train", data_dir)
    if train_size is not None:
        train = train.subset(train_size)
    resumed = check_resume(out, config, network_args(train, z_dim))
    if resumed is not None:
        history = earlier.pop("earlier", [])  # the options of every earlier start, oldest first
        record.update(resumed_from_step=resumed, earlier=[*history, earlier] if earlier else history)
    Path(out).mkdir(parents=True, exist_ok=True)
    runs.write_json(Path(out) / "options.json", record)
    metrics = train_acwgan_gp(train, out, config, device=dev, progress=progress,
                              extra_metadata={"dataset": dataset, "options": options, "environment": _environment()})
    done = f"done: {json.dumps(metrics)}" if metrics else f"already trained for {steps} steps; completed what was missing"
    click.echo(f"{done}; networks in {out}")


# The data a GAN run trains on: fixed once it started (z_dim and seed are checked by check_resume).
_GAN_DATA_OPTIONS = ("dataset", "train_size")


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; {} when it is missing or unreadable (a record, not an input)."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


# ---------------------------------------------------------------------------------------------
# atgan prepare-guard


@main.command("prepare-guard")
@_checkpoint_options("generator")
@click.option("--add-guard", "added_guards", type=click.Path(dir_okay=False), multiple=True,
              help="A classifier checkpoint the written generator should carry as a guard besides its own (repeatable; "
                   "with --out).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Also write the generator, in our safetensors format, carrying its guards (own, added, distilled), so "
                   'that guard="auto" needs no distillation wherever the file goes.')
@click.option("--half/--no-half", default=False, show_default=True, help="With --out: store the weights as float16.")
@_guard_cache_option
@_device_option
@_progress_option
@_user_errors
def prepare_guard_command(generator_path: str | None, added_guards: tuple[str, ...], out: str | None, half: bool,
                          guard_cache_dir: str | None, device: str, progress: bool) -> None:  # fmt: skip
    """Distil (or find in the cache) the guard ATGANAttack(guard="auto") uses for a generator.

    A generator that carries a distilled guard needs none; any other gets a small classifier trained
    adversarially on G_orig(z, y) -> y, cached under a hash of the generator's weights.
    """
    from atgan_plugin.adapters import SharedGuards, load_generator
    from atgan_plugin.attack.guards import AUTO, default_cache_dir, resolve_guards
    from atgan_plugin.models import load_classifier

    dev = resolve_device(device)
    path = _checkpoint_path("generator", generator_path)
    generator = load_generator(path, device=dev)
    if added_guards and out is None:
        raise click.BadParameter("--add-guard only changes the file written by --out", param_hint="'--add-guard'")
    extra = [load_classifier(guard, device=dev) for guard in added_guards]
    own = tuple(getattr(generator, "default_guards", ()))
    start = time.perf_counter()
    generator.default_guards = SharedGuards((*own, *extra))
    guards = resolve_guards(AUTO, generator, cache_dir=guard_cache_dir, device=dev, progress=progress)
    names = ", ".join(type(g).__name__ for g in guards)
    click.echo(f"{len(guards)} guard(s) for {path} ({names}) in {time.perf_counter() - start:.1f} s; "
               f"cache: {Path(guard_cache_dir) if guard_cache_dir else default_cache_dir()}")  # fmt: skip
    if out is not None:
        if not hasattr(generator, "save"):
            raise click.ClickException(f"{type(generator).__name__} cannot be written in our format")
        from atgan_plugin.checkpoints import read_header

        try:  # keep the source file's training record (train-gan's options and metrics)
            record = dict(read_header(path).training)
        except CheckpointError:  # an NVIDIA pickle
            record = {}
        generator.default_guards = SharedGuards(tuple(g.cpu() for g in guards))
        generator.cpu().save(out, {**record, "source": str(path), "guards": [type(g).__name__ for g in guards]}, half=half)
        click.echo(f"wrote {out}: the generator and its {len(guards)} guard(s)")


# ---------------------------------------------------------------------------------------------
# Attack, evaluate, demo: shared plumbing.


Targets = tuple[int, ...] | str  # class indices, or "all" / "none"


def _parse_targets(ctx: click.Context, param: click.Parameter, value: str) -> Targets:
    """``--targets``: "all", "none", or class indices such as "0,3,7"; the range is checked later,
    once the generator's number of classes is known."""
    text = value.strip().lower()
    if text in ("all", "none"):
        return text
    try:
        targets = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise click.BadParameter(f'{value!r} is not "all", "none" or comma-separated class indices such as "0,3,7"') from None
    if len(set(targets)) != len(targets):
        raise click.BadParameter(f"{value!r} names a class twice")
    return targets


def _resolve_targets(targets: Targets, num_classes: int) -> list[int]:
    if isinstance(targets, str):
        return list(range(num_classes)) if targets == "all" else []
    bad = [t for t in targets if not 0 <= t < num_classes]
    if bad:
        raise click.BadParameter(f"classes {bad} are outside [0, {num_classes}) (the generator's classes)",
                                 param_hint="'--targets'")  # fmt: skip
    return list(targets)


def _checkpoint_path(name: str, path: str | None, shipped: Mapping[str, str] = _PRETRAINED_NAME) -> Path:
    """The given path, or the shipped checkpoint ``shipped[name]`` (FileNotFoundError naming it when absent)."""
    from atgan_plugin.pretrained import pretrained_path

    return Path(path) if path is not None else pretrained_path(shipped[name])


def _load_networks(device: torch.device, *, shipped: Mapping[str, str] = _PRETRAINED_NAME,
                   **paths: str | None) -> tuple[dict[str, torch.nn.Module], dict[str, str]]:  # fmt: skip
    """Loads the networks named by ``paths`` (generator/model/oracle; ``None`` for the shipped
    ``shipped[name]``) before any run folder exists, so a bad checkpoint leaves nothing behind.
    Returns the networks and their resolved paths."""
    from atgan_plugin.adapters import load_generator
    from atgan_plugin.models import load_classifier

    resolved = {name: _checkpoint_path(name, path, shipped) for name, path in paths.items()}
    networks = {name: (load_generator(path, device=device) if name == "generator" else load_classifier(path, device=device))
                for name, path in resolved.items()}  # fmt: skip
    return networks, {name: str(path) for name, path in resolved.items()}


def _new_run(runs_dir: str, name: str, checkpoints: dict[str, str]) -> Path:
    """A fresh numbered run folder holding ``options.json`` (the command's options, the
    checkpoints it read and the environment). When the command returns, ``complete.json``
    marks it finished (:func:`_mark_run_complete`); a killed run has none."""
    run_dir = runs.new_run_dir(runs_dir, name)
    ctx = click.get_current_context()
    runs.write_json(run_dir / "options.json", {"options": dict(ctx.params), "checkpoints": checkpoints, "environment": _environment()})
    ctx.meta[_RUN_DIR_KEY] = run_dir
    return run_dir


_RUN_DIR_KEY = "atgan_plugin.run_dir"


@main.result_callback()
def _mark_run_complete(result: Any, **_: Any) -> None:
    """After a command returned normally: marks the run folder it made (if any) complete."""
    run_dir = click.get_current_context().meta.get(_RUN_DIR_KEY)
    if run_dir is not None:
        runs.mark_complete(run_dir)


def _guard_spec(specs: tuple[str, ...], device: torch.device) -> tuple[Any, list[str]]:
    """``--guard`` values as ``ATGANAttack(guard=...)`` takes them ("auto", None or loaded classifiers),
    and what to record of them."""
    from atgan_plugin.models import load_classifier

    words = {spec.lower() for spec in specs if spec.lower() in ("auto", "none")}
    if words and len(specs) > 1:
        raise click.BadParameter(f'"auto" and "none" stand alone, got {list(specs)}', param_hint="'--guard'")
    if words:
        word = words.pop()
        return (None if word == "none" else "auto"), [word]
    return [load_classifier(path, device=device) for path in specs], [str(Path(path)) for path in specs]


def _transfer_guards(paths: tuple[str, ...], generator_path: str | None, device: torch.device) -> tuple[list[torch.nn.Module], str]:
    """The transferable fit's guards (:data:`_TRANSFER_GUARDS` with the shipped generator when none are
    given) and what to record of them."""
    from atgan_plugin.models import load_classifier
    from atgan_plugin.pretrained import pretrained_path

    if not paths and generator_path is None:
        paths = tuple(str(pretrained_path(name)) for name in _TRANSFER_GUARDS)
    return [load_classifier(path, device=device) for path in paths], ", ".join(paths)


def _make_attack(networks: dict[str, torch.nn.Module], device: torch.device, seed: int, progress: bool,
                 hyper: dict[str, Any], guard: Any, guard_cache_dir: str | None, group: Distributed | None = None) -> ATGANAttack:  # fmt: skip
    """The attack the options describe; under torchrun, its data-parallel form (:mod:`atgan_plugin.attack.distributed`)."""
    from atgan_plugin.attack.atgan import ATGANAttack
    from atgan_plugin.attack.distributed import DataParallelATGANAttack

    kwargs = {k: hyper[k] for k in (*_FIT_PARAMETERS, *_SCALE_PARAMETERS) if k in hyper}
    if group is not None:
        return DataParallelATGANAttack(networks["model"], generator=networks["generator"], guard=guard, guard_cache_dir=guard_cache_dir,
                                       device=device, seed=seed, progress=progress, distributed=group, **kwargs)  # fmt: skip
    return ATGANAttack(networks["model"], generator=networks["generator"], guard=guard, guard_cache_dir=guard_cache_dir,
                       device=device, seed=seed, progress=progress, **kwargs)  # fmt: skip


def _session(device: str) -> tuple[torch.device, Distributed | None]:
    """This process's device, and its process group when torchrun started it (left when the command ends).

    Under torchrun only rank 0 makes run folders and prints; the others fit and stay silent."""
    from atgan_plugin.attack.distributed import init

    group = init(device)
    if group is None:
        return resolve_device(device), None
    click.get_current_context().call_on_close(group.shutdown)
    return group.device, group


def _realism_judge(features_path: str | None, generator: torch.nn.Module, dataset: str, data_dir: str | None,
                   device: torch.device) -> tuple[Any, str | None]:  # fmt: skip
    """The robust-feature Fréchet distance to ``dataset``'s test images, and the features' path; ``(None, None)``
    (with a note) when no features fit the generator or the test images are not on this machine."""
    from atgan_plugin.metrics.realism import RobustFrechetDistance
    from atgan_plugin.models import load_classifier

    if features_path is None and tuple(generator.image_shape) != (1, 28, 28):  # type: ignore[attr-defined]
        click.echo("note: no Fréchet distance (the shipped features are for 1x28x28 images; pass --features)", err=True)
        return None, None
    path = _checkpoint_path("features", features_path)
    classifier = load_classifier(path, device=device)
    try:
        test = load_dataset(dataset, "test", data_dir)
    except DatasetNotFoundError as error:
        click.echo(f"note: no Fréchet distance ({error})", err=True)
        return None, None
    real = (test.images[start : start + 500] for start in range(0, len(test), 500))
    return RobustFrechetDistance(classifier, real), str(path)


def _run_evaluation(
    *, generator_path: str | None, model_path: str | None, oracle_path: str | None, features_path: str | None,
    guard_specs: tuple[str, ...], guard_cache_dir: str | None, dataset: str, data_dir: str | None, n: int,
    targets: Targets, fit_paths: tuple[str, ...], save_fits: bool, runs_dir: str, run_name: str,
    device: str, seed: int, progress: bool, hyper: dict[str, Any],
) -> tuple[Path, EvaluationReport, list[str]] | None:  # fmt: skip
    """What ``evaluate`` and ``demo`` share: fit (or load), evaluate, write report and grids. Under torchrun
    every process takes part in the fit and rank 0 alone evaluates and writes; the others get ``None``."""
    from atgan_plugin.paper.evaluation import evaluate_attack, save_class_grid, save_difference_grid, save_target_grid

    dev, group = _session(device)
    main = group is None or group.is_main
    seed_everything(seed)
    networks, checkpoints = _load_networks(dev, generator=generator_path, model=model_path, oracle=oracle_path)
    generator, model, oracle = networks["generator"], networks["model"], networks["oracle"]
    guard, guard_record = _guard_spec(guard_specs, dev)
    checkpoints["guard"] = ", ".join(guard_record)
    frechet, features = _realism_judge(features_path, generator, dataset, data_dir, dev) if main else (None, None)
    if features is not None:
        checkpoints["features"] = features
    num_classes = int(generator.num_classes)  # type: ignore[arg-type]
    target_list = _resolve_targets(targets, num_classes)
    attack = _make_attack(networks, dev, seed, progress, hyper, guard, guard_cache_dir, group)
    for path in fit_paths:
        fit = attack.load_fit(path, model=model)
        if fit.target is not None and fit.target not in target_list:
            raise click.BadParameter(f"{path} holds a fit for target {fit.target}, which this evaluation does not "
                                     f"include (add it to --targets)", param_hint="'--fit'")  # fmt: skip
    run_dir = _new_run(runs_dir, run_name, checkpoints) if main else None
    start = time.perf_counter()
    attack.fit(model, targets=[None, *target_list])  # every setting not loaded, in one run (every process under torchrun)
    fit_seconds = time.perf_counter() - start
    if run_dir is None:
        return None

    report = evaluate_attack(attack, model, oracle, n=n, targets=target_list, seed=seed + 1, frechet=frechet)
    report.fit_seconds += fit_seconds  # the fits were made above, before evaluate_attack found them cached
    outputs = ["options.json", "report.json"]
    fits = [{**fit.summary(), "history": fit.history} for fit in (attack.fit(model, t) for t in [None, *target_list])]
    runs.write_json(run_dir / "report.json", {**report.to_dict(), "fits": fits, "checkpoints": checkpoints})
    save_difference_grid(attack, model, run_dir / "grid.png")
    save_class_grid(attack, model, run_dir / "classes.png")
    outputs += ["grid.png", "classes.png"]
    if target_list and len(target_list) == num_classes:
        save_target_grid(attack, model, run_dir / "targets.png")
        outputs.append("targets.png")
    if save_fits:
        for target in [None, *target_list]:
            name = "g_attack.safetensors" if target is None else f"g_attack-target{target}.safetensors"
            attack.save_fit(run_dir / name, target=target, model=model)
            outputs.append(name)
    return run_dir, report, outputs


# ---------------------------------------------------------------------------------------------
# atgan attack


@main.command("attack")
@_checkpoint_options("generator", "model")
@_guard_option
@_guard_cache_option
@click.option("--target", type=click.IntRange(min=0), default=None,
              help="Target class; untargeted when left out (with --fit: the fit's own target).")
@click.option("--targets", "several", default="none", show_default=True, callback=_parse_targets,
              help='Several targets instead of --target, fitted together in one run: "all" or e.g. "0,3,7"; example i '
                   "gets target i mod K.")
@_count_option(100, "Adversarial examples to generate.")
@click.option("--fit", "fit_path", type=click.Path(dir_okay=False), default=None,
              help="Reuse a G_attack saved by an earlier run (g_attack.safetensors) instead of fitting.")
@click.option("--format", "file_format", type=click.Choice(["safetensors", "pt"]), default="safetensors",
              show_default=True, help="File format of the adversarial examples.")
@_fit_options()
@_scale_options
@_runs_dir_option
@_device_option
@_seed_option
@_progress_option
@_user_errors
def attack_command(
    generator_path: str | None, model_path: str | None, guard_specs: tuple[str, ...], guard_cache_dir: str | None,
    target: int | None, several: Targets, n: int, fit_path: str | None, file_format: str, runs_dir: str, device: str,
    seed: int, progress: bool, **hyper: Any,
) -> None:  # fmt: skip
    """Fit AT-GAN against a model (or load a fit) and generate adversarial examples.

    Writes adversarial.safetensors (images in [0, 1], source_labels, predicted_labels and, when
    targeted, target_labels), the fitted G_attack (one file per target), a G_orig / AT-GAN /
    difference grid and options.json into a new numbered run folder. Under torchrun every process
    takes part in the fit; rank 0 generates and writes.
    """
    from atgan_plugin.checkpoints import atomic_write
    from atgan_plugin.paper.evaluation import save_class_grid, save_difference_grid, save_target_grid

    dev, group = _session(device)
    seed_everything(seed)
    networks, checkpoints = _load_networks(dev, generator=generator_path, model=model_path)
    generator, model = networks["generator"], networks["model"]
    guard, guard_record = _guard_spec(guard_specs, dev)
    checkpoints["guard"] = ", ".join(guard_record)
    num_classes = int(generator.num_classes)  # type: ignore[arg-type]
    if target is not None and target >= num_classes:
        raise click.BadParameter(f"{target} is outside [0, {num_classes}) (the generator's classes)", param_hint="'--target'")
    several_list = _resolve_targets(several, num_classes)
    if several_list and (target is not None or fit_path is not None):
        raise click.BadParameter("--targets fits several targets; leave out --target and --fit", param_hint="'--targets'")
    attack = _make_attack(networks, dev, seed, progress, hyper, guard, guard_cache_dir, group)
    if fit_path is not None:
        fit = attack.load_fit(fit_path, model=model)
        if target is not None and fit.target != target:
            fitted = "untargeted" if fit.target is None else f"for target {fit.target}"
            raise click.BadParameter(f"{fit_path} was fitted {fitted}, not for target {target}", param_hint="'--target'")
        target = fit.target
        checkpoints["fit"] = str(fit_path)
    settings: list[int | None] = list(several_list) if several_list else [target]
    run_dir = _new_run(runs_dir, "attack", checkpoints) if group is None or group.is_main else None
    attack.fit(model, targets=settings)  # fit now, all settings in one run (a no-op after --fit)
    if run_dir is None:  # a torchrun process other than rank 0: it took part in the fit
        return

    # Generate in chunks from a seeded stream of (y_s, z); example i has target settings[i % K].
    rng = torch.Generator().manual_seed(seed + 1)
    images, sources, predicted, targets_made = [], [], [], []
    for start in range(0, n, 500):
        m = min(500, n - start)
        if len(settings) == 1:
            y_s = sample_sources(m, num_classes, target, rng)
            chunk_targets = None if target is None else torch.full((m,), target)
        else:
            chunk_targets = torch.tensor(settings)[(start + torch.arange(m)) % len(settings)]
            y = torch.randint(num_classes - 1, (m,), generator=rng)
            y_s = y + (y >= chunk_targets).long()  # never the example's own target
        y_s = y_s.to(dev)
        z = generator.sample_z(m, generator=rng, device=dev)  # type: ignore[operator]
        adversarial = torch.empty((m, *generator.image_shape), device=dev)  # type: ignore[misc]
        for setting in settings:
            rows = torch.ones(m, dtype=torch.bool) if chunk_targets is None or len(settings) == 1 else torch.eq(chunk_targets, -1 if setting is None else setting)
            rows = rows.to(dev)
            adversarial[rows] = cast(torch.Tensor, attack.generate(y_s[rows], target=setting, z=z[rows], model=model))
        with torch.no_grad():
            predicted.append(model(adversarial).argmax(1).cpu())
        images.append(adversarial.cpu())
        sources.append(y_s.cpu())
        if chunk_targets is not None:
            targets_made.append(chunk_targets)
    tensors = {"images": torch.cat(images).contiguous(), "source_labels": torch.cat(sources),
               "predicted_labels": torch.cat(predicted)}  # fmt: skip
    if targets_made:
        tensors["target_labels"] = torch.cat(targets_made).long()
    targeted = "target_labels" in tensors
    success = tensors["predicted_labels"] == (tensors["target_labels"] if targeted else tensors["source_labels"])
    success_rate = float(success.float().mean()) if targeted else float((~success).float().mean())

    out = run_dir / f"adversarial.{file_format}"
    with atomic_write(out) as tmp:
        if file_format == "safetensors":
            from safetensors.torch import save_file

            label = "none" if not targeted else ",".join(str(t) for t in settings)
            save_file(tensors, str(tmp), metadata={"target": label, "bounds": "0,1"})
        else:
            torch.save(tensors, tmp)
    outputs = ["options.json", out.name]
    if fit_path is None:
        for setting in settings:
            name = "g_attack.safetensors" if len(settings) == 1 else f"g_attack-target{setting}.safetensors"
            attack.save_fit(run_dir / name, target=setting, model=model)
            outputs.append(name)
    save_difference_grid(attack, model, run_dir / "grid.png", target=settings[0])
    save_class_grid(attack, model, run_dir / "classes.png", target=settings[0])
    outputs += ["grid.png", "classes.png", "summary.json"]
    if len(settings) == num_classes:
        save_target_grid(attack, model, run_dir / "targets.png")
        outputs.append("targets.png")
    fits = [{**attack.fit(model, t).summary(), "history": attack.fit(model, t).history} for t in settings]
    summary: dict[str, Any] = {"n": n, "target": settings[0] if len(settings) == 1 else None, "success_rate": success_rate,
                               "fit": fits[0]}  # fmt: skip
    if len(settings) > 1:
        by_target = {str(t): float(success[tensors["target_labels"] == t].float().mean()) for t in settings}
        summary.update(targets=settings, success_per_target=by_target, fits=fits)
    runs.write_json(run_dir / "summary.json", summary)
    if not targeted:
        click.echo(f"{n} adversarial examples (untargeted): the model misclassifies {success_rate:.1%}")
    elif len(settings) == 1:
        click.echo(f"{n} adversarial examples (target {target}): the model outputs class {target} for {success_rate:.1%}")
    else:
        click.echo(f"{n} adversarial examples over targets {settings}: the model outputs the example's target for "
                   f"{success_rate:.1%}")  # fmt: skip
    click.echo(f"outputs in {run_dir}: {', '.join(outputs)}")
    report_path = write_report(run_dir)
    click.echo(f"report: {report_path}")


# ---------------------------------------------------------------------------------------------
# atgan fit


@main.command("fit")
@_checkpoint_options("generator", "model")
@_guard_option
@_guard_cache_option
@click.option("--targets", default="none", show_default=True, callback=_parse_targets,
              help='Targets to fit besides the untargeted setting, all in one run: "all", "none" or e.g. "0,3,7".')
@click.option("--untargeted/--no-untargeted", default=True, show_default=True, help="Also fit the untargeted setting.")
@_fit_options()
@_scale_options
@_runs_dir_option
@_device_option
@_seed_option
@_progress_option
@_user_errors
def fit_command(
    generator_path: str | None, model_path: str | None, guard_specs: tuple[str, ...], guard_cache_dir: str | None,
    targets: Targets, untargeted: bool, runs_dir: str, device: str, seed: int, progress: bool, **hyper: Any,
) -> None:  # fmt: skip
    """Fit G_attack against a model for each setting (together, in one run) and save the fits.

    Writes g_attack.safetensors (untargeted) and g_attack-target<K>.safetensors, summary.json (each
    fit's configuration and history) and options.json into a new numbered run folder; give a file to
    `atgan generate --fit` or `atgan attack --fit`. Under torchrun the fit runs data-parallel.
    """
    dev, group = _session(device)
    seed_everything(seed)
    networks, checkpoints = _load_networks(dev, generator=generator_path, model=model_path)
    guard, guard_record = _guard_spec(guard_specs, dev)
    checkpoints["guard"] = ", ".join(guard_record)
    settings: list[int | None] = [None] if untargeted else []
    settings += _resolve_targets(targets, int(networks["generator"].num_classes))  # type: ignore[arg-type]
    if not settings:
        raise click.BadParameter("nothing to fit: give --targets or leave --untargeted on", param_hint="'--targets'")
    attack = _make_attack(networks, dev, seed, progress, hyper, guard, guard_cache_dir, group)
    run_dir = _new_run(runs_dir, "fit", checkpoints) if group is None or group.is_main else None
    start = time.perf_counter()
    fits = attack.fit(networks["model"], targets=settings)
    seconds = time.perf_counter() - start
    if run_dir is None:
        return
    outputs = ["options.json"]
    for target in fits:
        name = "g_attack.safetensors" if target is None else f"g_attack-target{target}.safetensors"
        attack.save_fit(run_dir / name, target=target, model=networks["model"])
        outputs.append(name)
    processes = 1 if group is None else group.world_size
    runs.write_json(run_dir / "summary.json", {"fit_seconds": seconds, "processes": processes,
                                               "fits": [{**fit.summary(), "history": fit.history} for fit in fits.values()]})  # fmt: skip
    outputs.append("summary.json")
    for target, fit in fits.items():
        final = fit.history[-1] if fit.history else {}
        click.echo(f"{'untargeted' if target is None else f'target {target}'}: batch success {final.get('success', 0):.3f} at "
                   f"step {final.get('step', 0)}")  # fmt: skip
    click.echo(f"{len(fits)} fit(s) in {seconds:.0f} s on {processes} process(es); outputs in {run_dir}: {', '.join(outputs)}")


# ---------------------------------------------------------------------------------------------
# atgan generate


@main.command("generate")
@click.option("--fit", "fit_path", type=click.Path(dir_okay=False), required=True,
              help="The G_attack to generate with: a file of `atgan fit`, `atgan demo`, `atgan attack` or "
                   "ATGANAttack.save_fit (it records its target).")
@_count_option(None, "Adversarial examples to generate in all.")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Output folder: shard-NNNNNN.safetensors files and manifest.json; a folder holding an "
                   "interrupted run of the same settings is resumed.")
@_checkpoint_options("generator", "model", help_text={
    "model": "Target classifier the shrink keeps fooled (atgan train-classifier) [default: the shipped Fashion-MNIST "
             "Model A; not read with --search-steps 0]."})  # fmt: skip
@click.option("--shard-size", type=click.IntRange(min=1), default=10_000, show_default=True, help="Examples per shard file.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Examples per generation call (memory, not results).")
@click.option("--search-steps", type=click.IntRange(0, 30), default=8, show_default=True,
              help="Bisection steps of the per-example shrink towards G_orig's image (search-steps + 1 passes of the "
                   "model per example); 0: G_attack's image as it is, no model needed.")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
              help="bf16: the forward passes under bf16 autocast (GPUs with bf16 tensor cores).")
@click.option("--compile/--no-compile", "compile_", default=False, show_default=True,
              help="torch.compile G_attack, G_orig and the model first (GPU throughput; compiling takes a while).")
@_device_option
@_seed_option
@_progress_option
@_user_errors
def generate_command(
    fit_path: str, n: int, out: str, generator_path: str | None, model_path: str | None, shard_size: int, batch_size: int,
    search_steps: int, precision: str, compile_: bool, device: str, seed: int, progress: bool,
) -> None:  # fmt: skip
    """Generate N adversarial examples from a saved fit, as safetensors shards plus DIR/manifest.json.

    Each shard holds images (float32 in [0, 1]), source_labels and, for a targeted fit, target_labels;
    shard i's examples come from its own seed, so a killed run resumes where it stopped (rerun the same
    command) and never writes a shard twice. Under torchrun each process writes its own shards
    (shard i by rank i mod N) and rank 0 writes the manifest; the folder must be shared by all nodes.
    """
    from atgan_plugin.attack.atgan import ATGANAttack
    from atgan_plugin.attack.generation import (
        GenerationError,
        GenerationPlan,
        ModelNotNeeded,
        check_plan,
        clear_stale,
        file_sha256,
        generate_shards,
        write_manifest,
    )

    dev, group = _session(device)
    rank, world = (0, 1) if group is None else (group.rank, group.world_size)
    if search_steps > 0:
        networks, checkpoints = _load_networks(dev, generator=generator_path, model=model_path)
    else:
        networks, checkpoints = _load_networks(dev, generator=generator_path)
        networks["model"] = ModelNotNeeded()
    model = networks["model"]
    attack = ATGANAttack(model, generator=networks["generator"], guard=None, search_steps=search_steps, precision=precision,
                         compile=compile_, device=dev, seed=seed, progress=False)  # fmt: skip
    fit = attack.load_fit(fit_path, model=model)
    plan = GenerationPlan(total=n, shard_size=shard_size, seed=seed, target=fit.target, search_steps=search_steps,
                          precision=precision, fit_sha256=file_sha256(fit_path),
                          generator_sha256=file_sha256(checkpoints["generator"]),
                          model_sha256=file_sha256(checkpoints["model"]) if search_steps > 0 else None)  # fmt: skip
    out_dir = Path(out)
    problem = None
    if rank == 0:  # rank 0 alone checks and prepares the folder, before the others write into it
        try:
            check_plan(out_dir, plan)
            clear_stale(out_dir)
        except GenerationError as error:
            problem = str(error)
    if group is not None:
        problem = group.all_gather(problem)[0]
    if problem is not None:
        raise click.ClickException(problem)
    entries, made, seconds = generate_shards(attack, model, plan, out_dir, rank=rank, world_size=world, batch_size=batch_size,
                                             progress=progress and rank == 0)  # fmt: skip
    rates = [(made, seconds)] if group is None else group.all_gather((made, seconds))
    everything = entries if group is None else [e for part in group.all_gather(entries) for e in part]
    if rank != 0:
        return
    total_made = sum(m for m, _ in rates)
    longest = max(t for _, t in rates)
    facts = {"fit": {"path": str(fit_path), "target": fit.target}, "checkpoints": checkpoints, "processes": world,
             "environment": _environment(), "generated_now": total_made, "seconds": longest}  # fmt: skip
    manifest = write_manifest(out_dir, plan, everything, facts)
    speed = f"; {total_made / longest:,.0f} images/s over {world} process(es)" if total_made and longest > 0 else ""
    click.echo(f"{plan.total:,} examples in {plan.num_shards} shard(s) ({total_made:,} made now{speed}); manifest: {manifest}")


# ---------------------------------------------------------------------------------------------
# atgan evaluate


@main.command("evaluate")
@_checkpoint_options("generator", "model", "oracle", "features")
@_guard_option
@_guard_cache_option
@_dataset_option
@_data_dir_option
@_count_option(10_000, "Fresh examples per setting (generation is one forward pass, so this is cheap).")
@click.option("--targets", default="none", show_default=True, callback=_parse_targets,
              help='Targets to evaluate besides the untargeted setting: "all", "none" or e.g. "0,3,7".')
@click.option("--fit", "fit_paths", type=click.Path(dir_okay=False), multiple=True,
              help="Reuse a saved G_attack instead of fitting its setting (repeatable; the file records its target).")
@click.option("--save-fits/--no-save-fits", default=False, show_default=True,
              help="Also write every fitted G_attack into the run folder (about 27 MB each).")
@_fit_options()
@_scale_options
@_runs_dir_option
@_device_option
@_seed_option
@_progress_option
@_user_errors
def evaluate_command(
    generator_path: str | None, model_path: str | None, oracle_path: str | None, features_path: str | None,
    guard_specs: tuple[str, ...], guard_cache_dir: str | None, dataset: str, data_dir: str | None, n: int,
    targets: Targets, fit_paths: tuple[str, ...], save_fits: bool, runs_dir: str, device: str,
    seed: int, progress: bool, **hyper: Any,
) -> None:  # fmt: skip
    """Measure AT-GAN: success, realism (oracle agreement, robust-feature Fréchet distance, added
    edges), distance to G_orig, throughput.

    Evaluation examples are drawn from --seed + 1, independently of the fit. Writes report.json,
    grid.png (G_orig / AT-GAN / difference), targets.png (with --targets all) and options.json.
    """
    result = _run_evaluation(
        generator_path=generator_path, model_path=model_path, oracle_path=oracle_path, features_path=features_path,
        guard_specs=guard_specs, guard_cache_dir=guard_cache_dir, dataset=dataset, data_dir=data_dir, n=n, targets=targets,
        fit_paths=fit_paths, save_fits=save_fits, runs_dir=runs_dir, run_name="evaluate", device=device,
        seed=seed, progress=progress, hyper=hyper,
    )  # fmt: skip
    if result is None:  # a torchrun process other than rank 0: it took part in the fit
        return
    run_dir, report, outputs = result
    click.echo(report.table())
    click.echo(f"outputs in {run_dir}: {', '.join(outputs)}")
    report_path = write_report(run_dir)
    click.echo(f"report: {report_path}")


# ---------------------------------------------------------------------------------------------
# atgan demo


@main.command("demo")
@_checkpoint_options("generator", "model", "oracle", "features")
@_guard_option
@_guard_cache_option
@_dataset_option
@_data_dir_option
@_count_option(2_000, "Examples to evaluate.")
@_fit_options()
@_scale_options
@_runs_dir_option
@_device_option
@_seed_option
@_progress_option
@_user_errors
def demo_command(
    generator_path: str | None, model_path: str | None, oracle_path: str | None, features_path: str | None,
    guard_specs: tuple[str, ...], guard_cache_dir: str | None, dataset: str, data_dir: str | None, n: int, runs_dir: str,
    device: str, seed: int, progress: bool, **hyper: Any,
) -> None:  # fmt: skip
    """Fit AT-GAN against the shipped Model A (untargeted) and evaluate it: a few minutes on a CPU."""
    from atgan_plugin.attack.distributed import launched_by_torchrun

    start = time.perf_counter()
    target_name = "Model A" if model_path is None else Path(model_path).name
    if not launched_by_torchrun() or os.environ.get("RANK") == "0":
        click.echo(f"AT-GAN demo: fitting G_attack against {target_name} ({hyper['steps']} steps), then judging "
                   f"{n:,} fresh examples with the oracle.")  # fmt: skip
    result = _run_evaluation(
        generator_path=generator_path, model_path=model_path, oracle_path=oracle_path, features_path=features_path,
        guard_specs=guard_specs, guard_cache_dir=guard_cache_dir, dataset=dataset, data_dir=data_dir, n=n, targets="none",
        fit_paths=(), save_fits=True, runs_dir=runs_dir, run_name="demo", device=device, seed=seed,
        progress=progress, hyper=hyper,
    )  # fmt: skip
    if result is None:
        return
    run_dir, report, outputs = result
    click.echo(report.table())
    if report.untargeted is not None:
        m = report.untargeted
        click.echo(f"{target_name} misclassifies {m.success_rate:.1%} of AT-GAN's images; the oracle still sees "
                   f"the source class in {m.oracle_agreement_attack:.1%} of them (G_orig's: {m.oracle_agreement_orig:.1%}, "
                   f"ratio {m.agreement_ratio:.3f}).")  # fmt: skip
        if m.fd_ratio is not None:
            click.echo(f"Fréchet distance to the real test images in robust features: G_orig {m.fd_orig:.1f}, AT-GAN "
                       f"{m.fd_attack:.1f} ({m.fd_ratio:.2f}x); added edges {m.added_edges:.2f} of G_orig's.")  # fmt: skip
    click.echo(f"done in {time.perf_counter() - start:.0f} s; outputs in {run_dir}: {', '.join(outputs)}")
    click.echo(f"next: atgan attack --fit {run_dir / 'g_attack.safetensors'} -n 64")
    report_path = write_report(run_dir)
    click.echo(f"report: {report_path}")


# ---------------------------------------------------------------------------------------------
# atgan reproduce

_QUICK = {"n": 16, "song_steps": 3, "steps": 3, "batch_size": 8}  # --quick sizes, for options left at their default


@main.command("reproduce")
@_dataset_option
@click.option("--checkpoints", "checkpoints_dir", type=click.Path(file_okay=False), default=None,
              help="Folder of target checkpoints named A-nor.safetensors, A-adv, A-ens, A-iter, ... D-iter; absent ones are "
                   "reported as missing [default: the 16 shipped Fashion-MNIST targets].")
@click.option("--quick", is_flag=True, default=False,
              help="Tiny sizes for an end-to-end check in seconds: options left at their default become --n 16, "
                   "--song-steps 3, --steps 3, --batch-size 8. Its numbers say nothing about the methods.")
@_count_option(1000, "Examples per (attack, model).")
@click.option("--song-steps", type=click.IntRange(min=1), default=200, show_default=True,
              help="Steps of Song et al.'s search (paper: 200).")
@click.option("--song-lr", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Learning rate of Song et al.'s search (paper: 1).")
@click.option("--toolkit", type=click.Choice(["advertorch", "foolbox"]), default="advertorch", show_default=True,
              help="Toolkit that runs FGSM, PGD and R+FGSM.")
@click.option("--ablation/--no-ablation", default=True, show_default=True, help="Measure the ρ ablation (Tables 8 and 9).")
@click.option("--figures/--no-figures", default=True, show_default=True, help="Write the Figure 8 and Figure 10/11 grids.")
@_checkpoint_options("generator", "oracle", "features")
@_guard_option
@_guard_cache_option
@click.option("--transfer-guard", "transfer_guard_paths", type=click.Path(dir_okay=False), multiple=True,
              help=_TRANSFER_GUARD_HELP)
@_fit_options()
@_data_dir_option
@_runs_dir_option
@_device_option
@_seed_option
@_progress_option
@_user_errors
def reproduce_command(
    dataset: str, checkpoints_dir: str | None, quick: bool, n: int, song_steps: int, song_lr: float, toolkit: str,
    ablation: bool, figures: bool, generator_path: str | None, oracle_path: str | None, features_path: str | None,
    guard_specs: tuple[str, ...], guard_cache_dir: str | None, transfer_guard_paths: tuple[str, ...], data_dir: str | None,
    runs_dir: str, device: str, seed: int, progress: bool, **hyper: Any,
) -> None:  # fmt: skip
    """Reproduce the paper's evaluation: success of FGSM, PGD, R+FGSM, Song et al. and AT-GAN against
    Models A-D x {Nor., Adv., Ens., Iter.}, transfer A -> C, the rho ablation, realism, time, figures.

    Writes results.md and results.json (with the command and the machine), the figures and
    options.json into a new numbered run folder. By default it runs on the 16 shipped Fashion-MNIST
    targets with the attack's defaults. The full size (1,000 examples, 200 search steps, 1,000 fit
    steps) is meant for a GPU; on a CPU, run one architecture per core with --checkpoints and join
    the runs with `atgan reproduce-merge` (docs/results/README.md; results in
    docs/results/fashion-mnist.md).
    """
    from click.core import ParameterSource

    from atgan_plugin.checkpoints import atomic_write
    from atgan_plugin.paper.reproduce import ReproduceConfig, find_checkpoints, load_target, render_markdown, reproduce
    from atgan_plugin.paper.song import SETTINGS as SONG_SETTINGS

    ctx = click.get_current_context()
    sizes = {"n": n, "song_steps": song_steps, "steps": hyper["steps"], "batch_size": hyper["batch_size"]}
    if quick:
        sizes = {k: (_QUICK[k] if ctx.get_parameter_source(k) == ParameterSource.DEFAULT else v) for k, v in sizes.items()}
    hyper = {**hyper, "steps": sizes["steps"], "batch_size": sizes["batch_size"]}
    dev = resolve_device(device)
    seed_everything(seed)

    # Load everything before the run folder exists, so a bad path leaves nothing behind.
    networks, checkpoints = _load_networks(dev, generator=generator_path, oracle=oracle_path)
    guard, guard_record = _guard_spec(guard_specs, dev)
    checkpoints["guard"] = ", ".join(guard_record)
    transfer_guards, checkpoints["transfer_guard"] = _transfer_guards(transfer_guard_paths, generator_path, dev)
    frechet, features = _realism_judge(features_path, networks["generator"], dataset, data_dir, dev)
    if features is not None:
        checkpoints["features"] = features
    if checkpoints_dir is None:
        from atgan_plugin.pretrained import pretrained_targets_dir

        checkpoints_dir = str(pretrained_targets_dir(dataset))
    slots = find_checkpoints(checkpoints_dir)
    models, models_info = {}, {}
    for slot, path in slots.items():
        if path is not None:
            models[slot], models_info[slot] = load_target(path, dev)
            checkpoints[slot] = str(path)
    if not models:
        raise click.ClickException(f"no target checkpoints in {checkpoints_dir} (expected names such as A-nor.safetensors)")
    test = load_dataset(dataset, "test", data_dir)
    song = SONG_SETTINGS.get(dataset, SONG_SETTINGS["fashion-mnist"])
    fit = {k: hyper[k] for k in _FIT_PARAMETERS if k != "search_steps"}
    config = ReproduceConfig(dataset=dataset, n=sizes["n"], atgan=TransferConfig(seed=seed, **fit), search_steps=hyper["search_steps"],
                             song=replace(song, steps=sizes["song_steps"], lr=song_lr, seed=seed), toolkit=toolkit,
                             ablation=ablation, figures=figures, quick=quick, seed=seed)  # fmt: skip
    run_dir = _new_run(runs_dir, "reproduce", checkpoints)

    click.echo(f"reproducing on {len(models)} of 16 target checkpoints ({', '.join(models)}), {config.n} examples each"
               f"{' (quick)' if quick else ''}")  # fmt: skip
    report = reproduce(models, networks["generator"], networks["oracle"], test, config, guard=guard, guard_cache_dir=guard_cache_dir,
                       transfer_guards=transfer_guards, frechet=frechet, out_dir=run_dir, device=dev, progress=progress,
                       models_info=models_info, environment=_environment(), log=lambda message: click.echo(f"  {message}"))  # fmt: skip
    runs.write_json(run_dir / "results.json", report)
    with atomic_write(run_dir / "results.md") as tmp:
        tmp.write_text(render_markdown(report))
    outputs = ["options.json", "results.md", "results.json", *(figure["file"] for figure in report["figures"])]
    click.echo(f"done in {report['seconds']:.0f} s; outputs in {run_dir}: {', '.join(outputs)}")
    report_path = write_report(run_dir)
    click.echo(f"report: {report_path}")


@main.command("reproduce-merge")
@click.argument("parts", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True))
@_runs_dir_option
@_user_errors
def reproduce_merge_command(parts: tuple[str, ...], runs_dir: str) -> None:
    """Merge `atgan reproduce` runs over disjoint checkpoints into one report.

    PARTS are run folders (each with results.json), e.g. one run per architecture made side by side
    on a CPU's cores. They must share the dataset, sizes and settings (--ablation and --figures may
    differ). Writes results.md, results.json and the parts' figures into a new numbered run folder.
    """
    import shutil

    from atgan_plugin.checkpoints import atomic_write
    from atgan_plugin.paper.reproduce import merge_reports, render_markdown

    folders = [Path(part) for part in parts]
    missing = [str(folder) for folder in folders if not (folder / "results.json").is_file()]
    if missing:
        raise click.ClickException(f"no results.json in {', '.join(missing)} (give the run folders of atgan reproduce)")
    reports = [json.loads((folder / "results.json").read_text()) for folder in folders]
    merged = merge_reports(reports, environment=_environment())
    figures = [(folder / figure["file"], figure["file"]) for folder, report in zip(folders, reports, strict=True)
               for figure in report["figures"]]  # fmt: skip
    names = [name for _, name in figures]
    if len(set(names)) != len(names):
        raise click.UsageError(f"two parts wrote the same figure file ({sorted(names)}); merge parts with figures from one only")
    run_dir = _new_run(runs_dir, "reproduce-merge", {f"part{i}": str(folder) for i, folder in enumerate(folders, start=1)})
    for source, name in figures:
        shutil.copy2(source, run_dir / name)
    runs.write_json(run_dir / "results.json", merged)
    with atomic_write(run_dir / "results.md") as tmp:
        tmp.write_text(render_markdown(merged))
    click.echo(f"merged {len(folders)} runs ({len(merged['white_box'])} of 16 target checkpoints) into {run_dir}")


# Where people look at a run: report.html and the human evaluation (atgan_plugin/cli/views.py).
from atgan_plugin.cli.views import human_eval_command, report_command  # noqa: E402

main.add_command(report_command)
main.add_command(human_eval_command)

if __name__ == "__main__":
    main()
