"""Evaluating a fitted AT-GAN: success, realism, distance, throughput; tables, JSON, image grids.

Success alone is not the measure (``method.md`` §2): an image that no longer shows its source
class is a failure. Realism is judged by an *oracle*, a classifier of an architecture used
nowhere else, trained on real data, never used to train or attack. For G_orig's and
G_attack's images on the same ``(z, y_s)`` we report how often the oracle still gives ``y_s``.

Metrics per setting (untargeted, and each target):
- ``success_rate``: the target model misclassifies (untargeted) or outputs the target;
- ``realistic_success_rate``: success *and* the oracle still gives the source class;
- ``oracle_agreement_orig`` / ``oracle_agreement_attack`` and their ratio ``agreement_ratio``;
- ``fd_orig`` / ``fd_attack`` and their ratio ``fd_ratio``: Fréchet distance to the real test images
  in a robust classifier's features (:mod:`atgan_plugin.metrics.realism`), when one is given;
- ``added_edges``: the artefact measure, total variation of ``G_attack − G_orig`` over that of G_orig;
- ``mean_l2`` / ``mean_linf``: distance between G_attack's and G_orig's images (in [0, 1] units).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.utils import make_grid, save_image

from atgan_plugin.attack.atgan import ATGANAttack
from atgan_plugin.attack.transfer import sample_sources, to_bounds
from atgan_plugin.metrics.realism import RobustFrechetDistance, added_edges
from atgan_plugin.utils import eval_mode

__all__ = ["EvaluationReport", "SettingMetrics", "evaluate_attack", "save_class_grid", "save_difference_grid", "save_target_grid"]


@dataclass
class SettingMetrics:
    target: int | None
    n: int
    success_rate: float
    realistic_success_rate: float
    oracle_agreement_orig: float
    oracle_agreement_attack: float
    agreement_ratio: float
    mean_l2: float
    mean_linf: float
    added_edges: float
    fd_orig: float | None = None
    fd_attack: float | None = None
    fd_ratio: float | None = None


@dataclass
class EvaluationReport:
    untargeted: SettingMetrics | None
    targeted: list[SettingMetrics] = field(default_factory=list)
    generation_images_per_second: float = 0.0
    fit_seconds: float = 0.0
    device: str = "cpu"

    def targeted_mean(self, key: str) -> float | None:
        values = [getattr(m, key) for m in self.targeted]
        if not values or any(v is None for v in values):
            return None
        return sum(values) / len(values)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.targeted:
            keys = ("success_rate", "realistic_success_rate", "agreement_ratio", "fd_ratio", "added_edges", "mean_l2")
            data["targeted_mean"] = {key: self.targeted_mean(key) for key in keys}
        return data

    def table(self) -> str:
        """A plain-text table, one row per setting (FD columns only when measured)."""
        settings = ([self.untargeted] if self.untargeted else []) + self.targeted
        with_fd = any(m.fd_ratio is not None for m in settings)
        header = (f"{'setting':<12}{'n':>7}{'success':>9}{'realistic':>11}{'oracle(orig)':>14}{'oracle(adv)':>13}"
                  f"{'ratio':>7}" + (f"{'FD(orig)':>10}{'FD(adv)':>9}{'FD x':>6}" if with_fd else "")
                  + f"{'edges':>7}{'L2':>7}{'Linf':>7}")  # fmt: skip
        rows = [header, "-" * len(header)]
        for m in settings:
            name = "untargeted" if m.target is None else f"target {m.target}"
            fd = f"{m.fd_orig:>10.1f}{m.fd_attack:>9.1f}{m.fd_ratio:>6.2f}" if with_fd and m.fd_ratio is not None else ""
            rows.append(f"{name:<12}{m.n:>7}{m.success_rate:>9.3f}{m.realistic_success_rate:>11.3f}"
                        f"{m.oracle_agreement_orig:>14.3f}{m.oracle_agreement_attack:>13.3f}{m.agreement_ratio:>7.3f}"
                        f"{fd}{m.added_edges:>7.2f}{m.mean_l2:>7.2f}{m.mean_linf:>7.2f}")  # fmt: skip
        if self.targeted:
            fd_mean = self.targeted_mean("fd_ratio")
            fd = f"{'':>19}{fd_mean:>6.2f}" if with_fd and fd_mean is not None else ""
            rows.append(f"{'targeted avg':<12}{'':>7}{self.targeted_mean('success_rate'):>9.3f}"
                        f"{self.targeted_mean('realistic_success_rate'):>11.3f}{'':>27}{self.targeted_mean('agreement_ratio'):>7.3f}"
                        f"{fd}")  # fmt: skip
        rows.append(f"generation: {self.generation_images_per_second:,.0f} images/s on {self.device}; fit: {self.fit_seconds:.1f} s")
        if with_fd:
            rows.append("FD: Fréchet distance to the real test images in a robust classifier's features (x: AT-GAN / G_orig); "
                        "edges: total variation of the change over that of G_orig's image")
        return "\n".join(rows)


@torch.no_grad()
def _predict(model: nn.Module, images: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    return model(to_bounds(images, bounds)).argmax(1)


def _evaluate_setting(
    attack: ATGANAttack, model: nn.Module, oracle: nn.Module, target: int | None, n: int, batch_size: int, seed: int,
    frechet: RobustFrechetDistance | None = None,
) -> SettingMetrics:
    generator = attack.generator
    rng = torch.Generator().manual_seed(seed)
    device = next(attack.fit(model, target).generator.parameters()).device
    bounds = (float(attack.clip_min), float(attack.clip_max))
    sums = dict(success=0.0, realistic=0.0, agree_orig=0.0, agree_attack=0.0, l2=0.0, linf=0.0, edges=0.0, orig_edges=0.0)
    kept: dict[str, list[torch.Tensor]] = {"orig": [], "attack": []}  # for the Fréchet distances, on CPU
    # Draw every (z, y_s) first, so that the numbers do not depend on batch_size.
    all_sources = sample_sources(n, int(generator.num_classes), target, rng)
    all_z = generator.sample_z(n, generator=rng, device="cpu")
    for start in range(0, n, batch_size):
        sources = all_sources[start : start + batch_size].to(device)
        z = all_z[start : start + batch_size].to(device)
        adversarial, reference = attack.generate(sources, target=target, z=z, model=model, with_reference=True)
        predicted = _predict(model, adversarial, bounds)
        success = predicted != sources if target is None else predicted == target
        agree_attack = _predict(oracle, adversarial, (0.0, 1.0)) == sources
        agree_orig = _predict(oracle, reference, (0.0, 1.0)) == sources
        diff = (adversarial - reference).flatten(1)
        sums["success"] += success.sum().item()
        sums["realistic"] += (success & agree_attack).sum().item()
        sums["agree_orig"] += agree_orig.sum().item()
        sums["agree_attack"] += agree_attack.sum().item()
        sums["l2"] += diff.norm(dim=1).sum().item()
        sums["linf"] += diff.abs().amax(dim=1).sum().item()
        edges, orig_edges = added_edges(adversarial, reference)
        sums["edges"] += edges
        sums["orig_edges"] += orig_edges
        if frechet is not None:
            kept["orig"].append(reference.cpu())
            kept["attack"].append(adversarial.cpu())
    mean = {k: v / n for k, v in sums.items()}
    fd = {name: frechet(batches) for name, batches in kept.items()} if frechet is not None else {}
    return SettingMetrics(
        target=target, n=n, success_rate=mean["success"], realistic_success_rate=mean["realistic"],
        oracle_agreement_orig=mean["agree_orig"], oracle_agreement_attack=mean["agree_attack"],
        agreement_ratio=mean["agree_attack"] / max(mean["agree_orig"], 1e-12),
        mean_l2=mean["l2"], mean_linf=mean["linf"], added_edges=sums["edges"] / max(sums["orig_edges"], 1e-12),
        fd_orig=fd.get("orig"), fd_attack=fd.get("attack"),
        fd_ratio=fd["attack"] / max(fd["orig"], 1e-12) if fd else None,
    )  # fmt: skip


def _generation_throughput(attack: ATGANAttack, model: nn.Module, target: int | None, batch_size: int, repeats: int = 5) -> float:
    """Images per second of :meth:`ATGANAttack.generate` (G_attack, G_orig and the shrink's model passes)."""
    fit = attack.fit(model, target)
    device = next(fit.generator.parameters()).device
    sources = torch.arange(batch_size, device=device) % int(attack.generator.num_classes)
    if target is not None:
        sources = torch.where(sources == target, (sources + 1) % int(attack.generator.num_classes), sources)
    z = attack.generator.sample_z(batch_size, generator=torch.Generator().manual_seed(0), device=device)
    with torch.no_grad():
        attack.generate(sources, target=target, z=z, model=model)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            attack.generate(sources, target=target, z=z, model=model)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return batch_size * repeats / (time.perf_counter() - start)


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
) -> EvaluationReport:
    """Fits what is not fitted yet, then measures ``n`` fresh examples per setting.

    ``model`` is the target (a ``torch.nn.Module`` taking images in the attack's clip range),
    ``oracle`` the independent judge (images in [0, 1]). Both run in eval mode; their own
    modes are restored afterwards. ``seed`` draws the evaluation's ``(z, y_s)``, independent
    of the fit's own seed. With ``frechet`` (built on the real test images) the report also
    holds the robust-feature Fréchet distances of G_orig's and G_attack's images.
    """
    settings: list[int | None] = ([None] if untargeted else []) + list(targets or [])
    with eval_mode(model, oracle):
        start = time.perf_counter()
        if settings:
            attack.fit(model, targets=settings)  # the missing ones together, in one run
        fit_seconds = time.perf_counter() - start
        results = [_evaluate_setting(attack, model, oracle, t, n, batch_size, seed, frechet) for t in settings]
        throughput = _generation_throughput(attack, model, settings[0], batch_size) if settings else 0.0
    device = next(attack.fit(model, settings[0]).generator.parameters()).device if settings else torch.device("cpu")
    return EvaluationReport(
        untargeted=results[0] if untargeted else None,
        targeted=results[1:] if untargeted else results,
        generation_images_per_second=throughput,
        fit_seconds=fit_seconds,
        device=str(device),
    )


@torch.no_grad()
def save_difference_grid(attack: ATGANAttack, model: nn.Module, path: str | Path, *, target: int | None = None,
                         per_class: int = 1, seed: int = 2) -> Path:  # fmt: skip
    """Appendix Figure 10/11 layout: a G_orig row, an AT-GAN row and a difference row.

    One column per example (``per_class`` for each source class); the difference row shows
    ``0.5 + (G_attack − G_orig) / 2`` (grey is no change).
    """
    num_classes = int(attack.generator.num_classes)
    sources = torch.arange(num_classes).repeat_interleave(per_class)
    if target is not None:
        sources = sources[sources != target]
    device = next(attack.fit(model, target).generator.parameters()).device
    z = attack.generator.sample_z(len(sources), generator=torch.Generator().manual_seed(seed), device=device)
    with eval_mode(model):
        adversarial, reference = attack.generate(sources.to(device), target=target, z=z, model=model, with_reference=True)
    difference = (0.5 + (adversarial - reference) / 2).clamp(0, 1)
    rows = torch.cat([reference, adversarial, difference]).cpu()
    save_image(rows, path, nrow=len(sources), padding=2, pad_value=1.0)
    return Path(path)


@torch.no_grad()
def save_target_grid(attack: ATGANAttack, model: nn.Module, path: str | Path, *, rows: int = 10, seed: int = 3) -> Path:
    """Appendix Figure 8 layout: one row per noise ``z`` (source class = row % K), one column per
    target class; the diagonal (target = source) shows G_orig's image. Fits every target."""
    num_classes = int(attack.generator.num_classes)
    device = next(attack.fit(model, 0).generator.parameters()).device  # every target gets fitted anyway
    z = attack.generator.sample_z(rows, generator=torch.Generator().manual_seed(seed), device=device)
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
def save_class_grid(attack: ATGANAttack, model: nn.Module, path: str | Path, *, target: int | None = None,
                    columns: int = 4, scale: int = 3, seed: int = 4) -> Path:  # fmt: skip
    """One row per source class, at a readable size: ``columns`` G_orig images | the same ``(z, y)``
    through G_attack | their difference (``0.5 + (G_attack − G_orig) / 2``, grey is no change),
    the three blocks apart by a white tile, upscaled ``scale``× with nearest neighbours."""
    num_classes = int(attack.generator.num_classes)
    classes = [k for k in range(num_classes) if k != target]
    sources = torch.tensor(classes).repeat_interleave(columns)
    device = next(attack.fit(model, target).generator.parameters()).device
    z = attack.generator.sample_z(len(sources), generator=torch.Generator().manual_seed(seed), device=device)
    with eval_mode(model):
        adversarial, reference = attack.generate(sources.to(device), target=target, z=z, model=model, with_reference=True)
    difference = (0.5 + (adversarial - reference) / 2).clamp(0, 1)
    gap = torch.ones_like(reference[:1])
    tiles = []
    for row in range(len(classes)):
        block = slice(row * columns, (row + 1) * columns)
        tiles += [reference[block], gap, adversarial[block], gap, difference[block]]
    grid = make_grid(torch.cat(tiles).cpu(), nrow=3 * columns + 2, padding=2, pad_value=1.0)
    save_image(torch.nn.functional.interpolate(grid[None], scale_factor=scale, mode="nearest")[0], path)
    return Path(path)
