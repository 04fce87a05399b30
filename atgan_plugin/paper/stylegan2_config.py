"""The settings of a StyleGAN2-ADA training run, the networks they describe, and what a resume may change.

See :mod:`atgan_plugin.paper.stylegan2_training` for the loop; the reasons for the defaults are in
its docstring and in docs/stylegan2_training.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from atgan_plugin.checkpoints import load_training_state
from atgan_plugin.data import TensorDataset
from atgan_plugin.paper.gan_training import ResumeMismatchError

__all__ = [
    "ARCH",
    "FIXED_ON_RESUME",
    "StyleGAN2TrainingConfig",
    "check_resume",
    "network_args",
    "pad_images",
]

ARCH = "stylegan2-ada"
# What a resumed run cannot change: the networks' shapes and functions, and the seed (the state
# restores the random streams, so a new seed would be ignored).
FIXED_ON_RESUME = ("z_dim", "w_dim", "mapping_layers", "channel_base", "channel_max", "mbstd_group", "seed")


@dataclass
class StyleGAN2TrainingConfig:
    steps: int = 20000  # iterations: one G step and one D step each
    batch_size: int = 32
    lr: float = 0.0025  # before the lazy-regularisation ratio (G ×4/5, D ×16/17)
    r1_gamma: float = 0.01
    ema_kimg: float = 10.0  # G_ema's half-life in thousands of images ...
    ema_rampup: float | None = 0.05  # ... at most this fraction of the images shown so far
    augment: bool = True  # the ADA heuristic steers the pipe's p; False: no augmentation
    augment_xflip: bool = False  # x-flip too: only for data without a left-right orientation (shoes have one)
    ada_target: float = 0.6  # the sign of D's logits on reals ADA aims at ...
    ada_kimg: float = 500.0  # ... moving p by 1 over this many thousand images ...
    ada_interval: int = 4  # ... every this many steps
    z_dim: int = 128
    w_dim: int = 128
    mapping_layers: int = 2
    channel_base: int = 1024  # channels at resolution r: min(channel_base // r, channel_max): 32 at 32 px ...
    channel_max: int = 128  # ... 64 at 16, 128 at 8 and 4
    mbstd_group: int = 4
    seed: int = 0
    sample_every: int = 500
    checkpoint_every: int = 250  # steps between writes of state.pt and the generator: at most this many lost
    log_every: int = 50
    g_reg_interval: int = 4  # only scales G's Adam settings: there is no path-length term
    d_reg_interval: int = 16

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "z_dim", "w_dim", "mapping_layers", "channel_base", "channel_max")
        for name in (*positive, "mbstd_group", "sample_every", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("g_reg_interval", "d_reg_interval", "ada_interval"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {self.lr}")
        if not (math.isfinite(self.ada_kimg) and self.ada_kimg > 0):
            raise ValueError(f"ada_kimg must be a positive finite number, got {self.ada_kimg}")
        for name in ("r1_gamma", "ema_kimg"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        if self.ema_rampup is not None and not (math.isfinite(self.ema_rampup) and self.ema_rampup > 0):
            raise ValueError(f"ema_rampup must be a positive finite number or None, got {self.ema_rampup}")
        if not 0 < self.ada_target < 1:
            raise ValueError(f"ada_target must be in (0, 1), got {self.ada_target}")
        group = min(self.mbstd_group, self.batch_size)
        if self.batch_size % group:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be a multiple of the minibatch-std group ({group}): "
                f"pick a batch size divisible by {self.mbstd_group}"
            )


def network_args(dataset: TensorDataset, config: StyleGAN2TrainingConfig) -> dict[str, dict[str, Any]]:
    """G's and D's constructor arguments: the config's sizes and what the data says (classes, channels, size)."""
    c_dim, channels = int(dataset.labels.max()) + 1, int(dataset.images.shape[1])
    resolution = max(8, 2 ** math.ceil(math.log2(max(dataset.images.shape[2:]))))
    sizes = dict(channel_base=config.channel_base, channel_max=config.channel_max, num_fp16_res=0, conv_clamp=None)
    return {
        "G": dict(
            z_dim=config.z_dim,
            c_dim=c_dim,
            w_dim=config.w_dim,
            img_resolution=resolution,
            img_channels=channels,
            mapping_kwargs={"num_layers": config.mapping_layers},
            synthesis_kwargs=sizes,
        ),
        "D": dict(
            c_dim=c_dim,
            img_resolution=resolution,
            img_channels=channels,
            architecture="resnet",
            epilogue_kwargs={"mbstd_group_size": config.mbstd_group},
            **sizes,
        ),
    }


def pad_images(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Images in [0, 1] ``(N, C, H, W)`` padded with 0 (the background) to ``(N, C, R, R)``, centred, in [-1, 1]."""
    h, w = images.shape[2:]
    if h > resolution or w > resolution:
        raise ValueError(f"images of {h}x{w} do not fit in {resolution}x{resolution}")
    top, left = (resolution - h) // 2, (resolution - w) // 2
    padded = F.pad(images, [left, resolution - w - left, top, resolution - h - top], value=0.0)
    return padded * 2 - 1


def check_resume(
    out_dir: str | Path, config: StyleGAN2TrainingConfig, net_args: dict[str, dict[str, Any]]
) -> int | None:
    """The step ``out_dir``'s ``state.pt`` resumes from (None: a fresh start); reads only.

    Raises:
        ResumeMismatchError: another architecture (AC-WGAN_GP, other sizes, other data shapes) or seed,
            or more steps done than ``config.steps``.
        CheckpointError: ``state.pt`` is unreadable.
    """
    state_path = Path(out_dir) / "state.pt"
    if not state_path.exists():
        return None
    state = load_training_state(state_path)
    where = f"{out_dir} holds a run"
    if state.get("arch") != ARCH:
        raise ResumeMismatchError(
            f"{where} of {state.get('arch', 'acwgan-gp')!r}, not {ARCH!r}; use the same --arch, or another output folder"
        )
    recorded_config = state.get("config")
    recorded: dict[str, Any] = recorded_config if isinstance(recorded_config, dict) else {}
    changed = [
        f"{name} {recorded[name]} (now {getattr(config, name)})"
        for name in FIXED_ON_RESUME
        if name in recorded and recorded[name] != getattr(config, name)
    ]
    recorded_args = state.get("net_args")
    if not changed and recorded_args != net_args:  # the data's classes, channels or size
        old_g = recorded_args.get("G", {}) if isinstance(recorded_args, dict) else {}
        differ = [f"{k} {old_g.get(k)} (now {v})" for k, v in net_args["G"].items() if old_g.get(k) != v]
        changed.append(", ".join(differ) or "other discriminator arguments")
    if changed:
        raise ResumeMismatchError(
            f"{where} trained with {', '.join(changed)}; it cannot be resumed with other values: "
            "use the same ones, or another output folder"
        )
    step = int(state.get("step", 0))
    if step > config.steps:
        raise ResumeMismatchError(
            f"{where} already trained for {step} steps, more than the {config.steps} asked for; pass --steps {step} or more"
        )
    return step
