"""How :class:`~atgan_plugin.attack.atgan.ATGANAttack` runs, and the keywords it took before presets.

What the attack computes is one :class:`~atgan_plugin.attack.config.TransferConfig` (``config=``: a preset's name
or the object); how it runs is :class:`AttackOptions` (``options=``): precision, compilation, the joint fit's
batch, the guard cache, the latent inversion's settings and the Foolbox distance for finite ε. Neither changes
with another argument.

Until release 0.3 the attack still takes its earlier flat keywords (``alpha=``, ``steps=``, ``search_steps=``,
``precision=``, …): each one sets its field of the config or the options, with a ``DeprecationWarning`` that says
the new spelling (:func:`split_keywords`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import foolbox as fb

from atgan_plugin.adapters.resized import RESIZE_MODES
from atgan_plugin.attack.config import PRESETS, TransferConfig
from atgan_plugin.attack.fit import check_joint_batch_size
from atgan_plugin.attack.precision import check_precision

__all__ = ["AttackOptions", "resolve_config", "split_keywords"]


@dataclass(frozen=True)
class AttackOptions:
    """How the attack runs (none of these changes what it computes, but ``joint_batch_size``; see below).

    Fields:
        precision: ``"fp32"`` or ``"bf16"``: the forward passes under bf16 autocast (GPUs with bf16 cores).
        compile: generate through ``torch.compile`` (GPU throughput; the first call compiles; the fit is not).
        joint_batch_size: ``(z, y_s)`` per target and step when several targets are fitted together, at most
            the config's batch (``None``: the config's batch, which gives the separate fits' results); our
            choice, 16, half of the realistic batch: ``docs/benchmarks.md``, "Ten targets in one fit".
        guard_cache_dir: where distilled guards are cached (default ``$ATGAN_CACHE_DIR`` or
            ``~/.cache/atgan-plugin``).
        invert_steps, invert_lr: the latent inversion of ``latent="invert"``.
        distance: the Foolbox distance of a finite ε (default ℓ2).
        image_size: the model's input size ``(H, W)`` when it is not the generator's; ``None``: the generator's
            until the first inputs of another size, which set it (:mod:`atgan_plugin.adapters.resized`).
        resize: how the generator's images meet the model's size: ``"crop"`` (centred crop or zero padding;
            default) or ``"resize"`` (bilinear, anti-aliased).
    """

    precision: str = "fp32"
    compile: bool = False
    joint_batch_size: int | None = 16
    guard_cache_dir: str | Path | None = None
    invert_steps: int = 200
    invert_lr: float = 0.05
    distance: fb.distances.Distance | None = None
    image_size: tuple[int, int] | None = None
    resize: str = "crop"

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        size = self.image_size
        if size is not None and (
            len(size) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in size)
        ):
            raise ValueError(f"image_size must be two integers (H, W) >= 1, got {size!r}")
        check_precision(self.precision)
        check_joint_batch_size(self.joint_batch_size)
        if not math.isfinite(self.invert_lr):
            raise ValueError(f"invert_lr must be a finite number, got {self.invert_lr}")
        steps = self.invert_steps
        if self.invert_lr <= 0 or isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(
                f"invert_steps must be an int >= 1 and invert_lr positive, got {steps} and {self.invert_lr}"
            )


_CONFIG_FIELDS = frozenset(f.name for f in fields(TransferConfig)) - {"seed"}
_OPTION_FIELDS = frozenset(f.name for f in fields(AttackOptions))


def resolve_config(config: str | TransferConfig) -> TransferConfig:
    """``config`` as a :class:`TransferConfig`: a preset's name (``"realistic"``, ``"paper"``) or the object."""
    if isinstance(config, TransferConfig):
        return config
    if isinstance(config, str) and config in PRESETS:
        return PRESETS[config]()
    raise ValueError(f"config must be a TransferConfig or one of the presets {sorted(PRESETS)}, got {config!r}")


def split_keywords(
    keywords: dict[str, Any], config: TransferConfig, options: AttackOptions, *, guard_is_none: bool
) -> tuple[TransferConfig, AttackOptions]:
    """The earlier flat keywords applied to ``config`` and ``options``, each with a ``DeprecationWarning``.

    As before presets, ``guard=None`` (or ``gamma=0``) with any of them starts from the paper's fit settings and
    keeps the shrink; an unknown keyword is a ``TypeError`` that names it.
    """
    unknown = sorted(set(keywords) - _CONFIG_FIELDS - _OPTION_FIELDS)
    if unknown:
        raise TypeError(f"ATGANAttack.__init__() got an unexpected keyword argument {unknown[0]!r}")
    for name, value in keywords.items():
        where = "config=TransferConfig.realistic" if name in _CONFIG_FIELDS else "options=AttackOptions"
        warnings.warn(
            f"ATGANAttack({name}=...) is deprecated and goes in release 0.3; write {where}({name}={value!r})",
            DeprecationWarning,
            stacklevel=3,
        )
    fit = {k: v for k, v in keywords.items() if k in _CONFIG_FIELDS and v is not None}
    if guard_is_none or fit.get("gamma") == 0:  # the earlier rule: no guard, the paper's fit settings
        config = TransferConfig.paper(search_steps=config.search_steps)
    config = replace(config, **fit)
    options = replace(options, **{k: v for k, v in keywords.items() if k in _OPTION_FIELDS})
    return config, options
