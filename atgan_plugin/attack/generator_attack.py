"""``GeneratorAttackBase``: the Foolbox and AdverTorch faces shared by every attack on a conditional generator.

An attack on a :class:`~atgan_plugin.adapters.ConditionalGenerator` (AT-GAN's transfer, Song et
al.'s latent search) makes new images ``G(z, y_s)`` of source classes ``y_s``; it does not perturb
its inputs. Both faces, the input checks, the source labels, the latents and the eval-mode guard
are the same for all of them and live here; a subclass writes only :meth:`_images`, which turns
latents and source classes (and optional targets) into images in [0, 1].

- **Foolbox 3** (``MinimizationAttack``): ``attack(fmodel, images, criterion, epsilons=None)``;
  ``Misclassification(labels)`` gives the source classes, ``TargetedMisclassification(targets)``
  the targets (sources from ``source_labels=`` or the model's predictions).
- **AdverTorch** (``Attack``, ``LabelMixin``): ``attack.perturb(x, y)``; ``y`` are the source
  classes (untargeted, the model's predictions when ``None``) or the targets (``targeted=True``).

Latent modes: ``"random"`` (fresh ``z`` per output; the inputs give only count, shape, dtype and
device) and ``"invert"`` (``z`` with ``G_orig(z, y_s) ≈ x``, found first).

Shape:
    - inputs: ``(N, C, H, W)`` within the model's bounds, ``(C, H, W)`` = ``generator.image_shape``.
    - labels / targets: ``(N,)`` int64 in ``[0, generator.num_classes)``.
    - output: same shape, dtype and device as the inputs, within the bounds.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from numbers import Integral
from typing import Any

import foolbox as fb
import torch
from eagerpy.astensor import astensor, astensor_
from foolbox.attacks.base import MinimizationAttack, get_criterion, raise_if_kwargs
from foolbox.criteria import Misclassification, TargetedMisclassification
from foolbox.models.base import Model as FoolboxModel
from torch import nn

from atgan_plugin.adapters.protocol import as_generator_module, check_generator
from atgan_plugin.attack._advertorch_compat import AdvertorchAttack, LabelMixin
from atgan_plugin.attack.attacked_model import CheckedClassifier, InputsInModelDtype, parameter_dtype, torch_module_of
from atgan_plugin.attack.inversion import invert_latents
from atgan_plugin.imaging import to_bounds
from atgan_plugin.utils import check_device, eval_mode, model_device

__all__ = ["LATENT_MODES", "GeneratorAttackBase", "torch_module_of"]

LATENT_MODES = ("random", "invert")


class GeneratorAttackBase(MinimizationAttack, AdvertorchAttack, LabelMixin):  # type: ignore[misc]  # untyped bases
    """Both faces of an attack on a conditional generator (see the module docstring).

    Subclasses call ``super().__init__`` with the common arguments and implement :meth:`_images`
    (and :meth:`_repr_fields` for their hyper-parameters).
    """

    _model_methods = "the method"  # named in the "no model given" error

    def __init__(
        self,
        model: Callable[[torch.Tensor], torch.Tensor] | None,
        *,
        generator: nn.Module,
        targeted: bool,
        clip_min: float,
        clip_max: float,
        latent: str,
        invert_steps: int,
        invert_lr: float,
        device: str | torch.device | None,
        seed: int,
        progress: bool,
        distance: fb.distances.Distance | None,
    ):
        check_generator(generator)
        if latent not in LATENT_MODES:
            raise ValueError(f"latent must be one of {LATENT_MODES}, got {latent!r}")
        for name, value in (("clip_min", clip_min), ("clip_max", clip_max), ("invert_lr", invert_lr)):
            if not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value}")
        if not clip_min < clip_max:
            raise ValueError(f"clip_min ({clip_min}) must be below clip_max ({clip_max})")
        if invert_lr <= 0 or isinstance(invert_steps, bool) or not isinstance(invert_steps, int) or invert_steps < 1:
            raise ValueError(
                f"invert_steps must be an int >= 1 and invert_lr positive, got {invert_steps} and {invert_lr}"
            )
        AdvertorchAttack.__init__(self, model, nn.CrossEntropyLoss(reduction="sum"), clip_min, clip_max)
        self.generator = as_generator_module(generator)
        self.targeted = targeted
        self.latent = latent
        self.invert_steps = invert_steps
        self.invert_lr = invert_lr
        self.device = check_device(device) if device is not None else None  # an impossible device fails here
        self.seed = seed
        self.progress = progress
        self._distance = distance if distance is not None else fb.distances.l2
        self._latent_rng = torch.Generator().manual_seed(seed)
        self._reference_copies: dict[str, nn.Module] = {}

    # ----------------------------------------------------------------------------------------
    # What a subclass provides.

    def _images(
        self,
        model: Any,
        classify: Callable[[torch.Tensor], torch.Tensor],
        z: torch.Tensor,
        sources: torch.Tensor,
        targets: torch.Tensor | None,
        bounds: tuple[float, float],
    ) -> torch.Tensor:
        """Adversarial images in [0, 1] ``(N, C, H, W)`` for latents ``z`` ``(N, z_dim)`` and classes
        ``sources`` (and ``targets``) ``(N,)``, all on the attack's device; the model is in eval mode."""
        raise NotImplementedError

    def _repr_fields(self) -> dict[str, Any]:
        return {}

    # ----------------------------------------------------------------------------------------
    # Configuration and dispatch.

    @property
    def distance(self) -> fb.distances.Distance:
        return self._distance

    def __repr__(self) -> str:
        fields = {
            "targeted": self.targeted,
            "latent": self.latent,
            **self._repr_fields(),
            "clip_min": self.clip_min,
            "clip_max": self.clip_max,
            "device": self.device,
        }
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in fields.items())})"

    # Foolbox marks __call__ final; ours only picks the face, then calls Foolbox's (or perturb).
    def __call__(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
        """Foolbox call when the first argument is a ``foolbox.Model``, else AdverTorch's ``perturb``."""
        if args and isinstance(args[0], FoolboxModel):
            fmodel = args[0]
            if len(args) > 1:
                self._check_values(args[1], fmodel.bounds)
                if len(astensor(args[1]).raw) == 0:
                    raise ValueError(
                        "inputs hold no images (a batch of 0): Foolbox's attack call cannot judge an "
                        "empty batch; skip it"
                    )
                dtype = parameter_dtype(torch_module_of(fmodel))
                if dtype is not None and astensor(args[1]).raw.dtype != dtype:
                    args = (InputsInModelDtype(fmodel, dtype), *args[1:])
            # Foolbox's own success check runs the model too: keep it in eval mode throughout.
            with eval_mode(torch_module_of(fmodel)):
                return MinimizationAttack.__call__(self, *args, **kwargs)
        return self.perturb(*args, **kwargs)

    # ----------------------------------------------------------------------------------------
    # Foolbox face.

    def run(
        self,
        model: FoolboxModel,
        inputs: Any,
        criterion: Any,
        *,
        early_stop: float | None = None,  # ignored: the output does not depend on ε
        source_labels: Any = None,
        **kwargs: Any,
    ) -> Any:
        raise_if_kwargs(kwargs)
        if isinstance(model, InputsInModelDtype):  # our __call__'s wrapper: the fit wants the user's model
            model = model.model
        x, restore_type = astensor_(inputs)
        criterion_ = get_criterion(criterion)
        images = x.raw
        self._check_values(images, model.bounds)
        if isinstance(criterion_, Misclassification):
            if source_labels is not None:
                raise ValueError(
                    "source_labels= is for targeted calls (TargetedMisclassification); untargeted, "
                    "the labels are the source classes"
                )
            sources, targets = astensor(criterion_.labels).raw, None
        elif isinstance(criterion_, TargetedMisclassification):
            targets = astensor(criterion_.target_classes).raw
            sources = astensor(source_labels).raw if source_labels is not None else None
        else:
            raise ValueError(
                f"unsupported criterion {type(criterion_).__name__}: use Misclassification or TargetedMisclassification"
            )

        bounds = (model.bounds.lower, model.bounds.upper)
        adv = self._attack(model, self._classifier_fn(model), images, sources, targets, bounds)
        return restore_type(astensor(adv))

    # ----------------------------------------------------------------------------------------
    # AdverTorch face.

    def perturb(
        self, x: torch.Tensor, y: torch.Tensor | None = None, *, source_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """AdverTorch's entry point: adversarial images for ``x`` (see the module docstring for ``y``)."""
        if self.predict is None:
            raise ValueError(
                f"no model: for the AdverTorch face pass it first, {type(self).__name__}(model, generator=G)"
            )
        if self.targeted and y is None:
            raise ValueError("a targeted attack needs the target labels: perturb(x, y=targets)")
        if not self.targeted and source_labels is not None:
            raise ValueError(
                "source_labels= is for a targeted attack (targeted=True); untargeted, y are the source classes"
            )
        bounds = (float(self.clip_min), float(self.clip_max))
        self._check_values(x, bounds)
        sources, targets = (source_labels, y) if self.targeted else (y, None)
        return self._attack(self.predict, self._classifier_fn(self.predict), x, sources, targets, bounds).detach()

    # ----------------------------------------------------------------------------------------
    # The one path behind both faces.

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
        with eval_mode(torch_module_of(model)):
            if sources is None:  # AdverTorch's convention: avoid label leaking, use predictions
                sources = self._predicted_classes(model, classify, x)
            sources = self._check_labels(torch.as_tensor(sources, device=x.device), "source labels", n)
            if targets is not None:
                targets = self._check_labels(torch.as_tensor(targets, device=x.device), "target labels", n)
            device = self._device_for(model)
            sources = sources.to(device)
            targets = targets.to(device) if targets is not None else None
            z = self._latents(x.to(device), sources, bounds)
            out = self._images(model, classify, z, sources, targets, bounds)
        return to_bounds(out, bounds).clamp(*bounds).to(device=x.device, dtype=x.dtype)

    def _latents(self, x: torch.Tensor, sources: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
        if self.latent == "random":
            return self.generator.sample_z(len(x), generator=self._latent_rng, device=x.device)
        low, high = bounds
        images01 = (x.float() - low) / (high - low)
        return invert_latents(
            self._reference_generator(x.device),
            images01,
            sources,
            steps=self.invert_steps,
            lr=self.invert_lr,
            rng=self._latent_rng,
        )

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
            raise ValueError(
                f"no model given: pass one to {self._model_methods}, or to {type(self).__name__}(model, ...)"
            )
        return model

    @staticmethod
    def _classifier_fn(model: Any) -> Callable[[torch.Tensor], torch.Tensor]:
        """``model`` as images -> logits, fed in its own dtype, its output checked (:class:`CheckedClassifier`)."""
        return CheckedClassifier.of(model)

    def _device_for(self, model: Any) -> torch.device:
        if self.device is not None:
            return self.device
        if isinstance(model, FoolboxModel) and hasattr(model, "device"):
            return torch.device(model.device)
        module = torch_module_of(model)
        return model_device(module) if module is not None else model_device(self.generator)

    def _check_images(self, x: Any, model: Any) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"inputs must be a torch.Tensor, got {type(x).__name__}")
        expected = tuple(self.generator.image_shape)
        if x.ndim == 4 and x.shape[1] == expected[0] and tuple(x.shape[2:]) != expected[1:]:
            self._meet_input_size((int(x.shape[2]), int(x.shape[3])))
            expected = tuple(self.generator.image_shape)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"inputs must have shape (N, {', '.join(map(str, expected))}) to match the generator, "
                f"got {tuple(x.shape)}"
            )
        module = torch_module_of(model)
        if module is not None and self.device is None:
            model_dev = model_device(module, default=x.device)
            if model_dev != x.device:
                raise ValueError(f"the model is on {model_dev} but the inputs are on {x.device}; move one of them")

    def _meet_input_size(self, size: tuple[int, int]) -> None:
        """Inputs of another size than the generator's images: an attack that maps them (see
        :meth:`atgan_plugin.attack.atgan.ATGANAttack._meet_input_size`) does; this base refuses them below."""

    @staticmethod
    def _check_values(x: Any, bounds: tuple[float, float]) -> None:
        """Floating-point images, all finite, within ``bounds``."""
        raw = astensor(x).raw if not isinstance(x, torch.Tensor) else x
        if not isinstance(raw, torch.Tensor):
            return  # named by _check_images
        if not raw.dtype.is_floating_point:
            raise TypeError(
                f"inputs must be floating-point images, got dtype {raw.dtype} (e.g. x.float() / 255 with bounds (0, 1))"
            )
        if raw.numel() > 0:
            if not bool(torch.isfinite(raw).all()):
                raise ValueError(f"inputs contain {int((~torch.isfinite(raw)).sum())} NaN or infinite values")
            low, high = bounds
            lo, hi = raw.min().item(), raw.max().item()
            if lo < low or hi > high:
                raise ValueError(
                    f"inputs must lie within the model's bounds [{low}, {high}], found values in [{lo:.4g}, {hi:.4g}]"
                )

    def _predicted_classes(
        self, model: Any, classify: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
    ) -> torch.Tensor:
        """The model's classes ``(N,)`` for ``x``, fed in the model's own dtype."""
        dtype = parameter_dtype(torch_module_of(model))
        try:
            with torch.no_grad():
                logits = classify(x.to(dtype) if dtype is not None else x)
        except RuntimeError as error:
            sizes = ", ".join(map(str, x.shape[1:]))
            raise ValueError(
                f"the model fails on inputs of shape (N, {sizes}): {error} (a model of another input size: "
                "options=AttackOptions(image_size=(H, W)))"
            ) from error
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != len(x):
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ValueError(
                f"the model must return logits of shape (N, classes) = ({len(x)}, "
                f"{self.generator.num_classes}), got {shape}"
            )
        return logits.argmax(1)

    @staticmethod
    def _check_target(target: Any) -> int | None:
        """A target class as an int (from an int, a NumPy integer or a 0-d integer tensor), or None."""
        if (
            isinstance(target, torch.Tensor)
            and target.ndim == 0
            and not target.dtype.is_floating_point
            and target.dtype != torch.bool
        ):
            target = target.item()
        if target is None or (isinstance(target, Integral) and not isinstance(target, bool)):
            return None if target is None else int(target)
        raise TypeError(f"target must be an integer class index or None, got {target!r} ({type(target).__name__})")

    def _check_labels(self, labels: torch.Tensor, what: str, n: int) -> torch.Tensor:
        if labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise TypeError(f"{what} must be integer class indices, got dtype {labels.dtype}")
        if labels.shape != (n,):
            raise ValueError(f"{what} must have shape ({n},) to match the inputs, got {tuple(labels.shape)}")
        num_classes = int(self.generator.num_classes)
        if n and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise ValueError(
                f"{what} must lie in [0, {num_classes}) (the generator's classes), "
                f"got {labels.min().item()}..{labels.max().item()}"
            )
        return labels.long()
