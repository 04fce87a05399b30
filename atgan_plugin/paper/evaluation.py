"""``atgan evaluate`` and ``atgan demo``: success, realism, distance and throughput of a fitted AT-GAN; grids.

Success alone is not the measure: an image that no longer shows its source class
is a failure. Realism is judged by an *oracle*, a classifier of an architecture used nowhere else, trained
on real data, never used to train or attack. For G_orig's and G_attack's images on the same ``(z, y_s)``
we report how often the oracle still gives ``y_s``. The counting and its words are
:mod:`atgan_plugin.metrics`'s; one row per setting (untargeted, and each target) is a
:class:`~atgan_plugin.metrics.records.SettingMetrics`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torchvision.utils import make_grid, save_image

from atgan_plugin.adapters.protocol import ConditionalGenerator
from atgan_plugin.attack.atgan import ATGANAttack
from atgan_plugin.attack.fit import sample_sources
from atgan_plugin.metrics.counting import Tally
from atgan_plugin.metrics.machine import mean_time
from atgan_plugin.metrics.realism import RobustFrechetDistance
from atgan_plugin.metrics.records import SettingMetrics
from atgan_plugin.paper.rejected import RejectedExamples
from atgan_plugin.utils import eval_mode

__all__ = [
    "EVALUATION_SCHEMA_VERSION",
    "EvaluationReport",
    "SettingMetrics",
    "evaluate_attack",
    "save_class_grid",
    "save_difference_grid",
    "save_target_grid",
]

# report.json's layout: 1 (no "schema_version" key) and 2 hold the same fields; 2 names its version; 3 adds
# each setting's reference_error and per_class counts, and rejected_examples (older files lack them: not measured).
EVALUATION_SCHEMA_VERSION = 3
_MEAN_KEYS = ("success_rate", "realistic_success_rate", "agreement_ratio", "fd_ratio", "added_edges", "mean_l2")


@dataclass
class EvaluationReport:
    """What ``evaluate_attack`` measured; :meth:`to_dict` is ``report.json`` (the CLI adds the fits)."""

    untargeted: SettingMetrics | None
    targeted: list[SettingMetrics] = field(default_factory=list)
    generation_images_per_second: float = 0.0
    fit_seconds: float = 0.0
    device: str = "cpu"
    schema_version: int = EVALUATION_SCHEMA_VERSION

    def targeted_mean(self, key: str) -> float | None:
        """The mean of ``key`` over the targets (None without targets, or when one of them lacks it)."""
        values = [getattr(m, key) for m in self.targeted]
        if not values or any(v is None for v in values):
            return None
        return float(sum(values) / len(values))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.targeted:
            data["targeted_mean"] = {key: self.targeted_mean(key) for key in _MEAN_KEYS}
        return data

    def table(self) -> str:
        """A plain-text table, one row per setting (FD columns only when measured)."""
        settings = ([self.untargeted] if self.untargeted else []) + self.targeted
        with_fd = any(m.fd_ratio is not None for m in settings)
        fd_header = f"{'FD(orig)':>10}{'FD(adv)':>9}{'FD x':>6}" if with_fd else ""
        header = (
            f"{'setting':<12}{'n':>7}{'success':>9}{'realistic':>11}{'oracle(orig)':>14}{'oracle(adv)':>13}"
            f"{'ratio':>7}{fd_header}{'edges':>7}{'L2':>7}{'Linf':>7}"
        )
        rows = [header, "-" * len(header)]
        for m in settings:
            name = "untargeted" if m.target is None else f"target {m.target}"
            fd = ""
            if with_fd and m.fd_orig is not None and m.fd_attack is not None and m.fd_ratio is not None:
                fd = f"{m.fd_orig:>10.1f}{m.fd_attack:>9.1f}{m.fd_ratio:>6.2f}"
            rows.append(
                f"{name:<12}{m.n:>7}{m.success_rate:>9.3f}{m.realistic_success_rate:>11.3f}"
                f"{m.oracle_agreement_orig:>14.3f}{m.oracle_agreement_attack:>13.3f}{m.agreement_ratio:>7.3f}"
                f"{fd}{m.added_edges:>7.2f}{m.mean_l2:>7.2f}{m.mean_linf:>7.2f}"
            )
        if self.targeted:
            fd_mean = self.targeted_mean("fd_ratio")
            fd = f"{'':>19}{fd_mean:>6.2f}" if with_fd and fd_mean is not None else ""
            rows.append(
                f"{'targeted avg':<12}{'':>7}{self.targeted_mean('success_rate'):>9.3f}"
                f"{self.targeted_mean('realistic_success_rate'):>11.3f}{'':>27}"
                f"{self.targeted_mean('agreement_ratio'):>7.3f}{fd}"
            )
        rows.append(
            f"generation: {self.generation_images_per_second:,.0f} images/s on {self.device}; "
            f"fit: {self.fit_seconds:.1f} s"
        )
        if with_fd:
            rows.append(
                "FD: Fréchet distance to the real test images in a robust classifier's features (x: AT-GAN / G_orig); "
                "edges: total variation of the change over that of G_orig's image"
            )
        return "\n".join(rows)


def _generator(attack: ATGANAttack) -> ConditionalGenerator:
    """The attack's generator, typed by its protocol (``num_classes``, ``sample_z``)."""
    return cast(ConditionalGenerator, attack.generator)


def _fitted_device(attack: ATGANAttack, model: nn.Module, target: int | None) -> torch.device:
    """The device of the fit for ``target`` (fitting it first when it is not yet)."""
    return next(attack.fit(model, target).generator.parameters()).device


def _evaluate_setting(
    attack: ATGANAttack,
    model: nn.Module,
    oracle: nn.Module,
    target: int | None,
    n: int,
    batch_size: int,
    seed: int,
    frechet: RobustFrechetDistance | None = None,
    rejected: RejectedExamples | None = None,
) -> SettingMetrics:
    """One setting measured on ``n`` fresh ``(z, y_s)`` drawn from ``seed``; ``rejected`` keeps the examples
    the oracle rejected."""
    generator = _generator(attack)
    rng = torch.Generator().manual_seed(seed)
    device = _fitted_device(attack, model, target)
    bounds = (float(attack.clip_min), float(attack.clip_max))
    tally = Tally()
    kept: dict[str, list[torch.Tensor]] = {"orig": [], "attack": []}  # for the Fréchet distances, on CPU
    # Draw every (z, y_s) first, so that the numbers do not depend on batch_size.
    all_sources = sample_sources(n, int(generator.num_classes), target, rng)
    all_z = generator.sample_z(n, generator=rng, device="cpu")
    for start in range(0, n, batch_size):
        sources = all_sources[start : start + batch_size].to(device)
        z = all_z[start : start + batch_size].to(device)
        adversarial, reference = attack.generate(sources, target=target, z=z, model=model, with_reference=True)
        outcome = tally.add(
            model, oracle, adversarial, reference, sources, target=target, bounds=bounds, count_reference_error=True
        )
        if rejected is not None:
            rejected.add(reference, adversarial, sources, outcome)
        if frechet is not None:
            kept["orig"].append(reference.cpu())
            kept["attack"].append(adversarial.cpu())
    if frechet is None:
        return SettingMetrics.from_tally(tally, target)
    return SettingMetrics.from_tally(tally, target, fd_orig=frechet(kept["orig"]), fd_attack=frechet(kept["attack"]))


def _generation_throughput(
    attack: ATGANAttack, model: nn.Module, target: int | None, batch_size: int, repeats: int = 5
) -> float:
    """Images per second of :meth:`ATGANAttack.generate` (G_attack, G_orig and the shrink's model passes)."""
    generator = _generator(attack)
    num_classes = int(generator.num_classes)
    device = _fitted_device(attack, model, target)
    sources = torch.arange(batch_size, device=device) % num_classes
    if target is not None:
        sources = torch.where(sources == target, (sources + 1) % num_classes, sources)
    z = generator.sample_z(batch_size, generator=torch.Generator().manual_seed(0), device=device)
    with torch.no_grad():
        seconds = mean_time(lambda: attack.generate(sources, target=target, z=z, model=model), repeats, device)
    return batch_size / seconds


def evaluate_attack(
    attack: ATGANAttack,
    model: nn.Module,
    oracle: nn.Module,
    *,
    n: int = 10_000,
    targets: Sequence[int] | None = None,
    untargeted: bool = True,
    batch_size: int = 500,
    seed: int = 1,
    frechet: RobustFrechetDistance | None = None,
    rejected: RejectedExamples | None = None,
) -> EvaluationReport:
    """Fits what is not fitted yet, then measures ``n`` fresh examples per setting.

    ``model`` is the target (a ``torch.nn.Module`` taking images in the attack's clip range),
    ``oracle`` the independent judge (images in [0, 1]). Both run in eval mode; their own
    modes are restored afterwards. ``seed`` draws the evaluation's ``(z, y_s)``, independent
    of the fit's own seed. With ``frechet`` (built on the real test images) the report also
    holds the robust-feature Fréchet distances of G_orig's and G_attack's images. ``rejected`` collects the
    examples the oracle rejected in the first setting (the untargeted one when measured).
    """
    settings: list[int | None] = ([None] if untargeted else []) + list(targets or [])
    with eval_mode(model, oracle):
        start = time.perf_counter()
        if settings:
            attack.fit(model, targets=settings)  # the missing ones together, in one run
        fit_seconds = time.perf_counter() - start
        if rejected is not None and settings:
            rejected.target = settings[0]
        results = [  # the rejected examples of the first setting only: the one the summary leads with
            _evaluate_setting(attack, model, oracle, t, n, batch_size, seed, frechet, rejected if i == 0 else None)
            for i, t in enumerate(settings)
        ]
        throughput = _generation_throughput(attack, model, settings[0], batch_size) if settings else 0.0
    device = _fitted_device(attack, model, settings[0]) if settings else torch.device("cpu")
    return EvaluationReport(
        untargeted=results[0] if untargeted else None,
        targeted=results[1:] if untargeted else results,
        generation_images_per_second=throughput,
        fit_seconds=fit_seconds,
        device=str(device),
    )


@torch.no_grad()
def save_difference_grid(
    attack: ATGANAttack,
    model: nn.Module,
    path: str | Path,
    *,
    target: int | None = None,
    per_class: int = 1,
    seed: int = 2,
) -> Path:
    """Appendix Figure 10/11 layout: a G_orig row, an AT-GAN row and a difference row.

    One column per example (``per_class`` for each source class); the difference row shows
    ``0.5 + (G_attack − G_orig) / 2`` (grey is no change).
    """
    num_classes = int(_generator(attack).num_classes)
    sources = torch.arange(num_classes).repeat_interleave(per_class)
    if target is not None:
        sources = sources[sources != target]
    device = _fitted_device(attack, model, target)
    z = _generator(attack).sample_z(len(sources), generator=torch.Generator().manual_seed(seed), device=device)
    with eval_mode(model):
        adversarial, reference = attack.generate(
            sources.to(device), target=target, z=z, model=model, with_reference=True
        )
    difference = (0.5 + (adversarial - reference) / 2).clamp(0, 1)
    rows = torch.cat([reference, adversarial, difference]).cpu()
    save_image(rows, path, nrow=len(sources), padding=2, pad_value=1.0)
    return Path(path)


@torch.no_grad()
def save_target_grid(attack: ATGANAttack, model: nn.Module, path: str | Path, *, rows: int = 10, seed: int = 3) -> Path:
    """Appendix Figure 8 layout: one row per noise ``z`` (source class = row % K), one column per
    target class; the diagonal (target = source) shows G_orig's image. Fits every target."""
    num_classes = int(_generator(attack).num_classes)
    device = _fitted_device(attack, model, 0)  # every target gets fitted anyway
    z = _generator(attack).sample_z(rows, generator=torch.Generator().manual_seed(seed), device=device)
    sources = (torch.arange(rows) % num_classes).to(device)
    columns = []
    with eval_mode(model):
        for target in range(num_classes):
            adversarial, reference = attack.generate(sources, target=target, z=z, model=model, with_reference=True)
            keep = (sources == target)[:, None, None, None]
            columns.append(torch.where(keep, reference, adversarial))
    grid = torch.stack(columns, dim=1).flatten(0, 1).cpu()  # row-major: (rows * targets, C, H, W)
    save_image(make_grid(grid, nrow=num_classes, padding=2, pad_value=1.0), path)
    return Path(path)


@torch.no_grad()
def save_class_grid(
    attack: ATGANAttack,
    model: nn.Module,
    path: str | Path,
    *,
    target: int | None = None,
    columns: int = 4,
    scale: int = 3,
    seed: int = 4,
) -> Path:
    """One row per source class, at a readable size: ``columns`` G_orig images | the same ``(z, y)``
    through G_attack | their difference (``0.5 + (G_attack − G_orig) / 2``, grey is no change),
    the three blocks apart by a white tile, upscaled ``scale``× with nearest neighbours."""
    num_classes = int(_generator(attack).num_classes)
    classes = [k for k in range(num_classes) if k != target]
    sources = torch.tensor(classes).repeat_interleave(columns)
    device = _fitted_device(attack, model, target)
    z = _generator(attack).sample_z(len(sources), generator=torch.Generator().manual_seed(seed), device=device)
    with eval_mode(model):
        adversarial, reference = attack.generate(
            sources.to(device), target=target, z=z, model=model, with_reference=True
        )
    difference = (0.5 + (adversarial - reference) / 2).clamp(0, 1)
    gap = torch.ones_like(reference[:1])
    tiles = []
    for row in range(len(classes)):
        block = slice(row * columns, (row + 1) * columns)
        tiles += [reference[block], gap, adversarial[block], gap, difference[block]]
    grid = make_grid(torch.cat(tiles).cpu(), nrow=3 * columns + 2, padding=2, pad_value=1.0)
    save_image(torch.nn.functional.interpolate(grid[None], scale_factor=scale, mode="nearest")[0], path)
    return Path(path)
