"""``ATGANAttack``: AT-GAN as a Foolbox attack and as an AdverTorch attack, in one class.

Paper: Wang et al., "AT-GAN: An Adversarial Generator Model for Non-constrained Adversarial
Examples" (arXiv:1904.07793). Threat model: non-constrained; the adversarial example is a new
image ``G_attack(z, y_s)`` of source class ``y_s``, not an Lp-bounded change of an input.

Two faces, chosen by how the object is called:

- **Foolbox 3** (``foolbox.attacks.base.MinimizationAttack``)::

      attack = ATGANAttack(generator=G)
      raw, clipped, success = attack(fmodel, images, labels, epsilons=None)

  ``labels``/``Misclassification(labels)`` give the source classes (untargeted);
  ``TargetedMisclassification(targets)`` asks for targets, with source classes taken from
  ``source_labels=`` when given, else from the model's predictions on ``images``.
  ``epsilons=None`` is the natural setting (raw == clipped). A finite ε does what it does for
  every Foolbox minimization attack: the output is projected onto the ε-ball (``distance``,
  ℓ2 by default) around ``images``. That is meaningful with ``latent="invert"``, whose outputs
  relate to the inputs; with ``latent="random"`` the projection blends two unrelated images.

- **AdverTorch** (``advertorch.attacks.Attack``, ``LabelMixin``)::

      adversary = ATGANAttack(model, generator=G, targeted=False, clip_min=0.0, clip_max=1.0)
      adv = adversary.perturb(x, y)      # or adversary(x, y)

  Untargeted: ``y`` are the source classes (the model's predictions when ``None``).
  Targeted: ``y`` are the targets (required); sources as for Foolbox.

Latent modes: ``"random"`` (the paper's semantics: the inputs only give count, shape, dtype and
device; each output is ``G_attack(z, y_s)`` for a fresh ``z``) and ``"invert"`` (find ``z`` with
``G_orig(z, y_s) ≈ x`` first, so each output is the adversarial twin of the caller's image).

Fitting ``G_attack`` is the expensive part: it happens on first use for each (model, target)
and is cached; ``fit()``, ``save_fit()`` and ``load_fit()`` make it explicit.

Shape:
    - inputs: ``(N, C, H, W)`` within the model's bounds, ``(C, H, W)`` = ``generator.image_shape``.
    - labels / targets: ``(N,)`` int64 in ``[0, generator.num_classes)``.
    - output: same shape, dtype and device as the inputs, within the bounds.
"""

from __future__ import annotations

import copy
import inspect
import weakref
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import eagerpy as ep
import foolbox as fb
import torch
from foolbox.attacks.base import MinimizationAttack, get_criterion, raise_if_kwargs
from foolbox.criteria import Misclassification, TargetedMisclassification
from torch import nn

from atgan_plugin._advertorch_compat import AdvertorchAttack, LabelMixin
from atgan_plugin.adapters.protocol import check_generator
from atgan_plugin.checkpoints import Checkpoint, load_checkpoint, save_checkpoint
from atgan_plugin.inversion import invert_latents
from atgan_plugin.transfer import FitResult, TransferConfig, fit_attack_generator, to_bounds
from atgan_plugin.utils import eval_mode, model_device

__all__ = ["ATGANAttack"]

LATENT_MODES = ("random", "invert")
_FIT_KIND = "atgan.fitted_generator"


def _torch_module_of(model: Any) -> nn.Module | None:
    """The ``nn.Module`` behind a model: itself, or the one a ``foolbox.PyTorchModel`` wraps.

    ``PyTorchModel`` keeps the module only in the closure of its forward function, so we look
    there; anything else (a plain function) has no module and no train/eval mode to manage.
    """
    if isinstance(model, nn.Module):
        return model
    forward = getattr(model, "_model", None)
    if forward is not None and callable(forward):
        try:
            module = inspect.getclosurevars(forward).nonlocals.get("model")
        except (TypeError, ValueError):
            return None
        return module if isinstance(module, nn.Module) else None
    return None


class _FitCache:
    """Fitted generators per (model, target); an entry dies with its model or when the model's
    parameters change in place (an optimiser step bumps their version counters)."""

    def __init__(self) -> None:
        self._entries: dict[tuple[int, int | None], tuple[weakref.ref[Any] | None, tuple[int, ...], FitResult]] = {}

    @staticmethod
    def _versions(model: Any) -> tuple[int, ...]:
        module = _torch_module_of(model)
        return tuple(p._version for p in module.parameters()) if module is not None else ()

    def get(self, model: Any, target: int | None) -> FitResult | None:
        entry = self._entries.get((id(model), target))
        if entry is None:
            return None
        ref, versions, fit = entry
        alive = ref is None or ref() is model
        return fit if alive and versions == self._versions(model) else None

    def put(self, model: Any, target: int | None, fit: FitResult) -> None:
        try:
            ref: weakref.ref[Any] | None = weakref.ref(model)
        except TypeError:  # e.g. a bound method: keep no reference, key on id alone
            ref = None
        self._entries[(id(model), target)] = (ref, self._versions(model), fit)

    def fits(self) -> list[FitResult]:
        return [entry[2] for entry in self._entries.values()]


class ATGANAttack(MinimizationAttack, AdvertorchAttack, LabelMixin):  # type: ignore[misc]
    """AT-GAN (see the module docstring for both faces).

    Args:
        model: the classifier for the AdverTorch face (images -> logits); leave out for Foolbox.
        generator: a :class:`~atgan_plugin.adapters.ConditionalGenerator` (G_orig); never modified.
        targeted: AdverTorch's flag: whether ``y`` in ``perturb(x, y)`` are targets.
        clip_min, clip_max: AdverTorch's input bounds (Foolbox uses ``fmodel.bounds``).
        latent: ``"random"`` (paper) or ``"invert"``; see the module docstring.
        alpha, beta: weights of L_adv and L_dist (paper, Fashion-MNIST: 2 and 1).
        kappa: confidence margin of L_adv, in log-probability.
        guard: optional classifier of the generator's classes on images in [0, 1] that must keep
            recognising the source class during the fit: AC-WGAN_GP's auxiliary classifier, never
            the target model nor your realism oracle. Copied, never modified. Our addition.
        gamma: weight of the guard's loss (0 turns the guard off).
        rho_l0, rho_linf: ℓ0 and ℓ∞ bounds of the noise ρ in L_dist (paper: 200 and 0.5).
        steps, lr, batch_size: the fit's Adam steps, learning rate and batch of (z, y_s).
        invert_steps, invert_lr: latent inversion settings for ``latent="invert"``.
        device: where to fit and generate; default: the model's device.
        seed: seeds the fit and the latents, so a run is reproducible.
        progress: show a progress bar while fitting.
        distance: the Foolbox distance used for finite epsilons (default ℓ2).
    """

    def __init__(
        self,
        model: Callable[[torch.Tensor], torch.Tensor] | None = None,
        *,
        generator: nn.Module,
        targeted: bool = False,
        clip_min: float = 0.0,
        clip_max: float = 1.0,
        latent: str = "random",
        alpha: float = TransferConfig.alpha,
        beta: float = TransferConfig.beta,
        kappa: float = TransferConfig.kappa,
        guard: nn.Module | None = None,
        gamma: float = TransferConfig.gamma,
        rho_l0: int = TransferConfig.rho_l0,
        rho_linf: float = TransferConfig.rho_linf,
        steps: int = TransferConfig.steps,
        lr: float = TransferConfig.lr,
        batch_size: int = TransferConfig.batch_size,
        invert_steps: int = 200,
        invert_lr: float = 0.05,
        device: str | torch.device | None = None,
        seed: int = 0,
        progress: bool = True,
        distance: fb.distances.Distance | None = None,
    ):
        check_generator(generator)
        if latent not in LATENT_MODES:
            raise ValueError(f"latent must be one of {LATENT_MODES}, got {latent!r}")
        if not clip_min < clip_max:
            raise ValueError(f"clip_min ({clip_min}) must be below clip_max ({clip_max})")
        AdvertorchAttack.__init__(self, model, nn.CrossEntropyLoss(reduction="sum"), clip_min, clip_max)
        self.generator = generator
        self.targeted = targeted
        self.latent = latent
        if guard is not None and not isinstance(guard, nn.Module):
            raise TypeError(f"guard must be a torch.nn.Module classifier (images in [0, 1] -> logits), got {type(guard).__name__}")
        self.config = TransferConfig(alpha=alpha, beta=beta, kappa=kappa, gamma=gamma, rho_l0=rho_l0, rho_linf=rho_linf,
                                     steps=steps, lr=lr, batch_size=batch_size, seed=seed)  # fmt: skip
        self.guard = guard
        self.invert_steps = invert_steps
        self.invert_lr = invert_lr
        self.device = torch.device(device) if device is not None else None
        self.seed = seed
        self.progress = progress
        self._distance = distance if distance is not None else fb.distances.l2
        self._latent_rng = torch.Generator().manual_seed(seed)
        self._cache = _FitCache()
        self._reference_copies: dict[str, nn.Module] = {}

    # ----------------------------------------------------------------------------------------
    # Configuration and dispatch.

    @property
    def distance(self) -> fb.distances.Distance:
        return self._distance

    def __repr__(self) -> str:
        fields = {"targeted": self.targeted, "latent": self.latent, **asdict(self.config),
                  "guard": type(self.guard).__name__ if self.guard is not None else None,
                  "clip_min": self.clip_min, "clip_max": self.clip_max, "device": self.device}  # fmt: skip
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in fields.items())})"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Foolbox call when the first argument is a ``foolbox.Model``, else AdverTorch's ``perturb``."""
        if args and isinstance(args[0], fb.models.Model):
            fmodel = args[0]
            if len(args) > 1:
                self._check_bounds(args[1], fmodel.bounds)
            # Foolbox's own success check runs the model too: keep it in eval mode throughout.
            with eval_mode(_torch_module_of(fmodel)):
                return MinimizationAttack.__call__(self, *args, **kwargs)
        return self.perturb(*args, **kwargs)

    # ----------------------------------------------------------------------------------------
    # Foolbox face.

    def run(
        self,
        model: fb.models.Model,
        inputs: Any,
        criterion: Any,
        *,
        early_stop: float | None = None,  # ignored: the output does not depend on ε
        source_labels: Any = None,
        **kwargs: Any,
    ) -> Any:
        raise_if_kwargs(kwargs)
        x, restore_type = ep.astensor_(inputs)
        criterion_ = get_criterion(criterion)
        images = x.raw
        self._check_bounds(images, model.bounds)
        if isinstance(criterion_, Misclassification):
            sources, targets = ep.astensor(criterion_.labels).raw, None
        elif isinstance(criterion_, TargetedMisclassification):
            targets = ep.astensor(criterion_.target_classes).raw
            sources = ep.astensor(source_labels).raw if source_labels is not None else None
        else:
            raise ValueError(f"unsupported criterion {type(criterion_).__name__}: use Misclassification or TargetedMisclassification")

        adv = self._attack(model, self._classifier_fn(model), images, sources, targets, tuple(model.bounds))
        return restore_type(ep.astensor(adv))

    # ----------------------------------------------------------------------------------------
    # AdverTorch face.

    def perturb(self, x: torch.Tensor, y: torch.Tensor | None = None, *, source_labels: torch.Tensor | None = None) -> torch.Tensor:
        """AdverTorch's entry point: adversarial images for ``x`` (see the class docstring for ``y``)."""
        if self.predict is None:
            raise ValueError("no model: for the AdverTorch face pass it first, ATGANAttack(model, generator=G)")
        if self.targeted and y is None:
            raise ValueError("a targeted attack needs the target labels: perturb(x, y=targets)")
        bounds = (float(self.clip_min), float(self.clip_max))
        self._check_bounds(x, bounds)
        sources, targets = (source_labels, y) if self.targeted else (y, None)
        return self._attack(self.predict, self.predict, x, sources, targets, bounds).detach()

    # ----------------------------------------------------------------------------------------
    # The one implementation behind both faces.

    def fit(self, model: Any = None, target: int | None = None) -> FitResult:
        """Fits (or returns the cached) G_attack for ``model`` (default: the AdverTorch model) and ``target``."""
        model = self._model_or_default(model)
        cached = self._cache.get(model, target)
        if cached is not None:
            return cached
        bounds = tuple(model.bounds) if isinstance(model, fb.models.Model) else (float(self.clip_min), float(self.clip_max))
        classify = self._classifier_fn(model)
        with eval_mode(_torch_module_of(model)):
            fit = fit_attack_generator(self.generator, classify, target=target, config=self.config,
                                       bounds=bounds, device=self._device_for(model), progress=self.progress,
                                       guard=self.guard)  # type: ignore[arg-type]
        self._cache.put(model, target, fit)
        return fit

    @torch.no_grad()
    def generate(
        self,
        sources: torch.Tensor,
        *,
        target: int | None = None,
        z: torch.Tensor | None = None,
        model: Any = None,
        with_reference: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """One forward pass of G_attack: images in [0, 1] of the classes ``sources`` ``(N,)``.

        With ``with_reference=True`` also returns ``G_orig`` on the same ``z`` (for realism checks).
        """
        model = self._model_or_default(model)
        fit = self.fit(model, target)
        device = next(fit.generator.parameters()).device
        sources = self._check_labels(sources, "source labels", len(sources)).to(device)
        if z is None:
            z = self.generator.sample_z(len(sources), generator=self._latent_rng, device=device)
        adversarial = fit.generator(z.to(device), sources)
        if not with_reference:
            return adversarial
        return adversarial, self._reference_generator(device)(z.to(device), sources)

    def save_fit(self, path: str | Path, *, target: int | None = None, model: Any = None) -> None:
        """Writes the fitted G_attack for (model, target) as a safetensors file (atomically)."""
        fit = self.fit(self._model_or_default(model), target)
        training = {"target": target, "config": asdict(fit.config), "history": fit.history[-1:]}
        save_checkpoint(path, Checkpoint(_FIT_KIND, dict(fit.generator.state_dict()), {}, training))

    def load_fit(self, path: str | Path, *, model: Any = None) -> FitResult:
        """Loads a G_attack saved by :meth:`save_fit` and caches it for ``model`` and its target."""
        model = self._model_or_default(model)
        checkpoint = load_checkpoint(path, expected_kind=_FIT_KIND)
        g_attack = copy.deepcopy(self.generator).requires_grad_(False).eval()
        try:
            g_attack.load_state_dict(checkpoint.tensors, strict=True)
        except RuntimeError as error:
            raise ValueError(f"{path} was fitted from a different generator than this attack's: {error}") from error
        target = checkpoint.training.get("target")
        config = replace(self.config, **checkpoint.training.get("config", {}))
        fit = FitResult(g_attack.to(self._device_for(model)), target, config, list(checkpoint.training.get("history", [])))
        self._cache.put(model, target, fit)
        return fit

    def _attack(
        self,
        model: Any,
        classify: Callable[[torch.Tensor], torch.Tensor],
        x: torch.Tensor,
        sources: Any,
        targets: Any,
        bounds: tuple[float, float],
    ) -> torch.Tensor:
        self._check_images(x, model)
        n = len(x)
        module = _torch_module_of(model)
        with eval_mode(module):
            if sources is None:  # AdverTorch's convention: avoid label leaking, use predictions
                with torch.no_grad():
                    sources = classify(x).argmax(1)
            sources = self._check_labels(torch.as_tensor(sources, device=x.device), "source labels", n)
            if targets is not None:
                targets = self._check_labels(torch.as_tensor(targets, device=x.device), "target labels", n)
            device = self._device_for(model)
            sources = sources.to(device)
            z = self._latents(x.to(device), sources, bounds)
            out = torch.empty((n, *self.generator.image_shape), device=device)
            groups = [None] if targets is None else targets.unique().tolist()
            for target in groups:
                mask = torch.ones(n, dtype=torch.bool, device=device) if target is None else (targets.to(device) == target)
                fit = self.fit(model, target)
                with torch.no_grad():
                    out[mask] = fit.generator(z[mask], sources[mask])
        return to_bounds(out, bounds).clamp(*bounds).to(device=x.device, dtype=x.dtype)

    def _latents(self, x: torch.Tensor, sources: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
        if self.latent == "random":
            return self.generator.sample_z(len(x), generator=self._latent_rng, device=x.device)  # type: ignore[operator, no-any-return]
        low, high = bounds
        images01 = (x.float() - low) / (high - low)
        return invert_latents(self._reference_generator(x.device), images01, sources, steps=self.invert_steps,
                              lr=self.invert_lr, rng=self._latent_rng)  # fmt: skip

    def _reference_generator(self, device: torch.device) -> nn.Module:
        """A frozen eval-mode copy of G_orig on ``device``: the caller's generator is never moved."""
        copy_ = self._reference_copies.get(str(device))
        if copy_ is None:
            copy_ = copy.deepcopy(self.generator).to(device).requires_grad_(False).eval()
            self._reference_copies[str(device)] = copy_
        return copy_

    # ----------------------------------------------------------------------------------------
    # Input checks: each error names the problem.

    def _model_or_default(self, model: Any) -> Any:
        model = model if model is not None else self.predict
        if model is None:
            raise ValueError("no model given: pass one to fit()/generate(), or to ATGANAttack(model, ...)")
        return model

    @staticmethod
    def _classifier_fn(model: Any) -> Callable[[torch.Tensor], torch.Tensor]:
        if isinstance(model, fb.models.Model):
            return lambda batch: model(batch)  # type: ignore[no-any-return]
        return model  # type: ignore[no-any-return]

    def _device_for(self, model: Any) -> torch.device:
        if self.device is not None:
            return self.device
        if isinstance(model, fb.models.Model) and hasattr(model, "device"):
            return torch.device(model.device)
        module = _torch_module_of(model)
        return model_device(module) if module is not None else model_device(self.generator)

    def _check_images(self, x: Any, model: Any) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"inputs must be a torch.Tensor, got {type(x).__name__}")
        expected = tuple(self.generator.image_shape)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"inputs must have shape (N, {', '.join(map(str, expected))}) to match the generator, got {tuple(x.shape)}")
        module = _torch_module_of(model)
        if module is not None and self.device is None:
            model_dev = model_device(module, default=x.device)
            if model_dev != x.device:
                raise ValueError(f"the model is on {model_dev} but the inputs are on {x.device}; move one of them")

    @staticmethod
    def _check_bounds(x: Any, bounds: tuple[float, float]) -> None:
        raw = ep.astensor(x).raw if not isinstance(x, torch.Tensor) else x
        if isinstance(raw, torch.Tensor) and raw.numel() > 0:
            low, high = bounds
            lo, hi = raw.min().item(), raw.max().item()
            if lo < low or hi > high:
                raise ValueError(f"inputs must lie within the model's bounds [{low}, {high}], found values in [{lo:.4g}, {hi:.4g}]")

    def _check_labels(self, labels: torch.Tensor, what: str, n: int) -> torch.Tensor:
        if labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise TypeError(f"{what} must be integer class indices, got dtype {labels.dtype}")
        if labels.shape != (n,):
            raise ValueError(f"{what} must have shape ({n},) to match the inputs, got {tuple(labels.shape)}")
        num_classes = int(self.generator.num_classes)
        if n and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise ValueError(f"{what} must lie in [0, {num_classes}) (the generator's classes), got {labels.min().item()}..{labels.max().item()}")
        return labels.long()
