"""Source-class guards of the AT-GAN fit: where ``guard="auto"`` finds them, and the distilled guard.

A guard is a classifier of the generator's classes on images in [0, 1]. During the fit each guard
adds ``γ · max(CE(guard(G_attack)) − CE(guard(G_orig)), 0)`` (:func:`atgan_plugin.attack.losses.source_guard_loss`),
so the fit cannot fool the model by erasing the source class. A guard never sees the target model and
is never the realism judge.

``guard="auto"`` (our choice, the default of :class:`~atgan_plugin.attack.atgan.ATGANAttack`) is:

1. the generator's own guards, ``generator.default_guards``: a checkpoint of ``atgan train-gan`` carries
   AC-WGAN_GP's auxiliary classifier, the shipped Fashion-MNIST generator also its distilled guard and
   a guard PGD-trained on the real training images (``atgan prepare-guard --add-guard`` adds one to any
   generator file);
2. plus, unless one of those is already a distilled guard, a guard **distilled from G_orig itself**: a
   small classifier adversarially trained (FGSM from a random start) on ``G_orig(z, y) → y``, whose
   labels cost nothing. So an NVIDIA StyleGAN2-ADA pickle or a user's own adapter gets one too. It is
   trained on first use (a progress bar says so) and cached on disk under a hash of the generator's
   weights and the recipe, so the second use is a file read; a cache file that does not load is
   rebuilt, with a warning, never trusted.

Why both: the auxiliary classifier was trained on clean images only, so small changes can keep it on
the source class while the class fades for a person; the distilled guard, trained on adversarial
examples, cannot be held by small changes. A guard PGD-trained on real images holds the class as a
robust judge sees it against robust targets, where the distilled guard lets the class fade. The study:
``docs/benchmarks.md``, "Realism by default" and "A PGD-trained guard".
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from atgan_plugin.adapters.protocol import as_generator_module, check_generator
from atgan_plugin.attack.reference_pool import POOL_BYTES, RENDER_BATCH
from atgan_plugin.checkpoints import Checkpoint, CheckpointError, read_header, save_checkpoint, tensor_digest
from atgan_plugin.defenses import fgsm_random_start
from atgan_plugin.models import GUARD_KIND, build_guard, load_classifier
from atgan_plugin.utils import model_device

__all__ = [
    "AUTO",
    "DEFAULT_DISTILL",
    "DistillConfig",
    "GuardSpec",
    "as_guards",
    "cached_distilled_guard",
    "default_cache_dir",
    "describe_guard",
    "distill_guard",
    "generator_fingerprint",
    "is_distilled_guard",
    "resolve_guards",
]

AUTO = "auto"
GuardSpec = nn.Module | Sequence[nn.Module] | str | None  # what ATGANAttack(guard=...) accepts


def as_guards(guard: nn.Module | Sequence[nn.Module] | None) -> tuple[nn.Module, ...]:
    """The guards named by ``guard`` (none, one classifier, or a list or tuple of them) as a tuple;
    anything else is a ``TypeError`` that names it."""
    guards = () if guard is None else tuple(guard) if isinstance(guard, (list, tuple)) else (guard,)
    for one in guards:
        if not isinstance(one, nn.Module):
            raise TypeError(
                "guard must be 'auto', None, a torch.nn.Module classifier (images in [0, 1] -> logits) or a "
                f"sequence of them, got {type(one).__name__}"
            )
    return guards


def check_guard_spec(guard: GuardSpec) -> None:
    """Raises a ``TypeError``/``ValueError`` naming what is wrong with ``guard`` (checked at construction)."""
    if isinstance(guard, str):
        if guard != AUTO:
            raise ValueError(f"guard must be 'auto', None, a classifier or a list of classifiers, got {guard!r}")
        return
    as_guards(guard)


def describe_guard(guard: GuardSpec) -> Any:
    """``guard`` for a ``repr``: ``"auto"`` or None as they are, classifiers by their class names."""
    if isinstance(guard, str) or guard is None:
        return guard
    names = [type(g).__name__ for g in (guard if isinstance(guard, (list, tuple)) else [guard])]
    return names[0] if len(names) == 1 else names


# ------------------------------------------------------------------------------------------------
# The distilled guard.


@dataclass(frozen=True)
class DistillConfig:
    """How a guard is distilled from G_orig (our choice; ``docs/benchmarks.md``, "Realism by default").

    ``rendered`` latents ``(z, y)`` are rendered through G_orig once, in large batches (at most
    :data:`~atgan_plugin.attack.reference_pool.POOL_BYTES` of images); each step draws a batch from them and
    trains the guard on an FGSM example from a random start (Wong et al. 2020) inside the ℓ∞ ball of radius
    ``epsilon`` around it. Rendering once is what makes a slow generator's guard cheap (a StyleGAN2-ADA
    renders far slower than the guard trains). ``epsilon=None`` picks 0.1 for one-channel images and 8/255 for
    colour ones, the budgets at which MNIST-like and CIFAR-like classifiers are usually made robust.
    """

    steps: int = 1500
    batch_size: int = 128
    lr: float = 2e-3  # peak of a one-cycle schedule
    epsilon: float | None = None
    width: int = 32  # channels of the first convolution (models.guard_net)
    rendered: int = 16384  # latents rendered once and drawn from (each about 12 times at the defaults)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.width < 1 or self.rendered < 1:
            raise ValueError(
                f"steps, batch_size, width and rendered must be >= 1, got {self.steps}, {self.batch_size}, {self.width}, "
                f"{self.rendered}"
            )
        if not self.lr > 0 or (self.epsilon is not None and not self.epsilon >= 0):
            raise ValueError(f"lr must be > 0 and epsilon >= 0, got {self.lr} and {self.epsilon}")

    def epsilon_for(self, channels: int) -> float:
        if self.epsilon is not None:
            return self.epsilon
        return 0.1 if channels == 1 else 8 / 255


DEFAULT_DISTILL = DistillConfig()  # the recipe of guard="auto" (a module constant, so tests can make it small)


def generator_fingerprint(generator: nn.Module) -> str:
    """SHA-256 over what decides G_orig's images: the adapter's class and options, and every tensor of
    its state (:func:`~atgan_plugin.checkpoints.tensor_digest`). Any change to a weight changes it."""
    state = {name: tensor.detach().cpu() for name, tensor in generator.state_dict().items()}
    identity = (
        f"{type(generator).__module__}.{type(generator).__qualname__}|{generator.extra_repr()}|{tensor_digest(state)}"
    )
    return hashlib.sha256(identity.encode()).hexdigest()


@torch.enable_grad()
def distill_guard(
    generator: nn.Module,
    config: DistillConfig = DistillConfig(),
    *,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> nn.Module:
    """Trains a guard on ``G_orig(z, y) → y`` (adversarially; see :class:`DistillConfig`); eval mode.

    ``generator`` is only read: it runs on a frozen eval-mode copy on ``device`` (default: its own).
    """
    import copy

    check_generator(generator)
    device = torch.device(device) if device is not None else model_device(generator)
    g = as_generator_module(copy.deepcopy(generator).to(device).requires_grad_(False).eval())
    channels, num_classes = int(g.image_shape[0]), int(g.num_classes)
    epsilon = config.epsilon_for(channels)
    rng = torch.Generator().manual_seed(config.seed)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)  # the guard's initial weights and FGSM starts
        guard = build_guard(num_classes=num_classes, in_channels=channels, width=config.width).to(device)
        optimizer = torch.optim.Adam(guard.parameters(), lr=config.lr)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.steps)
        guard.train()
        images, labels = _render_pool(
            g, min(config.rendered, config.steps * config.batch_size), num_classes, rng, device
        )
        order = torch.empty(0, dtype=torch.long)
        bar = tqdm(range(config.steps), desc="distilling a guard from G_orig (once; cached)", disable=not progress)
        for _ in bar:
            if len(order) < config.batch_size:  # a new pass over the pool, in a new order
                order = torch.cat([order, torch.randperm(len(images), generator=rng)])
            rows, order = order[: config.batch_size].to(images.device), order[config.batch_size :]
            x, y = images[rows], labels[rows]
            x_adv = fgsm_random_start(guard, x, y, epsilon) if epsilon > 0 else x
            loss = F.cross_entropy(guard(x_adv), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]  # torch's Tensor.backward has no annotations
            optimizer.step()
            schedule.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    return guard.eval().requires_grad_(False)


@torch.no_grad()
def _render_pool(
    g: Any, size: int, num_classes: int, rng: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` images of G_orig ``(P, C, H, W)`` and their classes ``(P,)``, at most ``POOL_BYTES`` of images."""
    per_image = 4 * int(torch.Size(g.image_shape).numel())
    size = max(1, min(size, POOL_BYTES // per_image))
    labels = torch.randint(num_classes, (size,), generator=rng).to(device)
    z = g.sample_z(size, generator=rng, device=device)
    images = torch.cat([g(z[i : i + RENDER_BATCH], labels[i : i + RENDER_BATCH]) for i in range(0, size, RENDER_BATCH)])
    return images.float(), labels


def default_cache_dir() -> Path:
    """``$ATGAN_CACHE_DIR``, else ``$XDG_CACHE_HOME/atgan-plugin``, else ``~/.cache/atgan-plugin``."""
    if os.environ.get("ATGAN_CACHE_DIR"):
        return Path(os.environ["ATGAN_CACHE_DIR"])
    base = Path(os.environ["XDG_CACHE_HOME"]) if os.environ.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "atgan-plugin"


def _cache_path(fingerprint: str, config: DistillConfig, cache_dir: Path) -> Path:
    recipe = hashlib.sha256(repr(sorted(asdict(config).items())).encode()).hexdigest()[:12]
    return cache_dir / "guards" / f"{fingerprint[:32]}-{recipe}.safetensors"


def cached_distilled_guard(
    generator: nn.Module,
    config: DistillConfig = DistillConfig(),
    *,
    cache_dir: str | Path | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> nn.Module:
    """The distilled guard of ``generator``: read from the cache when there, else trained and cached.

    The cache key is :func:`generator_fingerprint` plus the recipe, so new weights (a fine-tuned or
    another generator) or another recipe get their own file. A cached file is trusted only if it
    loads as a guard classifier and records the same fingerprint; otherwise it is rebuilt with a
    warning. Files are written atomically, so a killed run leaves no half file.
    """
    fingerprint = generator_fingerprint(generator)
    path = _cache_path(fingerprint, config, Path(cache_dir) if cache_dir is not None else default_cache_dir())
    if path.exists():
        try:
            if read_header(path, expected_kind=GUARD_KIND).training.get("generator_sha256") != fingerprint:
                raise CheckpointError(f"{path} was distilled from another generator")
            guard = load_classifier(path, device if device is not None else model_device(generator))
            return guard.requires_grad_(False)
        except (CheckpointError, OSError, TypeError, ValueError) as error:
            warnings.warn(f"ignoring the cached guard {path} ({error}); distilling it again", stacklevel=2)
    guard = distill_guard(generator, config, device=device, progress=progress)
    image_shape = list(as_generator_module(generator).image_shape)
    training = {"generator_sha256": fingerprint, "recipe": asdict(config), "image_shape": image_shape}
    meta = cast("dict[str, Any]", guard.checkpoint_meta)  # set by atgan_plugin.models.build_guard
    save_checkpoint(path, Checkpoint(GUARD_KIND, dict(guard.state_dict()), dict(meta["config"]), training))
    return guard


def resolve_guards(
    guard: GuardSpec,
    generator: nn.Module,
    *,
    cache_dir: str | Path | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    distill: DistillConfig | None = None,
) -> tuple[nn.Module, ...]:
    """The guards ``guard`` names for ``generator``: ``"auto"`` (see the module docstring; a guard is
    distilled with ``distill``, default :data:`DEFAULT_DISTILL`), ``None`` (none: the paper's loss),
    or explicit classifiers."""
    if isinstance(guard, str):
        check_guard_spec(guard)
        own = as_guards(tuple(getattr(generator, "default_guards", ()) or ()))
        if any(is_distilled_guard(one) for one in own):
            return own
        recipe = distill if distill is not None else DEFAULT_DISTILL
        return (*own, cached_distilled_guard(generator, recipe, cache_dir=cache_dir, device=device, progress=progress))
    return as_guards(guard)


def is_distilled_guard(module: nn.Module) -> bool:
    """Whether ``module`` is a distilled guard (:func:`atgan_plugin.models.build_guard`, kind ``GUARD_KIND``)."""
    meta = getattr(module, "checkpoint_meta", None)
    return isinstance(meta, dict) and meta.get("kind") == GUARD_KIND
