"""Adversarial training with AT-GAN's examples: a classifier that holds against the generative attack.

    from atgan_plugin import defense
    history = defense.train(model, G, loader, epochs=5)          # trains ``model`` in place

Each step trains on the loader's batch of real images, on half as many AT-GAN examples (``atgan_batch``) labelled
with their **source** class, and on FGSM examples of the real batch from a random start (Wong et al. 2020; ε 0.1,
one step of 0.125: ``pgd_weight``, ``pgd_steps``, ``pgd_step_size``). The step's loss is a quarter on the real
batch, half on AT-GAN's examples (``atgan_weight``) and a quarter on FGSM's (our choices; ``docs/benchmarks.md``,
"Defending against AT-GAN": AT-GAN's examples alone left the model as open to a fresh fit as a normal one).

The AT-GAN examples come from a G_attack fitted against the model as it trains: a first fit once the model has
learnt something (``start_step``), then every ``refit_every`` steps a short fit warm-started from the previous
G_attack (``refit_steps``: a fraction of a first fit's cost). The fits are the realistic preset's (guards, the
feature term), so the model learns the class, not the artefacts. Each example lies at a uniform random point
of the segment from G_orig's image to G_attack's (``examples="segment"``, our choice): the point the attack's
shrink would pick lies on that segment, and the model learns the class along all of it for two generator
passes, where the shrink itself (``examples="shrink"``) costs ``search_steps + 2`` model passes more per
example.

The model, its optimizer and the loader are the caller's; nothing else is touched: the generator is copied,
and the model's train/eval mode is as it was when ``train`` returns. ``checkpoint=`` writes the training state
(model, optimizer, G_attack, the step and the history) atomically every ``checkpoint_every`` steps and at
the end, and a later call with the same file resumes from it (the interrupted epoch starts again).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sized
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from atgan_plugin.adapters.protocol import as_generator_module, check_generator
from atgan_plugin.attack.config import TransferConfig
from atgan_plugin.attack.fit import fit_attack_generators
from atgan_plugin.attack.guards import resolve_guards
from atgan_plugin.attack.shrink import shrink_while_fooled
from atgan_plugin.checkpoints import CheckpointError, load_training_state, save_training_state
from atgan_plugin.defenses import pgd
from atgan_plugin.utils import eval_mode, model_device

__all__ = ["DEFENSE_ATTACK", "DefenseConfig", "DefenseError", "train"]

# The fits made during training: the realistic preset on fresh draws (a short fit renders no pool), at a fixed
# length (a model in training resists, and a lengthened refit would cost the training its budget).
DEFENSE_ATTACK = TransferConfig.realistic(pool=0, settle=0, stretch=0)


EXAMPLE_POSITIONS = ("segment", "shrink", "end")


class DefenseError(ValueError):
    """The model, the generator, the data or a checkpoint do not fit together (the message says how)."""


@dataclass(frozen=True)
class DefenseConfig:
    """How :func:`train` mixes AT-GAN's examples in (our choices; ``docs/benchmarks.md``, "Defending against AT-GAN").

    Fields:
        atgan_weight: the share of each step's loss on AT-GAN examples (the rest on the real batch).
        atgan_batch: AT-GAN examples per real image of the batch.
        pgd_weight: the share on PGD examples of the real batch (ε ``pgd_epsilon``, ``pgd_steps`` steps of
            ``pgd_step_size`` from a uniform start; one step of 1.25 ε is FGSM-RS); 0: none.
        start_step: steps of plain training before the first fit (a fit against an untrained model is wasted).
        first_fit_steps, refit_steps, refit_every: the first fit's steps; a warm-started refit's steps, and the
            training steps between refits.
        attack: the fits' settings (``steps`` replaced by the two above).
        examples: where on the segment from G_orig's image to G_attack's each example lies: ``"segment"`` a
            uniform random point, ``"shrink"`` the attack's shrink (``attack.search_steps`` passes), ``"end"``
            G_attack's image.
        seed: seeds the fits, the latents and the PGD starts.
    """

    atgan_weight: float = 0.5
    atgan_batch: float = 0.5
    pgd_weight: float = 0.25
    pgd_epsilon: float = 0.1
    pgd_steps: int = 1
    pgd_step_size: float = 0.125
    start_step: int = 200
    first_fit_steps: int = 300
    refit_steps: int = 50
    refit_every: int = 250
    attack: TransferConfig = field(default_factory=lambda: DEFENSE_ATTACK)
    examples: str = "segment"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("atgan_weight", "pgd_weight"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.atgan_weight + self.pgd_weight > 1:
            raise ValueError(f"atgan_weight + pgd_weight must be at most 1, got {self.atgan_weight + self.pgd_weight}")
        if not (math.isfinite(self.atgan_batch) and self.atgan_batch > 0):
            raise ValueError(f"atgan_batch must be a positive number, got {self.atgan_batch}")
        if self.examples not in EXAMPLE_POSITIONS:
            raise ValueError(f"examples must be one of {', '.join(EXAMPLE_POSITIONS)}, got {self.examples!r}")
        for name in ("start_step", "first_fit_steps", "refit_steps", "refit_every", "pgd_steps"):
            if getattr(self, name) < (0 if name == "start_step" else 1):
                raise ValueError(
                    f"{name} must be {'>= 0' if name == 'start_step' else '>= 1'}, got {getattr(self, name)}"
                )


class _Attacker:
    """G_attack against the model as it trains: fitted, refitted warm, and its examples drawn."""

    def __init__(self, generator: nn.Module, guard: Any, config: DefenseConfig, device: torch.device, progress: bool):
        self.g_orig = as_generator_module(copy.deepcopy(generator).to(device).requires_grad_(False).eval())
        self.guard, self.config, self.device, self.progress = guard, config, device, progress
        self.guards: tuple[nn.Module, ...] | None = None  # resolved at the first fit (a distilled one costs minutes)
        self.g_attack: nn.Module | None = None
        self.last_fit = -1
        self.rng = torch.Generator().manual_seed(config.seed)

    def due(self, step: int) -> bool:
        if step < self.config.start_step:
            return False
        return self.g_attack is None or step - self.last_fit >= self.config.refit_every

    def refit(self, model: nn.Module, step: int) -> dict[str, float]:
        steps = self.config.first_fit_steps if self.g_attack is None else self.config.refit_steps
        settings = replace(self.config.attack, steps=steps, seed=self.config.seed + step)
        start: dict[int | None, nn.Module] | None = {None: self.g_attack} if self.g_attack is not None else None
        if self.guards is None:
            wanted = self.config.attack.gamma > 0
            self.guards = (
                resolve_guards(self.guard, self.g_orig, device=self.device, progress=self.progress) if wanted else ()
            )
        with eval_mode(model):
            fit = fit_attack_generators(
                self.g_orig, model, [None], config=settings, guard=self.guards, progress=False, start_from=start
            )[None]
        self.g_attack, self.last_fit = fit.generator, step
        return {"fit_step": step, "fit_steps": steps, "fit_success": fit.history[-1]["success"]}

    @torch.no_grad()
    def examples(self, model: nn.Module, sources: torch.Tensor) -> torch.Tensor:
        """AT-GAN's images ``(n, C, H, W)`` of ``sources``, shrunk towards G_orig's while they fool ``model``."""
        if self.g_attack is None:
            raise RuntimeError("no G_attack fitted yet")
        z = self.g_orig.sample_z(len(sources), generator=self.rng, device=self.device)
        adversarial: torch.Tensor = self.g_attack(z, sources).float()
        if self.config.examples == "end":
            return adversarial
        reference = self.g_orig(z, sources).float()
        if self.config.examples == "segment":
            t = torch.rand(len(sources), 1, 1, 1, generator=self.rng).to(self.device)
            return reference + t * (adversarial - reference)
        with eval_mode(model):
            return shrink_while_fooled(
                reference,
                adversarial,
                model,
                sources,
                None,
                bounds=(0.0, 1.0),
                precision="fp32",
                steps=self.config.attack.search_steps,
            )


def _check_inputs(model: nn.Module, generator: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """Named errors for a generator, model and batch that do not fit together (checked on the first batch)."""
    g = as_generator_module(generator)
    if tuple(x.shape[1:]) != tuple(g.image_shape):
        raise DefenseError(
            f"the generator makes images of shape {tuple(g.image_shape)} but the data holds {tuple(x.shape[1:])}; "
            "they must agree (atgan_plugin.adapters.ResizedGenerator maps a generator to another size)"
        )
    if int(y.max()) >= int(g.num_classes) or int(y.min()) < 0:
        raise DefenseError(f"the data has labels up to {int(y.max())} but the generator has {g.num_classes} classes")
    with torch.no_grad(), eval_mode(model):
        logits = model(x[:2])
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[1] != int(g.num_classes):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise DefenseError(f"the generator has {g.num_classes} classes but the model returns logits of shape {shape}")


@dataclass
class _Progress:
    """Where training stands: the global step, the epochs done, and the open epoch's sums and fits."""

    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    sums: dict[str, float] = field(default_factory=dict)
    batches: int = 0  # of the open epoch
    fits: list[dict[str, float]] = field(default_factory=list)

    def close_epoch(self) -> None:
        means = {k: v / max(self.batches, 1) for k, v in self.sums.items()}
        self.history.append({"epoch": len(self.history) + 1, "step": self.step, **means, "fits": self.fits})
        self.sums, self.batches, self.fits = {}, 0, []


def _save(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, attacker: _Attacker, at: _Progress) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "g_attack": attacker.g_attack.state_dict() if attacker.g_attack is not None else {},
        "last_fit": attacker.last_fit,
        "latent_rng": attacker.rng.get_state(),
        "progress": asdict(at),
    }
    save_training_state(path, state)


def _resume(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, attacker: _Attacker) -> _Progress:
    state = load_training_state(path)
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if state["g_attack"]:
            attacker.g_attack = copy.deepcopy(attacker.g_orig)
            attacker.g_attack.load_state_dict(state["g_attack"])
        attacker.last_fit = int(state["last_fit"])
        attacker.rng.set_state(state["latent_rng"])
        return _Progress(**state["progress"])
    except (KeyError, RuntimeError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path} is not a defense training state of this model and generator: {error}") from None


def train(
    model: nn.Module,
    generator: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    epochs: int,
    optimizer: torch.optim.Optimizer | None = None,
    config: DefenseConfig = DefenseConfig(),
    guard: Any = "auto",
    device: torch.device | str | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 500,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Trains ``model`` in place on ``loader``'s batches ``(x, y)`` (images in [0, 1], labels) mixed with AT-GAN's
    examples (see the module docstring); returns one record per epoch (losses, the fits made).

    Args:
        model: any classifier of ``generator``'s classes on its images; trained in place, its mode restored.
        generator: G_orig (a :class:`~atgan_plugin.adapters.ConditionalGenerator`); only read.
        optimizer: over ``model``'s parameters; default ``Adam(lr=1e-3)``.
        guard: the fits' guards, as ``ATGANAttack(guard=...)`` takes them (``"auto"``: the generator's own
            plus a distilled one, cached).
        device: where to train; default the model's.
        checkpoint: a file for the resumable state; it is read first when it exists.
    """
    check_generator(generator)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    device = torch.device(device) if device is not None else model_device(model)
    optimizer = optimizer if optimizer is not None else torch.optim.Adam(model.parameters(), lr=1e-3)
    attacker = _Attacker(generator, guard, config, device, progress)
    path = Path(checkpoint) if checkpoint is not None else None
    at = _resume(path, model, optimizer, attacker) if path is not None and path.exists() else _Progress()
    per_epoch = len(loader) if isinstance(loader, Sized) else None
    was_training = model.training
    try:
        for epoch in range(len(at.history), epochs):
            model.train()
            skip = at.batches  # a resumed epoch goes on with the loader's next batches
            bar = tqdm(loader, desc=f"defense epoch {epoch + 1}/{epochs}", disable=not progress, total=per_epoch)
            for index, (x, y) in enumerate(bar):
                if index < skip:
                    continue
                x, y = x.to(device), y.to(device)
                if at.step == 0:
                    _check_inputs(model, generator, x, y)
                if attacker.due(at.step):
                    at.fits.append(attacker.refit(model, at.step))
                losses = _step(model, optimizer, attacker, x, y, config, at.step)
                for k, v in losses.items():
                    at.sums[k] = at.sums.get(k, 0.0) + v
                at.step, at.batches = at.step + 1, at.batches + 1
                bar.set_postfix(loss=f"{losses['loss']:.3f}")
                if path is not None and at.step % checkpoint_every == 0:
                    _save(path, model, optimizer, attacker, at)
            at.close_epoch()
            if path is not None:
                _save(path, model, optimizer, attacker, at)
    finally:
        model.train(was_training)
    return at.history


def _step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    attacker: _Attacker,
    x: torch.Tensor,
    y: torch.Tensor,
    config: DefenseConfig,
    step: int,
) -> dict[str, float]:
    """One optimiser step on the real batch, AT-GAN's examples of its classes and (optionally) PGD's."""
    losses = {"loss_clean": F.cross_entropy(model(x), y)}
    weights = {"loss_clean": 1.0 - config.atgan_weight - config.pgd_weight}
    if attacker.g_attack is not None and config.atgan_weight > 0:
        m = max(1, round(config.atgan_batch * len(y)))
        sources = y.repeat(math.ceil(m / len(y)))[:m]
        losses["loss_atgan"] = F.cross_entropy(model(attacker.examples(model, sources)), sources)
        weights["loss_atgan"] = config.atgan_weight
    else:
        weights["loss_clean"] += config.atgan_weight  # before the first fit: the real batch only
    if config.pgd_weight > 0:
        rng = torch.Generator().manual_seed(config.seed + 1 + step)
        x_pgd = pgd(
            model,
            x,
            y,
            epsilon=config.pgd_epsilon,
            step_size=config.pgd_step_size,
            steps=config.pgd_steps,
            generator=rng,
        )
        losses["loss_pgd"], weights["loss_pgd"] = F.cross_entropy(model(x_pgd), y), config.pgd_weight
    loss = torch.stack([weights[k] * v for k, v in losses.items()]).sum()
    if not torch.isfinite(loss):
        raise FloatingPointError(f"defense training diverged at step {step} (loss {float(loss)}); lower lr")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
    optimizer.step()
    return {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in losses.items()}}


def settings_record(config: DefenseConfig) -> dict[str, Any]:
    """``config`` as plain values, for a run's record."""
    return asdict(config)
