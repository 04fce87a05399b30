"""``SongAttack``: Song et al.'s latent search, as a Foolbox attack and as an AdverTorch attack.

Paper: Song, Shu, Kushman, Ermon, "Constructing Unrestricted Adversarial Examples with Generative
Models" (NeurIPS 2018, https://arxiv.org/abs/1805.07894); the AT-GAN paper's main baseline.
Threat model: non-constrained, like AT-GAN; the generator is left as it is and, per example, a
latent ``z`` near a random ``z0`` is searched for such that ``G(z, y_s)`` fools the model::

    min_z  L_adv(f_t(G(z, y_s))) + λ1 · mean_i max((z_i − z0_i)² − z_ε², 0) + λ2 · CE(f_aux(G(z, y_s)), y_s)

paper (official code, ermongroup/generative_adversary ``main.py``; AT-GAN paper, appendix A.1): targeted
``L_adv = CE(·, t)``; untargeted, the smallest CE over the classes other than ``y_s``; plain
gradient descent on ``z`` with lr 1 and Gaussian noise of variance ``0.01 / (1 + step)^0.55`` added
to the gradient; ``z_ε = 0.1``; 200 steps (appendix Table 6); λ1 = 100 and λ2 = 0 for MNIST and
Fashion-MNIST, λ2 = 100 for CelebA (:data:`SETTINGS`). The official code averages every term over
its batch of 64 (and the hinge over the latent's coordinates too), so each example's ``z`` moves
by ``lr / 64`` times its own gradient, while the noise is added unscaled; it keeps the last
iterate and counts a success only when its auxiliary classifier still gives ``y_s``.
our choice: the per-example scale ``1 / reference_batch`` (64) is fixed, so results do not depend
on our batch size; realism is judged by the caller's oracle, not inside the search; the λ2 term
needs an auxiliary classifier of the generator's classes on images in [0, 1] (AC-WGAN_GP's),
passed as ``aux``.

Both faces, inputs, labels and latent modes are those of :class:`ATGANAttack`
(:class:`atgan_plugin.attack.generator_attack.GeneratorAttackBase`)::

    raw, clipped, success = SongAttack(generator=G)(fmodel, images, labels, epsilons=None)   # Foolbox
    adv = SongAttack(model, generator=G).perturb(x, y)                                       # AdverTorch

Nothing is fitted: the cost is paid per example (``steps`` forward and backward passes), which is
what AT-GAN's one-pass generation is compared against. The model, the generator and ``aux`` are
only read: gradients are taken with ``torch.autograd.grad`` with respect to ``z`` alone, the
model runs in eval mode and its modes are restored.

Shape:
    - z, z0: ``(N, z_dim)``; sources / targets: ``(N,)`` int64.
    - images: ``(N, C, H, W)`` in [0, 1] (``search``), or in the model's bounds (both faces).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import foolbox as fb
import torch
import torch.nn.functional as F
from foolbox.models.base import Model as FoolboxModel  # the defining module: foolbox re-exports it implicitly
from torch import nn
from tqdm.auto import tqdm

from atgan_plugin.adapters.protocol import ConditionalGenerator
from atgan_plugin.attack.attack_options import AttackOptions
from atgan_plugin.attack.generator_attack import GeneratorAttackBase, torch_module_of
from atgan_plugin.imaging import to_bounds
from atgan_plugin.utils import eval_mode

__all__ = ["SETTINGS", "SearchResult", "SongAttack", "SongConfig", "latent_search"]


@dataclass(frozen=True)
class SongConfig:
    """Hyper-parameters of the latent search (defaults: paper, MNIST / Fashion-MNIST)."""

    steps: int = 200
    lr: float = 1.0
    lambda1: float = 100.0  # weight of the latent-closeness hinge
    lambda2: float = 0.0  # weight of the auxiliary classifier's source-class loss
    z_epsilon: float = 0.1  # per-coordinate radius the hinge tolerates
    noise_variance: float = 0.01  # gradient noise variance at step 0 ...
    noise_decay: float = 0.55  # ... divided by (1 + step) ** noise_decay
    reference_batch: int = 64  # the official code's batch: each example's loss is divided by it
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.lr <= 0 or self.reference_batch < 1:
            raise ValueError(f"lr and reference_batch must be positive, got {self.lr} and {self.reference_batch}")
        for name in ("lambda1", "lambda2", "z_epsilon", "noise_variance", "noise_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


# paper: appendix Table 6.
SETTINGS: dict[str, SongConfig] = {
    "mnist": SongConfig(),
    "fashion-mnist": SongConfig(),
    "celeba": SongConfig(lambda2=100.0),
}


@dataclass
class SearchResult:
    """The searched latents ``z``, their images in [0, 1], and the fooled fraction every 10 steps."""

    z: torch.Tensor
    images: torch.Tensor
    history: list[dict[str, float]] = field(default_factory=list)


def _adversarial_ce(logits: torch.Tensor, sources: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    """Per-example ``(N,)``: CE to the target, or the smallest CE over the classes other than the source."""
    log_p = F.log_softmax(logits, dim=1)
    if targets is not None:
        return -log_p.gather(1, targets[:, None]).squeeze(1)
    others = log_p.masked_fill(F.one_hot(sources, log_p.shape[1]).bool(), -math.inf)
    return -others.amax(dim=1)


@torch.enable_grad()  # callers may sit inside torch.no_grad()
def latent_search(
    generator: nn.Module,
    classifier: Callable[[torch.Tensor], torch.Tensor],
    z0: torch.Tensor,
    sources: torch.Tensor,
    *,
    targets: torch.Tensor | None = None,
    config: SongConfig = SongConfig(),
    bounds: tuple[float, float] = (0.0, 1.0),
    aux: nn.Module | None = None,
    progress: bool = False,
    generator_rng: torch.Generator | None = None,
) -> SearchResult:
    """Song et al.'s noisy gradient descent on ``z`` from ``z0`` (see the module docstring).

    ``generator`` and ``aux`` should be frozen (no parameter requiring grad) and in eval mode; the
    classifier is called on ``to_bounds(G(z, y_s), bounds)`` and only differentiated through.
    ``generator_rng`` (CPU) draws the gradient noise; default: seeded from ``config.seed``.
    """
    if config.lambda2 > 0 and aux is None:
        raise ValueError(
            f"lambda2 = {config.lambda2} needs an auxiliary classifier (aux=...); use lambda2=0 without one"
        )
    rng = generator_rng if generator_rng is not None else torch.Generator().manual_seed(config.seed)
    z0 = z0.detach()
    z = z0.clone()
    history: list[dict[str, float]] = []
    bar = tqdm(range(config.steps), desc="Song et al. search", disable=not progress)
    for step in bar:
        z.requires_grad_(True)
        images = generator(z, sources)
        logits = classifier(to_bounds(images, bounds))
        l_adv = _adversarial_ce(logits, sources, targets)
        l_z = ((z - z0) ** 2 - config.z_epsilon**2).clamp(min=0).mean(dim=1)
        loss = l_adv + config.lambda1 * l_z
        if config.lambda2 > 0 and aux is not None:  # aux is not None whenever lambda2 > 0 (checked above)
            loss = loss + config.lambda2 * F.cross_entropy(aux(images), sources, reduction="none")
        # Sum / reference_batch: the official batch mean, with each example's gradient independent of N.
        (grad,) = torch.autograd.grad(loss.sum() / config.reference_batch, z)
        std = math.sqrt(config.noise_variance / (1 + step) ** config.noise_decay)
        noise = torch.randn(z.shape, generator=rng).to(z.device) * std
        z = (z - config.lr * (grad + noise)).detach()
        if step % 10 == 9 or step == config.steps - 1:
            predicted = logits.detach().argmax(1)
            fooled = predicted == targets if targets is not None else predicted != sources
            history.append({"step": step + 1, "loss": loss.mean().item(), "success": fooled.float().mean().item()})
            bar.set_postfix(success=f"{history[-1]['success']:.2f}")
    with torch.no_grad():
        images = generator(z, sources)
    return SearchResult(z, images, history)


class SongAttack(GeneratorAttackBase):
    """Song et al.'s latent search (see the module docstring for both faces).

    Args:
        model: the classifier for the AdverTorch face (images -> logits); leave out for Foolbox.
        generator: a :class:`~atgan_plugin.adapters.ConditionalGenerator`; never modified.
        targeted: AdverTorch's flag: whether ``y`` in ``perturb(x, y)`` are targets.
        clip_min, clip_max: AdverTorch's input bounds (Foolbox uses ``fmodel.bounds``).
        latent: ``"random"`` (``z0`` from the prior, the paper's) or ``"invert"`` (``z0`` fits the input).
        steps, lr, lambda1, lambda2, z_epsilon, noise_variance, noise_decay: :class:`SongConfig`.
        aux: auxiliary classifier for the λ2 term (images in [0, 1] -> logits); copied, never modified.
        batch_size: examples searched at once (for memory); the gradient noise is drawn per batch,
            so the exact outputs depend on it.
        invert_steps, invert_lr: latent inversion settings for ``latent="invert"``.
        device: where to search; default: the model's device.
        seed: seeds ``z0`` and the gradient noise.
        progress: show a progress bar per batch.
        distance: the Foolbox distance used for finite epsilons (default ℓ2).
    """

    _model_methods = "search()"

    def __init__(
        self,
        model: Callable[[torch.Tensor], torch.Tensor] | None = None,
        *,
        generator: nn.Module,
        targeted: bool = False,
        clip_min: float = 0.0,
        clip_max: float = 1.0,
        latent: str = "random",
        steps: int = SongConfig.steps,
        lr: float = SongConfig.lr,
        lambda1: float = SongConfig.lambda1,
        lambda2: float = SongConfig.lambda2,
        z_epsilon: float = SongConfig.z_epsilon,
        noise_variance: float = SongConfig.noise_variance,
        noise_decay: float = SongConfig.noise_decay,
        aux: nn.Module | None = None,
        batch_size: int = 500,
        invert_steps: int = AttackOptions.invert_steps,
        invert_lr: float = AttackOptions.invert_lr,
        device: str | torch.device | None = None,
        seed: int = 0,
        progress: bool = True,
        distance: fb.distances.Distance | None = None,
    ):
        super().__init__(
            model,
            generator=generator,
            targeted=targeted,
            clip_min=clip_min,
            clip_max=clip_max,
            latent=latent,
            invert_steps=invert_steps,
            invert_lr=invert_lr,
            device=device,
            seed=seed,
            progress=progress,
            distance=distance,
        )
        if aux is not None and not isinstance(aux, nn.Module):
            raise TypeError(
                f"aux must be a torch.nn.Module classifier (images in [0, 1] -> logits), got {type(aux).__name__}"
            )
        self.config = SongConfig(
            steps=steps,
            lr=lr,
            lambda1=lambda1,
            lambda2=lambda2,
            z_epsilon=z_epsilon,
            noise_variance=noise_variance,
            noise_decay=noise_decay,
            seed=seed,
        )
        if self.config.lambda2 > 0 and aux is None:
            raise ValueError(f"lambda2 = {lambda2} needs an auxiliary classifier (aux=...); use lambda2=0 without one")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.aux = aux
        self.batch_size = batch_size
        self._noise_rng = torch.Generator().manual_seed(seed + 1)
        self._aux_copies: dict[str, nn.Module] = {}

    @property
    def _generator_protocol(self) -> ConditionalGenerator:
        # The base class stores the generator as an nn.Module after check_generator; this is its typed view.
        return cast(ConditionalGenerator, self.generator)

    def _repr_fields(self) -> dict[str, Any]:
        return {
            **asdict(self.config),
            "aux": type(self.aux).__name__ if self.aux is not None else None,
            "batch_size": self.batch_size,
        }

    def search(
        self,
        sources: torch.Tensor,
        *,
        targets: torch.Tensor | None = None,
        z: torch.Tensor | None = None,
        model: Any = None,
        with_reference: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Searched images in [0, 1] for classes ``sources`` ``(N,)`` from ``z0 = z`` (default: the prior).

        With ``with_reference=True`` also returns ``G(z0, y_s)``, the image the search started from.
        """
        model = self._model_or_default(model)
        device = self._device_for(model)
        n = len(sources)
        sources = self._check_labels(torch.as_tensor(sources), "source labels", n).to(device)
        if targets is not None:
            targets = self._check_labels(torch.as_tensor(targets), "target labels", n).to(device)
        if z is None:
            z = self._generator_protocol.sample_z(n, generator=self._latent_rng, device=device)
        z = z.to(device)
        bounds: tuple[float, float] = (float(self.clip_min), float(self.clip_max))
        if isinstance(model, FoolboxModel):
            lower, upper = model.bounds  # Foolbox's (lower, upper)
            bounds = (lower, upper)
        with eval_mode(torch_module_of(model)):
            images = self._images(model, self._classifier_fn(model), z, sources, targets, bounds)
        if not with_reference:
            return images
        with torch.no_grad():
            return images, self._reference_generator(device)(z, sources)

    def _images(
        self,
        model: Any,
        classify: Callable[[torch.Tensor], torch.Tensor],
        z: torch.Tensor,
        sources: torch.Tensor,
        targets: torch.Tensor | None,
        bounds: tuple[float, float],
    ) -> torch.Tensor:
        generator = self._reference_generator(z.device)  # frozen eval-mode copy: gradients reach z only
        aux = self._aux_on(z.device)
        out = torch.empty((len(z), *self._generator_protocol.image_shape), device=z.device)
        for start in range(0, len(z), self.batch_size):
            part = slice(start, start + self.batch_size)
            result = latent_search(
                generator,
                classify,
                z[part],
                sources[part],
                targets=targets[part] if targets is not None else None,
                config=self.config,
                bounds=bounds,
                aux=aux,
                progress=self.progress,
                generator_rng=self._noise_rng,
            )
            out[part] = result.images
        return out

    def _aux_on(self, device: torch.device) -> nn.Module | None:
        if self.aux is None:
            return None
        copy_ = self._aux_copies.get(str(device))
        if copy_ is None:
            copy_ = copy.deepcopy(self.aux).to(device).requires_grad_(False).eval()
            self._aux_copies[str(device)] = copy_
        return copy_
