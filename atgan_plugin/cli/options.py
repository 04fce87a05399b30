"""What the ``atgan`` commands share: their common options, option parsing, run folders and error handling.

Options are click decorators grouped by what they describe (data and machine, checkpoints and guards,
the fit's hyper-parameters, how the attack runs). Everything here parses or records options; the work
itself is in :mod:`atgan_plugin.workflows`.
"""

from __future__ import annotations

import dataclasses
import functools
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import torch

from atgan_plugin import runs
from atgan_plugin.attack.attack_options import AttackOptions
from atgan_plugin.attack.config import PRESETS, SEARCH_STEPS_RANGE, TransferConfig
from atgan_plugin.attack.fit import FitDivergedError
from atgan_plugin.attack.precision import PRECISIONS
from atgan_plugin.checkpoints import CheckpointError
from atgan_plugin.data import DATASETS, DatasetNotFoundError
from atgan_plugin.paper.gan_training import TrainingDivergedError
from atgan_plugin.utils import resolve_device

if TYPE_CHECKING:  # imported lazily below: it pulls in foolbox and advertorch
    from atgan_plugin.attack.distributed import Distributed

F = TypeVar("F", bound=Callable[..., Any])

Targets = tuple[int, ...] | str  # class indices, or "all" / "none"


def apply_options(options: list[Callable[[F], F]]) -> Callable[[F], F]:
    """One decorator applying ``options`` in order (the first one listed comes first in --help)."""

    def decorate(func: F) -> F:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


# Data and machine.
device_option = click.option(
    "--device", default="auto", show_default=True, help="auto (CUDA when available), cpu, cuda or cuda:N."
)
dataset_option = click.option(
    "--dataset", type=click.Choice(sorted(DATASETS)), default="fashion-mnist", show_default=True, help="Dataset name."
)
data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder with the IDX files or a torchvision root (default: the Debian package's folder).",
)
seed_option = click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
progress_option = click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars.")
runs_dir_option = click.option(
    "--runs-dir",
    type=click.Path(file_okay=False),
    default="runs",
    show_default=True,
    help="Parent folder of the numbered run folders (runs/00001-<command>/).",
)


def count_option(default: int | None, help_text: str) -> Callable[[F], F]:
    """A count, spelled ``-n``, ``--count`` or ``--n``.

    torchrun's own parser rejects ``--n`` anywhere on its command line (a prefix of its ``--nnodes``,
    ``--nproc-per-node``), so under torchrun write ``-n`` or ``--count``.
    """
    return click.option(
        "-n",
        "--n",
        "--count",
        "n",
        type=click.IntRange(min=1),
        default=default,
        required=default is None,
        show_default=default is not None,
        help=f"{help_text} (-n, --count or --n; --n not under torchrun)",
    )


# Checkpoints and guards.
CHECKPOINT_HELP = {
    "generator": "G_orig checkpoint, any format load_generator reads [default: the shipped Fashion-MNIST generator].",
    "model": "Target classifier checkpoint (atgan train-classifier) [default: the shipped Fashion-MNIST Model A].",
    "oracle": "Realism oracle checkpoint, a classifier used nowhere else [default: the shipped Fashion-MNIST oracle].",
    "features": "Adversarially trained classifier whose penultimate features measure the Fréchet distance to the "
    "real test images [default: the shipped Fashion-MNIST one, for 1x28x28 generators].",
}
TRANSFER_GUARD_HELP = (
    "Guards of the transfer table's transferable fit, instead of --guard's (repeatable) [default: the "
    "shipped robust guards (Model B, fast adversarial training; Model A, PGD) with the shipped "
    "generator, --guard's otherwise]."
)
GUARD_HELP = (
    'Guards that keep the source class during the fit: "auto" (the generator\'s own, e.g. its auxiliary '
    'classifier, plus one distilled from G_orig, trained once and cached), "none" (the paper\'s loss), or '
    "classifier checkpoints (repeat the option for several)."
)
guard_option = click.option(
    "--guard", "guard_specs", multiple=True, default=("auto",), show_default=True, help=GUARD_HELP
)
guard_cache_option = click.option(
    "--guard-cache-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where distilled guards are cached [default: $ATGAN_CACHE_DIR or ~/.cache/atgan-plugin].",
)


def checkpoint_options(*names: str, help_text: dict[str, str] | None = None) -> Callable[[F], F]:
    """``--generator``, ``--model``, ``--oracle``, ``--features`` (those named), each defaulting to a
    shipped file (resolved by :func:`atgan_plugin.workflows.networks.checkpoint_path`)."""
    texts = {**CHECKPOINT_HELP, **(help_text or {})}
    return apply_options(
        [
            click.option(
                f"--{name.replace('_', '-')}",
                f"{name}_path",
                type=click.Path(dir_okay=False),
                default=None,
                help=texts[name],
            )
            for name in names
        ]
    )


class CountOrFraction(click.ParamType):  # type: ignore[type-arg]  # click 8.3 made it generic
    """An integer count (``200``) or a fraction in [0, 1] (``0.255``), as ``rho_l0`` takes them."""

    name = "count|fraction"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int | float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        try:
            number: int | float = int(value) if str(value).strip().lstrip("+").isdigit() else float(value)
        except ValueError:
            self.fail(f"{value!r} is neither a count nor a fraction", param, ctx)
        if number < 0 or (isinstance(number, float) and number > 1):
            self.fail(f"{value!r} must be a count >= 0 or a fraction in [0, 1]", param, ctx)
        return number


COUNT_OR_FRACTION = CountOrFraction()


# The attack's settings (a TransferConfig's fields): each option defaults to the --config preset's value.
CONFIG_HELP = (
    "The attack's settings: realistic (guards, the feature term, the shrink; the default) or paper (the paper's "
    "attack: no guard, no shrink). Each option below changes one of its fields. Without --config, --guard none "
    "keeps the paper's fit settings with the shrink, as before presets."
)


def fit_options(defaults: TransferConfig | None = None) -> Callable[[F], F]:
    """``--config`` and ``--steps``, ``--lr``, ``--alpha`` … ``--search-steps``: each defaults to the ``--config``
    preset's value (``None`` here; both presets' values are shown), or to ``defaults``' when given (a command
    with settings of its own, ``atgan reproduce``)."""
    positive = click.FloatRange(min=0, min_open=True)
    non_negative = click.FloatRange(min=0)
    realistic, paper = TransferConfig.realistic(), TransferConfig.paper()

    def default(name: str) -> dict[str, Any]:
        if defaults is not None:
            return {"default": getattr(defaults, name), "show_default": True}
        shown = f"realistic {getattr(realistic, name):g}, paper {getattr(paper, name):g}"
        return {"default": None, "show_default": shown}

    preset = (
        []
        if defaults is not None
        else [click.option("--config", type=click.Choice(sorted(PRESETS)), default=None, help=CONFIG_HELP)]
    )
    return apply_options(
        [
            *preset,
            click.option(
                "--steps",
                type=click.IntRange(min=1),
                **default("steps"),
                help=(
                    "Adam steps of the fit (the realistic preset doubles them once where the fit lags; the "
                    "stopping rule may end it earlier)."
                ),
            ),
            click.option("--lr", type=positive, **default("lr"), help="Adam learning rate of the fit (its peak)."),
            click.option(
                "--alpha",
                type=non_negative,
                **default("alpha"),
                help="Weight α of L_adv (fool the model).",
            ),
            click.option(
                "--beta",
                type=non_negative,
                **default("beta"),
                help="Weight β of L_dist (stay close to G_orig).",
            ),
            click.option(
                "--kappa",
                type=non_negative,
                **default("kappa"),
                help="Confidence margin κ of L_adv, in log-probability.",
            ),
            click.option(
                "--gamma",
                type=non_negative,
                **default("gamma"),
                help="Weight γ of the source-class guard (our addition; 0 turns it off).",
            ),
            click.option(
                "--feature",
                type=non_negative,
                **default("feature"),
                help="Weight of the distance in the guards' penultimate features (our addition; needs guards; "
                "lowers the robust-feature Fréchet distance; 0 turns it off).",
            ),
            click.option(
                "--rho-l0",
                type=COUNT_OR_FRACTION,
                **default("rho_l0"),
                help="ℓ0 bound of the noise ρ in L_dist: a count of values per image (200) or a fraction of them (0.255).",
            ),
            click.option(
                "--rho-linf",
                type=non_negative,
                **default("rho_linf"),
                help="ℓ∞ bound of the noise ρ in L_dist.",
            ),
            click.option(
                "--batch-size",
                type=click.IntRange(min=1),
                **default("batch_size"),
                help="Batch of (z, y_s) per fit step.",
            ),
            click.option(
                "--tv",
                type=non_negative,
                **default("tv"),
                help="Weight of the total variation of G_attack - G_orig (our addition; smoother changes, "
                "less success against robust models; 0 turns it off).",
            ),
            click.option(
                "--search-steps",
                type=click.IntRange(*SEARCH_STEPS_RANGE),
                **default("search_steps"),
                help="Search passes of the per-example shrink towards G_orig's image while the model stays "
                "fooled (our addition; search-steps + 2 model passes per example; 0: G_attack's image as it "
                "is, the paper).",
            ),
        ]
    )


# How the attack runs, not what it fits (attack, fit, evaluate, demo; ATGANAttack's keyword arguments too).
scale_options = apply_options(
    [
        click.option(
            "--joint-batch-size",
            type=click.IntRange(min=1),
            default=AttackOptions().joint_batch_size,
            show_default=True,
            help="Examples per target and step when several targets are fitted together in one run; at most "
            "--batch-size, which gives the separate fits' results. Below it, the untargeted setting is fitted alone.",
        ),
        click.option(
            "--precision",
            type=click.Choice(PRECISIONS),
            default=AttackOptions().precision,
            show_default=True,
            help="bf16: the fit's and the generation's forward passes under bf16 autocast (GPUs with bf16 tensor "
            "cores); parameters and losses stay float32.",
        ),
    ]
)


# Parsing.
def parse_targets(ctx: click.Context, param: click.Parameter, value: str) -> Targets:
    """``--targets``: "all", "none", or class indices such as "0,3,7"; the range is checked later,
    once the generator's number of classes is known (:func:`resolve_targets`)."""
    text = value.strip().lower()
    if text in ("all", "none"):
        return text
    try:
        targets = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise click.BadParameter(
            f'{value!r} is not "all", "none" or comma-separated class indices such as "0,3,7"'
        ) from None
    if len(set(targets)) != len(targets):
        raise click.BadParameter(f"{value!r} names a class twice")
    return targets


def resolve_targets(targets: Targets, num_classes: int) -> list[int]:
    """``--targets`` as a list of classes of a generator with ``num_classes`` classes."""
    if isinstance(targets, str):
        return list(range(num_classes)) if targets == "all" else []
    bad = [t for t in targets if not 0 <= t < num_classes]
    if bad:
        raise click.BadParameter(
            f"classes {bad} are outside [0, {num_classes}) (the generator's classes)", param_hint="'--targets'"
        )
    return list(targets)


def guard_spec(specs: tuple[str, ...], device: torch.device) -> tuple[Any, list[str]]:
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


def note(message: str) -> None:
    """A remark on stderr that does not stop the command (e.g. a measure left out)."""
    click.echo(f"note: {message}", err=True)


# Errors, environment, run folders, processes.
def user_errors(func: F) -> F:
    """Turns the errors a user can fix into click errors (one line, exit code 1 or 2)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (
            DatasetNotFoundError,
            CheckpointError,
            FileNotFoundError,
            FitDivergedError,
            TrainingDivergedError,
        ) as error:
            raise click.ClickException(str(error)) from error
        except ValueError as error:
            raise click.UsageError(str(error)) from error

    return wrapper  # type: ignore[return-value]  # functools.wraps loses F's signature


def environment() -> dict[str, str]:
    """What a run records of where it ran: versions, platform and the command line."""
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "command": " ".join(["atgan", *sys.argv[1:]]),
    }


RUN_DIR_KEY = "atgan_plugin.run_dir"  # where a command leaves its run folder for the group's result callback


def new_run(runs_dir: str, name: str, checkpoints: dict[str, str], config: TransferConfig | None = None) -> Path:
    """A fresh numbered run folder holding ``options.json`` (the command's options, the checkpoints
    it read, the fit's settings they resolved to, and the environment). When the command returns, the
    ``atgan`` group marks it complete (``complete.json``); a killed run has none."""
    run_dir = runs.new_run_dir(runs_dir, name)
    ctx = click.get_current_context()
    record: dict[str, Any] = {"options": dict(ctx.params), "checkpoints": checkpoints}
    if config is not None:
        record["config"] = dataclasses.asdict(config)  # the options left out resolve to the preset's values
    record["environment"] = environment()
    runs.write_json(run_dir / "options.json", record)
    ctx.meta[RUN_DIR_KEY] = run_dir
    return run_dir


def session(device: str) -> tuple[torch.device, Distributed | None]:
    """This process's device, and its process group when torchrun started it (left when the command ends).

    Under torchrun only rank 0 makes run folders and prints; the others fit and stay silent."""
    from atgan_plugin.attack.distributed import init

    group = init(device)
    if group is None:
        return resolve_device(device), None
    click.get_current_context().call_on_close(group.shutdown)
    return group.device, group
