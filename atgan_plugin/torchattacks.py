"""``ATGAN``: AT-GAN as a torchattacks attack (torchattacks 3.5).

Paper: Wang et al., "AT-GAN: An Adversarial Generator Model for Non-constrained Adversarial
Examples" (arXiv:1904.07793). Distance: non-constrained; each output is a new image
``G_attack(z, y_s)`` of source class ``y_s``, not an Lp-bounded change of the input.

A real ``torchattacks.Attack``: ``atk(images, labels)``, the targeted modes, ``set_normalization_used``,
its device, ``MultiAttack`` and ``atk.save(loader)`` work as for any torchattacks attack. The work is
done by :class:`atgan_plugin.attack.atgan.ATGANAttack` (the same fit and cache as the Foolbox and AdverTorch
faces; see :mod:`atgan_plugin.attack._delegated_face`).

Labels, torchattacks' way:
    - default mode: ``labels`` are the true classes, the **source classes** of the new images
      (``None``: the model's predictions);
    - ``set_mode_targeted_by_label()``: ``labels`` are the **targets**; sources from
      ``atk(images, targets, source_labels=...)`` or the model's predictions;
    - ``set_mode_targeted_random()``, ``..._least_likely()``, ``..._by_function(f)``: ``labels`` are
      the true classes (the sources) and torchattacks picks the targets from them.
    A per-sample target fits one G_attack per distinct target (cached).

Model modes: the model is evaluated in eval mode, like every face; unlike torchattacks' default,
each submodule's own train/eval flag is restored afterwards (``set_model_training_mode`` has no
effect: the fit always reads the model in eval mode).

Arguments:
    model (nn.Module): the classifier (normalised inputs after ``set_normalization_used``).
    generator (nn.Module): a :class:`~atgan_plugin.adapters.ConditionalGenerator` (G_orig); never modified.
    **hyper: :class:`~atgan_plugin.attack.atgan.ATGANAttack`'s keyword arguments (``config=``, ``guard=``,
        ``latent=``, ``device=``, ``seed=``, ``progress=``, ``options=``; their defaults and meaning are documented
        there once), except ``targeted``, ``clip_min``/``clip_max`` and ``distance``, which torchattacks sets its
        own way.

Shape:
    - images: ``(N, C, H, W)`` in [0, 1] (normalised with ``set_normalization_used``),
      ``(C, H, W)`` = ``generator.image_shape``.
    - labels: ``(N,)`` int64 in ``[0, generator.num_classes)``.
    - output: ``(N, C, H, W)`` on the attack's device, in [0, 1] (normalised likewise).

Examples::
    >>> atk = ATGAN(model, generator=G, seed=0)
    >>> adv_images = atk(images, labels)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

try:
    from torchattacks.attack import Attack
except ImportError as error:  # an optional extra
    raise ImportError(
        "atgan_plugin.torchattacks needs torchattacks: pip install 'atgan-plugin[torchattacks]'"
    ) from error

from atgan_plugin.attack._delegated_face import ClassifierView, DelegatedFace, make_atgan
from atgan_plugin.utils import eval_mode

__all__ = ["ATGAN"]

_RANGE_TOLERANCE = 1e-4  # inverse normalisation leaves rounding errors this small outside [0, 1]


class ATGAN(DelegatedFace, Attack):  # type: ignore[misc]  # torchattacks: untyped
    """AT-GAN for torchattacks (see the module docstring)."""

    def __init__(self, model: nn.Module, *, generator: nn.Module, **hyper: Any):
        super().__init__("ATGAN", model)
        self.supported_mode = ["default", "targeted"]
        self._views: dict[tuple[Any, ...], ClassifierView] = {}
        self.atgan = make_atgan(self._view(), generator, (0.0, 1.0), hyper, "torchattacks")

    def _view(self) -> ClassifierView:
        """The model behind torchattacks' normalisation, one view per (mean, std), so that the fit
        cache keeps a fit per normalisation."""
        norm = self.normalization_used
        key = () if norm is None else (tuple(norm["mean"].flatten().tolist()), tuple(norm["std"].flatten().tolist()))
        view = self._views.get(key)
        if view is None:
            view = ClassifierView(self.model, None if norm is None else self.normalize)
            self._views[key] = view
        return view

    def forward(
        self, images: torch.Tensor, labels: torch.Tensor | None = None, source_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Adversarial images in [0, 1] (torchattacks' ``__call__`` handles the normalisation)."""
        device = self.device if self.device is not None else images.device
        images = images.clone().detach().to(device)
        if (images.amin() >= -_RANGE_TOLERANCE) and (images.amax() <= 1 + _RANGE_TOLERANCE):
            images = images.clamp(0.0, 1.0)
        labels = labels.clone().detach().to(device) if labels is not None else None
        if not self.targeted:
            return self._perturb(images, labels, None)
        if source_labels is not None and self.attack_mode != "targeted(label)":
            raise ValueError(
                f"source_labels is for set_mode_targeted_by_label(); in {self.attack_mode} mode "
                "the labels are the sources"
            )
        targets = self.get_target_label(images, labels)
        if targets is None:
            raise ValueError("set_mode_targeted_by_label() needs the target labels: atk(images, targets)")
        sources = source_labels if self.attack_mode == "targeted(label)" else labels
        return self._perturb(images, sources.to(device) if sources is not None else None, targets.to(device))

    def __call__(
        self, inputs: torch.Tensor, labels: torch.Tensor | None = None, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        # torchattacks' __call__ sets one train/eval flag for the whole model around the attack;
        # eval_mode restores each submodule's own flag after it.
        with eval_mode(self.model):
            adversarial: torch.Tensor = Attack.__call__(self, inputs, labels, *args, **kwargs)
            return adversarial
