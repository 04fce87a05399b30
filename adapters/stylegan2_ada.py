"""Adapter for StyleGAN2-ADA (our clean-room network in ``atgan_plugin.vendored.stylegan2_ada``).

Reads NVIDIA's PyTorch snapshot and release pickles (``network-snapshot-*.pkl``, ``cifar10.pkl``)
with the safe whitelist reader, and our own safetensors checkpoints (kind
``"stylegan2_ada.generator"``). Both formats are registered, so ``load_generator(path)`` picks
the right one by looking at the file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from atgan_plugin.adapters.protocol import SharedGuards
from atgan_plugin.adapters.registry import GeneratorFormat, register_generator_format
from atgan_plugin.checkpoints import (
    Architecture,
    Checkpoint,
    CheckpointError,
    load_module,
    read_checkpoint_kind,
    save_checkpoint,
)
from atgan_plugin.limits import Fields, Int, OneOf, Optional, Real
from atgan_plugin.models import CLASSIFIER_KINDS, guard_parts, guards_from_parts
from atgan_plugin.vendored.stylegan2_ada.networks import GENERATOR_KWARGS_SCHEMA, NOISE_MODES, PRECISIONS, Generator
from atgan_plugin.vendored.stylegan2_ada.snapshot import load_generator_pickle, looks_like_pickle

__all__ = ["FINE_TUNE_MODES", "TRUNCATION_CENTERS", "StyleGAN2ADAGenerator"]

CHECKPOINT_KIND = "stylegan2_ada.generator"
FINE_TUNE_MODES = ("synthesis", "all")
TRUNCATION_CENTERS = ("class", "global")
# Bounds on our checkpoint's config: the network's constructor arguments and the adapter's options.
CONFIG_SCHEMA = Fields(
    {
        "network": GENERATOR_KWARGS_SCHEMA,
        "truncation_psi": Real(-100, 100),
        "truncation_cutoff": Optional(Int(0, 1024)),
        "truncation_center": OneOf(TRUNCATION_CENTERS),
        "noise_mode": OneOf(NOISE_MODES),
        "fine_tune": OneOf(FINE_TUNE_MODES),
        "precision": OneOf(PRECISIONS),
        "class_center_samples": Int(1, 1 << 20),
    },
    required=frozenset({"network"}),
)


class StyleGAN2ADAGenerator(nn.Module):
    """A class-conditional StyleGAN2-ADA generator as a :class:`ConditionalGenerator`.

    Paper: Karras et al., "Training Generative Adversarial Networks with Limited Data"
    (NeurIPS 2020, arXiv:2006.06676); AT-GAN uses its conditional CIFAR-10 model (appendix D.5).

    ``G(z, y) = clamp((synthesis(truncate(mapping(z, onehot(y)))) + 1) / 2, 0, 1)``.

    Args:
        network: our :class:`~atgan_plugin.vendored.stylegan2_ada.Generator`; must be conditional.
        truncation_psi: ψ; 1 (default) is no truncation, 0 gives the centre's image.
        truncation_cutoff: truncate only the first ``cutoff`` ws (None: all).
        truncation_center: ``"class"`` (default) or ``"global"``. Our choice: truncate towards
            the mean w *of the source class* (estimated once from ``class_center_samples``
            latents per class with a fixed seed, kept as the ``class_w_avg`` buffer), so that
            ψ = 0 gives the class's mean image; ``"global"`` uses the network's single,
            class-agnostic ``w_avg`` as NVIDIA's code does.
        noise_mode: ``"const"`` (default; deterministic, ``G(z, y)`` is a function), ``"random"``
            (fresh per-pixel noise at every call) or ``"none"``.
        fine_tune: what the AT-GAN transfer updates. Our choice: ``"synthesis"`` (default), the
            synthesis network only, with the mapping network (class embedding and MLP) frozen:
            the class conditioning and the W distribution stay those of G_orig, which keeps the
            source class of each image, and the mapping's 0.01 learning-rate multiplier (raw
            weights ~100×) makes Adam barely move it anyway. ``"all"`` updates both;
            ``benchmarks/stylegan2_finetune.py`` compares the two.
        precision: ``"auto"`` (default: fp16 autocast on CUDA for the blocks the original runs in
            fp16, float32 on CPU), ``"fp32"``, ``"fp16"`` or ``"bf16"`` (those blocks in that
            dtype on any device).
        class_center_samples: latents per class for the ``class_w_avg`` estimate.
        default_guards: the classifiers ``ATGANAttack(guard="auto")`` keeps the source class with;
            NVIDIA's pickles carry none (a guard is then distilled), our safetensors may carry some.

    Shape:
        - z: ``(N, z_dim)`` standard normal; y: ``(N,)`` int64 in ``[0, num_classes)``.
        - output: ``(N, img_channels, R, R)`` float32 in [0, 1].

    Example::

        G = StyleGAN2ADAGenerator.from_pickle("cifar10.pkl")      # or load_generator("cifar10.pkl")
        adv = ATGANAttack(model, generator=G, alpha=3, beta=2).perturb(x, y)
    """

    class_w_avg: torch.Tensor  # buffer: the mean w of each class, (num_classes, w_dim)

    def __init__(
        self,
        network: Generator,
        *,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        truncation_center: str = "class",
        noise_mode: str = "const",
        fine_tune: str = "synthesis",
        precision: str = "auto",
        class_center_samples: int = 256,
        default_guards: Sequence[nn.Module] = (),
        _class_w_avg: torch.Tensor | None = None,
    ):
        super().__init__()
        if not isinstance(network, Generator):
            raise TypeError(f"network must be a stylegan2_ada Generator, got {type(network).__name__}")
        if network.c_dim == 0:
            raise CheckpointError(
                "this StyleGAN2-ADA generator is unconditional (c_dim = 0); AT-GAN needs a class-conditional one"
            )
        for name, value, allowed in (
            ("noise_mode", noise_mode, NOISE_MODES),
            ("fine_tune", fine_tune, FINE_TUNE_MODES),
            ("precision", precision, PRECISIONS),
            ("truncation_center", truncation_center, TRUNCATION_CENTERS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if truncation_center == "global" and not hasattr(network.mapping, "w_avg"):
            raise ValueError("truncation_center='global' needs the network's w_avg, which it does not have")
        if class_center_samples < 1:
            raise ValueError(f"class_center_samples must be >= 1, got {class_center_samples}")
        self.network = network
        self.z_dim = network.z_dim
        self.num_classes = network.c_dim
        self.image_shape = (network.img_channels, network.img_resolution, network.img_resolution)
        self.truncation_psi = float(truncation_psi)
        self.truncation_cutoff = truncation_cutoff
        self.truncation_center = truncation_center
        self.noise_mode = noise_mode
        self.fine_tune = fine_tune
        self.precision = precision
        self.class_center_samples = class_center_samples
        if _class_w_avg is None:
            _class_w_avg = self._estimate_class_centers(class_center_samples)
        self.register_buffer("class_w_avg", _class_w_avg.detach().clone())  # (num_classes, w_dim)
        self.default_guards = SharedGuards(default_guards)

    # --------------------------------------------------------------------------------------------
    # The ConditionalGenerator protocol.

    def sample_z(
        self, n: int, *, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> torch.Tensor:
        # Drawn on CPU so that a seed gives the same latents on every device.
        z = torch.randn(n, self.z_dim, generator=generator)
        return z.to(device if device is not None else self.class_w_avg.device)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ws = self.ws(z, y)
        img: torch.Tensor = self.network.synthesis(ws, noise_mode=self.noise_mode, precision=self.precision)
        return ((img.float() + 1) / 2).clamp(0, 1)  # [-1, 1] -> [0, 1]

    def attack_parameters(self) -> Iterator[nn.Parameter]:
        if self.fine_tune == "all":
            return self.network.parameters()
        return self.network.synthesis.parameters()

    # --------------------------------------------------------------------------------------------
    # StyleGAN specifics.

    def ws(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Truncated ws ``(N, num_ws, w_dim)`` for latents ``z`` and classes ``y``."""
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape (N, {self.z_dim}), got {tuple(z.shape)}")
        if y.ndim != 1 or y.shape[0] != z.shape[0]:
            raise ValueError(f"y must have shape ({z.shape[0]},) to match z {tuple(z.shape)}, got {tuple(y.shape)}")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise ValueError(f"class labels must lie in [0, {self.num_classes}), got [{int(y.min())}, {int(y.max())}]")
        c = F.one_hot(y.long(), self.num_classes).float()
        ws: torch.Tensor = self.network.mapping(z, c)  # untruncated: (N, num_ws, w_dim)
        if self.truncation_psi == 1:
            return ws
        if self.truncation_center == "class":
            center = self.class_w_avg[y][:, None, :]
        else:
            center = self.network.mapping.w_avg[None, None, :]
        cutoff = ws.shape[1] if self.truncation_cutoff is None else self.truncation_cutoff
        head = center.lerp(ws[:, :cutoff], self.truncation_psi)
        return torch.cat([head, ws[:, cutoff:]], dim=1)

    @torch.no_grad()
    def _estimate_class_centers(self, samples: int) -> torch.Tensor:
        """Mean mapping output per class over ``samples`` fixed-seed latents: ``(num_classes, w_dim)``."""
        device = next(self.network.parameters()).device
        z = torch.randn(samples, self.z_dim, generator=torch.Generator().manual_seed(0)).to(device)
        centers = []
        for k in range(self.num_classes):
            c = F.one_hot(torch.full((samples,), k, device=device), self.num_classes).float()
            centers.append(self.network.mapping(z, c)[:, 0].mean(0))
        return torch.stack(centers)

    def options(self) -> dict[str, Any]:
        return {
            "truncation_psi": self.truncation_psi,
            "truncation_cutoff": self.truncation_cutoff,
            "truncation_center": self.truncation_center,
            "noise_mode": self.noise_mode,
            "fine_tune": self.fine_tune,
            "precision": self.precision,
            "class_center_samples": self.class_center_samples,
        }

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.options().items())

    # --------------------------------------------------------------------------------------------
    # Files.

    @classmethod
    def from_pickle(cls, path: str | Path, *, which: str = "G_ema", **options: Any) -> StyleGAN2ADAGenerator:
        """Reads NVIDIA's snapshot/release pickle safely (nothing in it is executed); ``which``: "G_ema" or "G"."""
        network = load_generator_pickle(path, which=which, require_conditional=True)
        return cls(network, **options).eval()

    @classmethod
    def from_config(cls, network: dict[str, Any], **options: Any) -> StyleGAN2ADAGenerator:
        """A freshly initialised adapter from ``network`` (Generator constructor arguments) and options.

        ``class_w_avg`` starts at zero: meant to be overwritten by a checkpoint's state.
        """
        generator = Generator(**network)
        centers = torch.zeros(generator.c_dim, generator.w_dim)
        return cls(generator, _class_w_avg=centers, **options)

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> StyleGAN2ADAGenerator:
        """Our safetensors checkpoint; its config and tensor shapes are checked before anything is allocated."""
        adapter, checkpoint = load_module(
            path, {CHECKPOINT_KIND: Architecture(cls.from_config, CONFIG_SCHEMA)}, CLASSIFIER_KINDS
        )
        assert isinstance(adapter, StyleGAN2ADAGenerator)
        adapter.default_guards = SharedGuards(guards_from_parts(checkpoint, path))
        return adapter.requires_grad_(False).eval()

    def save(self, path: str | Path, training: dict[str, object] | None = None, *, half: bool = False) -> None:
        """Our safetensors checkpoint: weights, constructor arguments and options, training facts, default guards."""
        config = {"network": self.network.init_kwargs, **self.options()}
        checkpoint = Checkpoint(
            CHECKPOINT_KIND, dict(self.state_dict()), config, dict(training or {}), guard_parts(self.default_guards)
        )
        save_checkpoint(path, checkpoint, half=half)


register_generator_format(
    GeneratorFormat(
        name="stylegan2_ada (safetensors)",
        accepts=lambda path: read_checkpoint_kind(path) == CHECKPOINT_KIND,
        load=StyleGAN2ADAGenerator.from_checkpoint,
    )
)
register_generator_format(
    GeneratorFormat(
        name="stylegan2_ada (NVIDIA pickle)",
        accepts=looks_like_pickle,
        load=StyleGAN2ADAGenerator.from_pickle,
    )
)
