"""Running ``atgan reproduce``: every attack against every target checkpoint present, measured one way.

Each (attack, model) cell is one :class:`~atgan_plugin.metrics.records.AttackMetrics`, counted by
:class:`~atgan_plugin.metrics.counting.Tally`; the report is a
:class:`~atgan_plugin.paper.reproduce.report.ReproduceReport`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from atgan_plugin.adapters.protocol import ConditionalGenerator
from atgan_plugin.attack.atgan import ATGANAttack, AttackOptions
from atgan_plugin.attack.config import TransferConfig
from atgan_plugin.attack.guards import GuardSpec, as_guards, describe_guard
from atgan_plugin.data import TensorDataset
from atgan_plugin.metrics.counting import Tally
from atgan_plugin.metrics.machine import machine_description, timed
from atgan_plugin.metrics.realism import RobustFrechetDistance
from atgan_plugin.metrics.records import AttackMetrics
from atgan_plugin.paper.baselines import BASELINES, run_baseline, settings_for
from atgan_plugin.paper.evaluation import save_difference_grid, save_target_grid
from atgan_plugin.paper.reproduce.report import AblationRow, Figure, ReproduceReport, TransferFit
from atgan_plugin.paper.reproduce.settings import (
    ATTACK_NAMES,
    ATTACKS,
    RHO_L0,
    RHO_LINF,
    SLOTS,
    TRAININGS,
    TRANSFER_ARCH,
    TRANSFER_SOURCE,
    ReproduceConfig,
)
from atgan_plugin.paper.song import SongAttack
from atgan_plugin.utils import eval_mode

__all__ = ["measure", "run_reproduction"]

CPU = torch.device("cpu")


def measure(
    model: nn.Module,
    oracle: nn.Module,
    adversarial: torch.Tensor,
    reference: torch.Tensor,
    sources: torch.Tensor,
    batch_size: int = 500,
    frechet: RobustFrechetDistance | None = None,
) -> AttackMetrics:
    """Realistic success, rejection and realism of ``adversarial`` ``(N, C, H, W)`` against ``reference``
    (same shape), untargeted; with ``frechet``, also both sets' Fréchet distances to the real test images."""
    tally = Tally()
    with eval_mode(model, oracle):
        tally.add(model, oracle, adversarial, reference, sources, batch_size=batch_size, count_reference_error=True)
    if frechet is None:
        return AttackMetrics.from_tally(tally)

    def batches(images: torch.Tensor) -> list[torch.Tensor]:
        return [images[i : i + batch_size] for i in range(0, len(images), batch_size)]

    return AttackMetrics.from_tally(tally, fd=frechet(batches(adversarial)), fd_reference=frechet(batches(reference)))


@dataclass
class _Inputs:
    """What every attack of one run works on: test images and labels, and the latents of the generative attacks."""

    images: torch.Tensor  # (n, C, H, W) in [0, 1]
    labels: torch.Tensor  # (n,): true classes = source classes of the generative attacks
    z: torch.Tensor  # (n, z_dim)


class _Runner:
    """Runs and measures one attack at a time on the run's inputs; caches AT-GAN's fits."""

    def __init__(
        self,
        generator: nn.Module,
        oracle: nn.Module,
        guard: GuardSpec,
        inputs: _Inputs,
        config: ReproduceConfig,
        device: torch.device,
        progress: bool,
        frechet: RobustFrechetDistance | None = None,
        guard_cache_dir: str | Path | None = None,
    ):
        self.generator, self.oracle, self.guard, self.frechet = generator, oracle, guard, frechet
        self.guard_cache_dir = guard_cache_dir
        self.inputs, self.config, self.device, self.progress = inputs, config, device, progress
        # One attack per (model, settings, guards): its fits are cached, so the figures reuse the white-box fit.
        self._attacks: dict[tuple[Any, ...], ATGANAttack] = {}

    def chunks(self, run: Callable[[slice], torch.Tensor]) -> torch.Tensor:
        n, b = len(self.inputs.labels), self.config.batch_size
        return torch.cat([run(slice(i, i + b)) for i in range(0, n, b)])

    @torch.no_grad()
    def reference(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """G_orig(z, y) in [0, 1] on CPU: the image the generative attacks start from."""
        with eval_mode(self.generator):
            images: torch.Tensor = self.generator(z.to(self.device), y.to(self.device))
        return images.cpu()

    def references(self) -> dict[str, torch.Tensor]:
        """The reference image of every attack, for transfer measurements (no attack run)."""
        generated = self.chunks(lambda s: self.reference(self.inputs.z[s], self.inputs.labels[s]))
        return {name: (self.inputs.images if name in BASELINES else generated) for name in ATTACKS}

    def atgan_attack(
        self,
        model: nn.Module,
        atgan: TransferConfig,
        guards: tuple[nn.Module, ...] | None = None,
        search_steps: int | None = None,
    ) -> ATGANAttack:
        """The (cached) attack on ``model`` with ``atgan`` settings, ``guards`` (default: the run's) and
        ``search_steps`` (default: ``atgan``'s)."""
        guard: GuardSpec = self.guard if guards is None else guards
        if search_steps is not None:
            atgan = replace(atgan, search_steps=search_steps)
        guard_key = guard if isinstance(guard, str) or guard is None else tuple(map(id, as_guards(guard)))
        key = (id(model), atgan, guard_key)
        if key not in self._attacks:
            self._attacks[key] = ATGANAttack(
                model,
                generator=self.generator,
                config=atgan,
                guard=guard,
                device=self.device,
                seed=self.config.seed,
                progress=self.progress,
                options=AttackOptions(guard_cache_dir=self.guard_cache_dir),
            )
        return self._attacks[key]

    def _song(self, model: nn.Module) -> SongAttack:
        # Song et al.'s auxiliary classifier (λ2 > 0 only): the run's first guard given as a classifier.
        song = self.config.song
        aux = (
            None if song.lambda2 == 0 or isinstance(self.guard, str) or self.guard is None else as_guards(self.guard)[0]
        )
        settings = {k: v for k, v in asdict(song).items() if k not in ("seed", "reference_batch")}
        return SongAttack(
            model,
            generator=self.generator,
            aux=aux,
            device=self.device,
            seed=self.config.seed,
            progress=self.progress,
            batch_size=self.config.batch_size,
            **settings,
        )

    def run_attack(
        self,
        name: str,
        model: nn.Module,
        atgan: TransferConfig | None = None,
        guards: tuple[nn.Module, ...] | None = None,
        search_steps: int | None = None,
    ) -> tuple[AttackMetrics, torch.Tensor]:
        """Measures attack ``name`` against ``model`` (AT-GAN: with ``atgan`` settings and ``guards``, by
        default the run's); returns the metrics and the adversarial images."""
        x, y, z, n = self.inputs.images, self.inputs.labels, self.inputs.z, len(self.inputs.labels)
        fit_seconds = None
        if name in BASELINES:
            config = self.config

            def baseline(s: slice) -> torch.Tensor:
                images, labels = x[s].to(self.device), y[s].to(self.device)
                return run_baseline(
                    name, model, images, labels, dataset=config.dataset, toolkit=config.toolkit, seed=config.seed
                ).cpu()

            adversarial, seconds = timed(lambda: self.chunks(baseline))
            reference = x
        elif name == "song":
            song = self._song(model)

            def search() -> tuple[torch.Tensor, torch.Tensor]:
                # with_reference=True: the search returns (adversarial, G(z0, y_s)).
                return cast(tuple[torch.Tensor, torch.Tensor], song.search(y, z=z, model=model, with_reference=True))

            (adversarial, reference), seconds = timed(search)
        elif name == "atgan":
            attack = self.atgan_attack(model, atgan or self.config.atgan, guards, search_steps)
            _, fit_seconds = timed(lambda: attack.fit(model))

            def generate(s: slice) -> torch.Tensor:
                # without with_reference: the adversarial images alone.
                return cast(torch.Tensor, attack.generate(y[s], z=z[s], model=model)).cpu()

            # Time the generation alone; G_orig's references are made afterwards, untimed.
            adversarial, seconds = timed(lambda: self.chunks(generate))
            reference = self.chunks(lambda s: self.reference(z[s], y[s]))
        else:
            raise ValueError(f"unknown attack {name!r}; known: {ATTACKS}")
        adversarial, reference = adversarial.detach().to(x.device), reference.detach().to(x.device)
        metrics = measure(model, self.oracle, adversarial, reference, y, self.config.batch_size, self.frechet)
        return metrics.timed(seconds * 1000 / n, fit_seconds), adversarial


def _ablation(
    runner: _Runner, model: nn.Module, report: ReproduceReport, log: Callable[[str], None]
) -> dict[str, list[AblationRow]]:
    """Tables 8 and 9: AT-GAN against A-nor with ρ bounded differently (the white-box run's setting reused)."""
    base = runner.config.atgan
    cache = {(base.rho_l0, base.rho_linf): report.white_box[TRANSFER_SOURCE]["atgan"]}
    bounds = {"rho_l0": [(int(v), 0.5) for v in RHO_L0], "rho_linf": [(200, float(v)) for v in RHO_LINF]}
    ablation: dict[str, list[AblationRow]] = {}
    for key, settings in bounds.items():
        for l0, linf in settings:
            if (l0, linf) not in cache:
                log(f"ablation: ‖ρ‖₀ = {l0}, ‖ρ‖∞ = {linf}")
                cache[(l0, linf)], _ = runner.run_attack("atgan", model, replace(base, rho_l0=l0, rho_linf=linf))
        ablation[key] = [AblationRow(l0, linf, cache[(l0, linf)]) for l0, linf in settings]
    return ablation


def _transfer(
    runner: _Runner,
    models: dict[str, nn.Module],
    kept: dict[str, torch.Tensor],
    transfer_guards: Sequence[nn.Module],
    report: ReproduceReport,
    log: Callable[[str], None],
) -> None:
    """Table 7: A-nor's examples against Model C under each training, plus those of the transferable fit."""
    config, source = runner.config, models[TRANSFER_SOURCE]
    transferable = config.transferable()
    guards = tuple(transfer_guards) or runner.atgan_attack(source, config.atgan).prepare_guard(runner.device)
    log(
        f"{TRANSFER_SOURCE}: AT-GAN, transferable fit (κ = {transferable.kappa:g}, γ = {transferable.gamma:g}, "
        f"{len(guards)} guard{'s' * (len(guards) != 1)})"
    )
    # No shrink: examples meant to transfer need their margin on the source model.
    metrics, kept["atgan_transferable"] = runner.run_attack("atgan", source, transferable, guards, 0)
    report.transfer_fit = TransferFit(asdict(transferable), [type(g).__name__ for g in guards], metrics)
    references = runner.references()
    references["atgan_transferable"] = references["atgan"]  # the same z and source classes
    for training in TRAININGS:
        slot = f"{TRANSFER_ARCH}-{training}"
        if slot in models:
            report.transfer[slot] = {
                name: measure(
                    models[slot],
                    runner.oracle,
                    images,
                    references[name],
                    runner.inputs.labels,
                    config.batch_size,
                    runner.frechet,
                )
                for name, images in kept.items()
            }


def run_reproduction(
    models: dict[str, nn.Module],
    generator: nn.Module,
    oracle: nn.Module,
    test: TensorDataset,
    config: ReproduceConfig,
    *,
    guard: GuardSpec = "auto",
    guard_cache_dir: str | Path | None = None,
    transfer_guards: Sequence[nn.Module] = (),
    frechet: RobustFrechetDistance | None = None,
    out_dir: str | Path,
    device: torch.device = CPU,
    progress: bool = False,
    models_info: dict[str, dict[str, Any]] | None = None,
    environment: dict[str, Any] | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> ReproduceReport:
    """Runs every measurement on the ``models`` present (keys from :data:`SLOTS`) and returns the report.
    Figures are written into ``out_dir``.

    ``guard`` guards every AT-GAN fit (``ATGANAttack``'s ``guard``: ``"auto"`` by default; distilled
    guards are cached in ``guard_cache_dir``); ``transfer_guards``, when given, replace them for Table 7's
    transferable fit (its high κ erases the source class where other guards do not look). With
    ``frechet`` (on the real test images) every row also holds robust-feature Fréchet distances.

    ``models_info`` (from :func:`load_target`) and ``environment`` (the command line and such) are
    recorded as given; the machine is described here.
    """
    started, start = time.strftime("%Y-%m-%d %H:%M:%S %Z"), time.perf_counter()
    unknown = sorted(set(models) - set(SLOTS))
    if unknown:
        raise ValueError(f"unknown model slots {unknown}; slots are {SLOTS[0]} … {SLOTS[-1]}")
    if config.n < 1 or config.n > len(test):
        raise ValueError(f"n must be in [1, {len(test)}] (the test split's size), got {config.n}")
    out_dir = Path(out_dir)
    rng = torch.Generator().manual_seed(config.seed)
    z = cast(ConditionalGenerator, generator).sample_z(config.n, generator=rng, device="cpu")
    inputs = _Inputs(test.images[: config.n], test.labels[: config.n], z)
    runner = _Runner(generator, oracle, guard, inputs, config, device, progress, frechet, guard_cache_dir)
    report = ReproduceReport(
        dataset=config.dataset,
        started=started,
        config={k: v for k, v in asdict(config).items() if k not in ("atgan", "atgan_transferable", "song")},
        environment={**(environment or {}), "machine": machine_description(device)},
        settings={
            "baselines": settings_for(config.dataset).to_dict(),
            "song": asdict(config.song),
            "atgan": asdict(config.atgan),
            "guard": describe_guard(guard),
        },
        models={slot: (models_info or {}).get(slot, {}) for slot in SLOTS if slot in models},
    )

    # Table 1: every attack against every model present; keep A-nor's images for Table 7.
    kept: dict[str, torch.Tensor] = {}
    for slot in SLOTS:
        if slot not in models:
            report.missing.append(slot)
            continue
        report.white_box[slot] = {}
        for name in ATTACKS:
            log(f"{slot}: {ATTACK_NAMES[name]}")
            report.white_box[slot][name], adversarial = runner.run_attack(name, models[slot])
            if slot == TRANSFER_SOURCE:
                kept[name] = adversarial

    if kept and any(f"{TRANSFER_ARCH}-{training}" in models for training in TRAININGS):
        _transfer(runner, models, kept, transfer_guards, report, log)
    if config.ablation and TRANSFER_SOURCE in models:
        report.ablation = _ablation(runner, models[TRANSFER_SOURCE], report, log)

    # Figures 8 and 10/11 for the first model present (Model A, Nor. when there is one).
    if config.figures and models:
        slot = TRANSFER_SOURCE if TRANSFER_SOURCE in models else next(s for s in SLOTS if s in models)
        log(f"figures ({slot})")
        attack = runner.atgan_attack(models[slot], config.atgan)
        save_difference_grid(attack, models[slot], out_dir / "difference.png")
        save_target_grid(attack, models[slot], out_dir / "targets.png")
        report.figures = [
            Figure(slot, "difference.png", "G_orig / AT-GAN / difference rows (Figure 10/11)"),
            Figure(slot, "targets.png", "one column per target class (Figure 8)"),
        ]
    report.seconds = time.perf_counter() - start
    return report
